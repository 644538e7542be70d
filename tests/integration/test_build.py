"""The uWSGI-native build (uwsgiconfig.py -> uwsgi --build-plugin) produces a
plugin that loads and serves the same families as the CMake build."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from harness import HERE, UWSGI, Uwsgi

ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))


class UwsgiNativeBuild(unittest.TestCase):
    def test_uwsgiconfig_builds_a_plugin_that_loads(self):
        out = tempfile.mkdtemp(prefix='uwsgi-prom-build-')
        # tests/uwsgi-matrix has just built it with the same command
        plugin = os.environ.get('UWSGI_NATIVE_PLUGIN')
        try:
            if not plugin:
                res = subprocess.run([sys.executable, os.path.join(ROOT, 'uwsgiconfig.py'),
                                      '--uwsgi', UWSGI, '--output', out],
                                     capture_output=True, text=True, timeout=600)
                self.assertEqual(res.returncode, 0, res.stdout[-3000:] + res.stderr[-3000:])
                plugin = os.path.join(out, 'prometheus_plugin.so')
            self.assertTrue(os.path.exists(plugin))
            self.assertFalse(os.path.exists(os.path.join(ROOT, '.uwsgi_plugins_builder')))
            with Uwsgi(workers=2, plugin=plugin) as u:
                u.request('/')
                samples, types, _ = u.scrape_counted(1)
            with Uwsgi(workers=2) as u:
                u.request('/')
                cmake_types = u.scrape_counted(1)[1]
            self.assertEqual(types, cmake_types)
            self.assertEqual(sum(v for (n, _), v in samples.items() if n == 'uwsgi_workers'), 2)
        finally:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == '__main__':
    unittest.main()
