#!/usr/bin/env python3
"""Build prometheus_plugin.so the uWSGI way, without CMake.

    python3 uwsgiconfig.py [--uwsgi /usr/bin/uwsgi] [--output DIR]

Runs `uwsgi --build-plugin plugin/` (uWSGI's plugin builder, which uses the
header and cflags embedded in that uwsgi binary) in a scratch directory and
leaves prometheus_plugin.so in DIR (default: the current directory).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--uwsgi', default=shutil.which('uwsgi') or 'uwsgi',
                        help='the uwsgi binary to build for (default: uwsgi on PATH)')
    parser.add_argument('--output', default='.', help='where to put prometheus_plugin.so')
    args = parser.parse_args()

    uwsgi = shutil.which(args.uwsgi) or args.uwsgi
    if not os.access(uwsgi, os.X_OK):
        sys.exit('uwsgiconfig.py: no uwsgi binary at %r; pass --uwsgi PATH' % args.uwsgi)
    env = dict(os.environ, PYTHON=sys.executable, UWSGI_PROMETHEUS_ROOT=ROOT,
               UWSGI_PROMETHEUS_UWSGI=uwsgi)
    env.setdefault('CC', 'gcc')
    with tempfile.TemporaryDirectory(prefix='uwsgi-prometheus-build-') as scratch:
        rc = subprocess.call([uwsgi, '--build-plugin', os.path.join(ROOT, 'plugin')],
                             cwd=scratch, env=env)
        built = os.path.join(scratch, 'prometheus_plugin.so')
        if rc != 0 or not os.path.exists(built):
            sys.exit('uwsgiconfig.py: uwsgi --build-plugin failed (exit %d)' % rc)
        os.makedirs(args.output, exist_ok=True)
        dest = os.path.join(args.output, 'prometheus_plugin.so')
        shutil.copy2(built, dest)
    print('built %s for %s' % (os.path.abspath(dest), uwsgi))


if __name__ == '__main__':
    main()
