"""The sanitized build's own check: an ASan or UBSan report in any uwsgi
process fails the test that ran it. A probe library (tests/sanitizer/probe.cc,
built only with UWSGI_PROMETHEUS_SANITIZE=ON) commits one error as uwsgi loads
it; a worker killed by SIGSEGV gets an ASan report as well."""
import os
import signal
import unittest

from harness import SANITIZER_PRELOAD, Uwsgi, wait_for

PROBE = os.environ.get('SANITIZER_PROBE_LIBRARY')


@unittest.skipUnless(SANITIZER_PRELOAD and PROBE, 'only in the sanitized build')
class ReportsFailTests(unittest.TestCase):
    def cleanup_error(self, u):
        with self.assertRaises(AssertionError) as caught:
            u.cleanup()
        return str(caught.exception)

    def probe(self, what):
        u = Uwsgi(workers=1, extra=[('dlopen', PROBE)])
        os.environ['SANITIZER_PROBE'] = what  # uwsgi's environment only
        try:
            u.start(wait=False)
        finally:
            del os.environ['SANITIZER_PROBE']
        self.assertEqual(u.wait_exit(), -signal.SIGABRT)
        return self.cleanup_error(u)

    def test_asan_report_file(self):
        self.assertIn('AddressSanitizer: heap-use-after-free', self.probe('asan'))

    def test_ubsan_report_in_the_log(self):
        self.assertIn('runtime error: signed integer overflow', self.probe('ubsan'))

    def test_crashed_worker(self):
        u = Uwsgi(workers=1)
        u.start()
        pid = u.stats()['workers'][0]['pid']
        os.kill(pid, signal.SIGSEGV)
        wait_for(lambda: u.stats()['workers'][0]['pid'] not in (0, pid), what='the respawn')
        self.assertIn('AddressSanitizer: SEGV', self.cleanup_error(u))


if __name__ == '__main__':
    unittest.main()
