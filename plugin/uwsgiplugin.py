# Build description for `uwsgi --build-plugin plugin/` (uWSGI's own plugin
# builder, no CMake). It compiles the same sources as CMakeLists.txt against
# the running uwsgi's header and cflags, which the builder provides.
import os
import sys

NAME = 'prometheus'

# The builder exec()s this file from its build_plugin(path, ...) without
# __file__; the top-level uwsgiconfig.py passes the checkout's root.
_root = os.environ.get('UWSGI_PROMETHEUS_ROOT')
if not _root:
    _root = os.path.join(os.path.abspath(sys._getframe(1).f_locals.get('path', 'plugin')), '..')
_root = os.path.abspath(_root)
_src = os.path.join(_root, 'src')

# The exact cflags of the uwsgi binary, for the plugin's load-time ABI check.
_cflags = os.environ.get('UWSGI_PLUGINS_BUILDER_CFLAGS', '').strip()
_gen = os.path.abspath('.uwsgi_plugins_builder')
os.makedirs(_gen, exist_ok=True)


def _c_string(text):
    return '"' + text.replace('\\', '\\\\').replace('"', '\\"') + '"'


with open(os.path.join(_gen, 'uwsgi_prometheus_build.h'), 'w') as f:
    f.write('#define UWSGI_PROMETHEUS_BUILT_CFLAGS %s\n' % _c_string(_cflags))
    f.write('#define UWSGI_PROMETHEUS_BUILT_BINARY %s\n' % _c_string(os.environ.get('UWSGI_PROMETHEUS_UWSGI', 'uwsgi')))

CFLAGS = ['-std=c++17', '-fvisibility=hidden', '-fvisibility-inlines-hidden',
          '-I' + _src, '-I' + _gen, '-DUWSGI_PROMETHEUS_VERSION=\\"0.1.0\\"']
LDFLAGS = ['-Wl,--exclude-libs,ALL', '-Wl,--version-script=' + os.path.join(_root, 'plugin', 'exports.map')]
LIBS = ['-lprometheus-cpp-core', '-lfmt', '-ldeflate', '-lyaml', '-lssl', '-lcrypto', '-lcrypt', '-lstdc++', '-lpthread']


def _core_sources():
    """src/sources.txt: the list src/CMakeLists.txt reads too."""
    with open(os.path.join(_src, 'sources.txt')) as f:
        lines = (line.strip() for line in f)
        return [line for line in lines if line and not line.startswith('#')]


GCC_LIST = [
    'prometheus_plugin.cc',
    'uwsgi_source.cc',
] + [os.path.relpath(os.path.join(_src, f), os.path.join(_root, 'plugin'))
     for f in _core_sources()]
