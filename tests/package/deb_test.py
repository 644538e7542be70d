"""Checks of the Debian package that `cmake --build build --target deb` makes.

  deb_test.py contents PACKAGE_FILE   its fields and files, its dependencies
                                      against the plugin's NEEDED libraries
  deb_test.py lintian PACKAGE_FILE    lintian: no error, warning or info tag
  deb_test.py install PACKAGE_FILE    installed into a clean Debian 12 root,
                                      loaded by that root's uwsgi and scraped

PACKAGE_FILE is build/deb/package-file, which names the .deb. A check whose
inputs are absent prints why and exits 77, CTest's skip (SKIP_RETURN_CODE).

`install` is opt-in (UWSGI_PROMETHEUS_DEB_INSTALL_TEST=1): it makes a root
of bookworm with uwsgi-core and uwsgi-plugin-python3 with mmdebstrap once
(about 3 minutes, cached as a tarball in build/deb-test-root/, or in
UWSGI_PROMETHEUS_DEB_ROOT_CACHE), then on each run unpacks it, installs the
.deb with apt (dependencies from the Debian mirror), starts uwsgi with
`plugins = python3,prometheus` chrooted in its own mount and PID namespaces,
and scrapes the plugin from the host.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SKIP = 77
PACKAGE = 'uwsgi-plugin-prometheus'
PLUGIN = '/usr/lib/uwsgi/plugins/prometheus_plugin.so'
# mmdebstrap's default mirror; with it, it adds bookworm-updates and security.
MIRROR = os.environ.get('UWSGI_PROMETHEUS_DEBIAN_MIRROR')
DEFAULT_MIRROR = 'http://deb.debian.org/debian'
SUITE = 'bookworm'


class Skip(Exception):
    pass


def run(argv, **kwargs):
    kwargs.setdefault('timeout', 600)
    res = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if res.returncode != 0:
        raise AssertionError('%s failed (%d):\n%s%s' % (' '.join(argv), res.returncode,
                                                       res.stdout[-3000:], res.stderr[-3000:]))
    return res.stdout


def field(deb, name):
    return run(['dpkg-deb', '--field', deb, name]).strip()


def parse_depends(text):
    """'a (>= 1), b | c' -> {'a', 'b', 'c'}"""
    names = set()
    for clause in text.split(','):
        for alternative in clause.split('|'):
            names.add(alternative.split('(')[0].split(':')[0].strip())
    return names


def needed_packages(so):
    """The Debian packages of the libraries the plugin names as NEEDED, as
    the dynamic linker finds them here."""
    packages = set()
    for line in run(['ldd', so]).splitlines():
        if '=>' not in line or '/' not in line.split('=>', 1)[1]:
            continue
        path = line.split('=>', 1)[1].split('(')[0].strip()
        for candidate in (path, os.path.realpath(path)):
            owner = subprocess.run(['dpkg-query', '-S', candidate], capture_output=True, text=True)
            if owner.returncode == 0:
                packages.add(owner.stdout.split(':', 1)[0])
                break
        else:
            raise AssertionError('no Debian package owns %s (%s)' % (path, line.strip()))
    return packages


def check_contents(deb):
    if field(deb, 'Package') != PACKAGE:
        raise AssertionError('Package is ' + field(deb, 'Package'))
    files = run(['dpkg-deb', '--contents', deb])
    for path in (PLUGIN, '/usr/share/doc/%s/copyright' % PACKAGE,
                 '/usr/share/doc/%s/changelog.Debian.gz' % PACKAGE):
        if ' .%s\n' % path not in files:
            raise AssertionError('%s is not in the package:\n%s' % (path, files))
    depends = parse_depends(field(deb, 'Depends'))
    # The uWSGI ABI: the one Debian's uwsgi-core provides, which is the md5
    # of the uwsgi --dot-h the plugin was built from.
    abi = [d for d in depends if d.startswith('uwsgi-abi-')]
    provides = parse_depends(run(['dpkg-query', '-W', '-f=${Provides}', 'uwsgi-core']))
    if len(abi) != 1 or abi[0] not in provides:
        raise AssertionError('Depends %s, uwsgi-core provides %s' % (abi, provides))
    with tempfile.TemporaryDirectory(prefix='uwsgi-prom-deb-') as d:
        run(['dpkg-deb', '--extract', deb, d])
        missing = needed_packages(d + PLUGIN) - depends
    if missing:
        raise AssertionError('the plugin needs libraries of %s, not in Depends %s'
                             % (sorted(missing), sorted(depends)))
    print('contents: OK; Depends: ' + field(deb, 'Depends'))


def check_lintian(deb):
    if not shutil.which('lintian'):
        raise Skip('lintian is missing (Debian package lintian)')
    # Warnings and informational tags (the hardening ones) fail too: the
    # ones kept are overridden, each with its reason, in
    # plugin/deb/lintian-overrides. Pedantic tags are printed.
    # (--show-overrides is left out: with it, lintian 2.116 counts the
    # overridden warning and exits 2.)
    res = subprocess.run(['lintian', '--display-info', '--pedantic',
                          '--fail-on', 'error,warning,info', deb],
                         capture_output=True, text=True, timeout=600)
    print(res.stdout + res.stderr)
    if res.returncode != 0:
        raise AssertionError('lintian found errors, warnings or info tags (exit %d)' % res.returncode)
    print('lintian: OK')


def require_install_inputs():
    if os.environ.get('UWSGI_PROMETHEUS_DEB_INSTALL_TEST') != '1':
        raise Skip('opt-in: set UWSGI_PROMETHEUS_DEB_INSTALL_TEST=1 (mmdebstrap, about 3 minutes '
                   'the first time, then about 30 s with the cached root)')
    if os.geteuid() != 0:
        raise Skip('needs root (chroot, mount and PID namespaces)')
    for tool, package in (('mmdebstrap', 'mmdebstrap'), ('unshare', 'util-linux'),
                          ('chroot', 'coreutils')):
        if not shutil.which(tool):
            raise Skip('%s is missing (Debian package %s)' % (tool, package))
    url = '%s/dists/%s/Release' % (MIRROR or DEFAULT_MIRROR, SUITE)
    try:
        urllib.request.urlopen(urllib.request.Request(url, method='HEAD'), timeout=10).close()
    except (urllib.error.URLError, OSError) as e:
        raise Skip('no network to the Debian mirror (%s: %s)' % (url, e))


def base_root(cache_dir):
    """A tarball of bookworm with Debian's uWSGI and its Python 3 plugin:
    what a user has before installing the package. Made once: delete it
    to start from a newer bookworm."""
    tarball = os.path.join(cache_dir, '%s-uwsgi.tar' % SUITE)
    if not os.path.exists(tarball):
        os.makedirs(cache_dir, exist_ok=True)
        start = time.monotonic()
        partial = tarball[:-len('.tar')] + '.partial.tar'  # mmdebstrap: format by suffix
        # Its own mount namespace: the mounts mmdebstrap makes in root mode
        # go with it, even when it is stopped half way.
        run(['unshare', '--mount', 'mmdebstrap', '--variant=apt',
             '--include=uwsgi-core,uwsgi-plugin-python3', SUITE, partial]
            + ([MIRROR] if MIRROR else []), timeout=1800)
        os.rename(partial, tarball)
        print('install: made %s in %.0f s' % (tarball, time.monotonic() - start))
    return tarball


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def in_root(root, argv, **kwargs):
    """argv in the root, in a mount namespace of its own with /proc."""
    return run(['unshare', '--mount', '--fork', '--mount-proc=' + os.path.join(root, 'proc'),
                'chroot', root] + argv, **kwargs)


APP = '''def application(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'ok']
'''


def workers_line(body):
    return next((l for l in body.splitlines() if l.split('{')[0].split(' ')[0] == 'uwsgi_workers'), '')


def scrape(root, port):
    """Starts uwsgi in the root with the packaged plugin and returns a
    scrape of its endpoint."""
    os.makedirs(os.path.join(root, 'srv'), exist_ok=True)
    with open(os.path.join(root, 'srv', 'app.py'), 'w') as f:
        f.write(APP)
    with open(os.path.join(root, 'srv', 'uwsgi.ini'), 'w') as f:
        f.write('[uwsgi]\nmaster = true\nplugins = python3,prometheus\nworkers = 2\n'
                'http-socket = 127.0.0.1:%d\nwsgi-file = /srv/app.py\n'
                'prometheus-socket = 127.0.0.1:%d\n' % (free_port(), port))
    log = open(os.path.join(root, 'srv', 'uwsgi.log'), 'w+')
    # Own PID namespace: uwsgi and its workers go when unshare is killed.
    proc = subprocess.Popen(['unshare', '--mount', '--pid', '--fork', '--kill-child',
                             '--mount-proc=' + os.path.join(root, 'proc'), 'chroot', root,
                             'uwsgi', '--ini', '/srv/uwsgi.ini'],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=5) as r:
                    body = r.read().decode()
                if workers_line(body).endswith(' 2'):
                    return body
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise AssertionError('no scrape with 2 workers from uwsgi in the root:\n'
                                     + log.read()[-3000:])
            time.sleep(0.5)
    finally:
        # unshare ignores SIGTERM while it waits; SIGKILL reaches uwsgi
        # through --kill-child, and the PID namespace goes with it.
        proc.kill()
        proc.wait(timeout=30)
        log.close()


def check_install(deb, cache_dir):
    require_install_inputs()
    start = time.monotonic()
    tarball = base_root(cache_dir)
    work = tempfile.mkdtemp(prefix='uwsgi-prom-deb-root-')
    try:
        root = os.path.join(work, 'root')
        os.mkdir(root)
        run(['tar', '-C', root, '-xf', tarball])
        shutil.copy('/etc/resolv.conf', os.path.join(root, 'etc', 'resolv.conf'))
        shutil.copy(deb, os.path.join(root, 'tmp'))
        in_root(root, ['apt-get', 'update'])
        in_root(root, ['apt-get', 'install', '-y', '--no-install-recommends',
                       '/tmp/' + os.path.basename(deb)], env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'))
        status = in_root(root, ['dpkg-query', '-W', '-f=${Status}', PACKAGE])
        if status != 'install ok installed':
            raise AssertionError('%s: %s' % (PACKAGE, status))
        body = scrape(root, free_port())
        lines = body.splitlines()
        families = sorted({l.split()[2] for l in lines if l.startswith('# TYPE uwsgi_worker')})
        if len(families) < 2:
            raise AssertionError('too few uwsgi_worker families: %s' % families)
        print('install: OK in %.0f s; %s; families %s' % (
            time.monotonic() - start, workers_line(body), ', '.join(families)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv):
    if len(argv) < 3 or argv[1] not in ('contents', 'lintian', 'install'):
        print(__doc__)
        return 2
    with open(argv[2]) as f:
        deb = f.read().strip()
    cache_dir = os.environ.get('UWSGI_PROMETHEUS_DEB_ROOT_CACHE',
                               os.path.join(os.path.dirname(deb), 'deb-test-root'))
    try:
        if argv[1] == 'contents':
            check_contents(deb)
        elif argv[1] == 'lintian':
            check_lintian(deb)
        else:
            check_install(deb, cache_dir)
    except Skip as e:
        print('SKIP: %s' % e)
        return SKIP
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
