# Builds uwsgi-plugin-prometheus_<version>_<arch>.deb from the built plugin
# (cmake -P, called by the `deb` target of plugin/deb/CMakeLists.txt, which
# passes PLUGIN, PROJECT_VERSION, UWSGI_BIN, PLUGIN_DIR, SOURCE, WORK, OUT,
# STRIP and DPKG_DEB). Version, date and maintainer come from SOURCE/changelog;
# the dependencies are computed: the uWSGI ABI from `UWSGI_BIN --dot-h`, the
# shared libraries by dpkg-shlibdeps. WORK/package-file names the result.
cmake_minimum_required(VERSION 3.18)
set(package uwsgi-plugin-prometheus)

# fail(<text>...): stops with the texts joined. (No ";" in them: they
# arrive as a list.)
function(fail)
  string(JOIN "" text ${ARGN})
  message(FATAL_ERROR "[prometheus] deb: ${text}")
endfunction()

# run(<output variable> <command...>): the command's stdout, stripped; fails
# the build on a non-zero exit.
function(run var)
  execute_process(COMMAND ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err
    RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    string(JOIN " " cmd ${ARGN})
    fail("${cmd} failed (${rc}): ${err}")
  endif()
  set(${var} "${out}" PARENT_SCOPE)
endfunction()

# The newest changelog entry: version, maintainer and date of the package.
file(STRINGS ${SOURCE}/changelog changelog)
list(GET changelog 0 head)
if(NOT head MATCHES "^${package} \\(([^)]+)\\) ")
  fail("${SOURCE}/changelog: the first line should read '${package} (VERSION) ...'")
endif()
set(version "${CMAKE_MATCH_1}")
if(NOT version MATCHES "^${PROJECT_VERSION}-[0-9]+$")
  fail("${SOURCE}/changelog is at ${version}, the project at ${PROJECT_VERSION}: "
    "add a changelog entry ${PROJECT_VERSION}-1")
endif()
foreach(line IN LISTS changelog)
  if(line MATCHES "^ -- (.+ <[^>]+>)  (.+)$")
    set(maintainer "${CMAKE_MATCH_1}")
    set(date "${CMAKE_MATCH_2}")
    break()
  endif()
endforeach()
if(NOT maintainer)
  fail("${SOURCE}/changelog: no ' -- NAME <EMAIL>  DATE' line")
endif()
# File times in the package are the changelog's, so rebuilds are identical.
run(epoch date -d "${date}" +%s)
set(ENV{SOURCE_DATE_EPOCH} "${epoch}")

# The uWSGI ABI: Debian's uwsgi-core provides uwsgi-abi-<md5 of uwsgi --dot-h>.
# A uwsgi that is not Debian's has no such package to depend on.
file(MAKE_DIRECTORY ${WORK})
execute_process(COMMAND ${UWSGI_BIN} --dot-h OUTPUT_FILE ${WORK}/uwsgi.h RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  fail("${UWSGI_BIN} --dot-h failed (${rc})")
endif()
file(MD5 ${WORK}/uwsgi.h abi)
set(abi "uwsgi-abi-${abi}")
get_filename_component(uwsgi_real "${UWSGI_BIN}" REALPATH)
execute_process(COMMAND dpkg-query -S "${uwsgi_real}" OUTPUT_VARIABLE owner
  RESULT_VARIABLE rc ERROR_QUIET)
string(REGEX REPLACE ":.*" "" owner "${owner}")
if(NOT rc EQUAL 0)
  fail("${UWSGI_BIN} (${uwsgi_real}) belongs to no Debian package, so nothing provides "
    "${abi}: configure with -DUWSGI_BIN=/usr/bin/uwsgi (Debian's uwsgi-core)")
endif()
run(provides dpkg-query -W "-f=\${Provides}" "${owner}")
if(NOT provides MATCHES "(^|[ ,])${abi}($|[ ,])")
  fail("${owner} provides '${provides}', not ${abi} (md5 of ${UWSGI_BIN} --dot-h)")
endif()

run(arch dpkg --print-architecture)
set(root ${WORK}/root)
set(doc ${root}/usr/share/doc/${package})
file(REMOVE_RECURSE ${root} ${WORK}/shlibs)
file(MAKE_DIRECTORY ${root}/DEBIAN ${root}${PLUGIN_DIR} ${doc} ${root}/usr/share/lintian/overrides)

# The plugin, stripped as dh_strip does (debugging symbols stay in the build).
set(so ${root}${PLUGIN_DIR}/prometheus_plugin.so)
configure_file(${PLUGIN} ${so} COPYONLY)
run(ignored ${STRIP} --remove-section=.comment --remove-section=.note --strip-unneeded ${so})
file(COPY ${SOURCE}/copyright DESTINATION ${doc})
execute_process(COMMAND gzip -9nc ${SOURCE}/changelog OUTPUT_FILE ${doc}/changelog.Debian.gz
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  fail("gzip failed (${rc})")
endif()
configure_file(${SOURCE}/lintian-overrides ${root}/usr/share/lintian/overrides/${package} COPYONLY)
run(ignored chmod -R u=rwX,go=rX ${root})
run(ignored chmod 0644 ${so})

# The shared libraries: dpkg-shlibdeps wants a debian/control to stand in.
file(WRITE ${WORK}/shlibs/debian/control
  "Source: ${package}\n\nPackage: ${package}\nArchitecture: any\n")
run(shlibs ${CMAKE_COMMAND} -E chdir ${WORK}/shlibs dpkg-shlibdeps -O ${so})
if(NOT shlibs MATCHES "shlibs:Depends=([^\n]+)")
  fail("dpkg-shlibdeps found no libraries: ${shlibs}")
endif()
set(depends "${abi}, ${CMAKE_MATCH_1}")

# md5sums and Installed-Size (KiB per file, rounded up, and 1 per directory,
# as dpkg-gencontrol counts).
file(GLOB_RECURSE entries LIST_DIRECTORIES true RELATIVE ${root} ${root}/*)
list(SORT entries)
set(md5sums "")
set(size 0)
foreach(entry IN LISTS entries)
  if(entry MATCHES "^DEBIAN(/|$)")
    continue()
  elseif(IS_DIRECTORY ${root}/${entry})
    math(EXPR size "${size} + 1")
  else()
    file(SIZE ${root}/${entry} bytes)
    math(EXPR size "${size} + (${bytes} + 1023) / 1024")
    file(MD5 ${root}/${entry} md5)
    string(APPEND md5sums "${md5}  ${entry}\n")
  endif()
endforeach()
file(WRITE ${root}/DEBIAN/md5sums "${md5sums}")

file(READ ${SOURCE}/description description)
file(WRITE ${root}/DEBIAN/control
  "Package: ${package}\n"
  "Version: ${version}\n"
  "Architecture: ${arch}\n"
  "Maintainer: ${maintainer}\n"
  "Installed-Size: ${size}\n"
  "Depends: ${depends}\n"
  "Section: web\n"
  "Priority: optional\n"
  "Description: ${description}")
run(ignored chmod 0644 ${root}/DEBIAN/control ${root}/DEBIAN/md5sums)
run(ignored find ${root} -exec touch -h -d @${epoch} {} +)

set(deb ${OUT}/${package}_${version}_${arch}.deb)
run(ignored ${DPKG_DEB} --root-owner-group -Zxz --build ${root} ${deb})
file(WRITE ${WORK}/package-file "${deb}\n")
message(STATUS "${deb}\n  Depends: ${depends}")
