"""The master's memory under a burst of scrapes: 128 clients asking at the
same moment and reading slowly (so every body is still being sent when the
next client asks) share one body per coding instead of holding 128 copies,
and once they are done the master's RSS is back where it was."""
import gzip
import http.client
import re
import socket
import threading
import time
import unittest

from harness import Uwsgi

CLIENTS = 128
MIB = 1024 * 1024
SCRAPES = re.compile(rb'\nuwsgi_exporter_scrapes_total (\d+)\n')


def rss_bytes(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    raise AssertionError('no VmRSS for %d' % pid)


def scrape_gzip(port):
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    try:
        conn.request('GET', '/metrics', headers={'Accept-Encoding': 'gzip'})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader('Content-Encoding') == 'gzip'
        return gzip.decompress(resp.read())
    finally:
        conn.close()


class SlowClient(threading.Thread):
    """Asks once, then reads 2 KiB every 5 ms through a 4 KiB receive
    buffer until the server closes."""

    def __init__(self, port, gzip_ok, start_line):
        super().__init__(daemon=True)
        self.port, self.gzip_ok, self.start_line = port, gzip_ok, start_line
        self.head, self.body, self.error = b'', b'', None

    def run(self):
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(60)
            s.connect(('127.0.0.1', self.port))
            coding = b'gzip' if self.gzip_ok else b'identity'
            self.start_line.wait()
            s.sendall(b'GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: ' + coding +
                      b'\r\nConnection: close\r\n\r\n')
            data = bytearray()
            while True:
                chunk = s.recv(2048)
                if not chunk:
                    break
                data += chunk
                time.sleep(0.005)
            s.close()
            self.head, _, self.body = bytes(data).partition(b'\r\n\r\n')
        except Exception as e:  # reported by the test
            self.error = e

    def text(self):
        return gzip.decompress(self.body) if self.gzip_ok else self.body


class Burst(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.u = Uwsgi(workers=128).start()

    @classmethod
    def tearDownClass(cls):
        cls.u.cleanup()

    def burst(self):
        """Runs the burst; returns (clients, peak RSS seen while it ran)."""
        pid = self.u.proc.pid
        start_line = threading.Event()
        clients = [SlowClient(self.u.port, i % 2 == 1, start_line) for i in range(CLIENTS)]
        for c in clients:
            c.start()
        peak = rss_bytes(pid)
        start_line.set()
        while any(c.is_alive() for c in clients):
            peak = max(peak, rss_bytes(pid))
            time.sleep(0.01)
        for c in clients:
            self.assertIsNone(c.error)
            self.assertTrue(c.head.startswith(b'HTTP/1.1 200'), c.head[:100])
        return clients, peak

    def test_burst_shares_bodies_and_gives_memory_back(self):
        identity = self.u.scrape().encode()
        for _ in range(5):  # warm up both codings
            self.u.scrape()
            scrape_gzip(self.u.port)
        pid = self.u.proc.pid
        before = rss_bytes(pid)
        clients, peak = self.burst()
        time.sleep(0.5)
        after = rss_bytes(pid)

        # Every body is a whole scrape; the clients of one moment share a
        # render (a burst without sharing renders once per client).
        renders = set()
        for c in clients:
            text = c.text()
            self.assertTrue(text.endswith(b'\n'))
            renders.add(int(SCRAPES.search(text).group(1)))
        self.assertLess(len(renders), CLIENTS // 4, sorted(renders))

        # 128 copies would be 128 x the body; shared ones stay within 2 MiB.
        self.assertGreater(CLIENTS * len(identity), 4 * MIB)
        self.assertLess(peak - before, 2 * MIB, 'peak %d KiB over %d KiB' % (
            (peak - before) // 1024, before // 1024))
        self.assertLess(after - before, 2 * MIB, 'after %d KiB over %d KiB' % (
            (after - before) // 1024, before // 1024))

    def test_many_scrapes_do_not_grow_the_master(self):
        pid = self.u.proc.pid
        for _ in range(50):
            self.u.scrape()
        before = rss_bytes(pid)
        for i in range(1000):
            if i % 2:
                self.u.scrape()
            else:
                scrape_gzip(self.u.port)
        self.assertLess(rss_bytes(pid) - before, 512 * 1024)


if __name__ == '__main__':
    unittest.main()
