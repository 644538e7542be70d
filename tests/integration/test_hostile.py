"""Misbehaving clients must not stall scrapes or the uWSGI master: 1,000
connections that stay silent, trickle bytes (slowloris), send garbage or a
huge header, or send a request and never read the answer."""
import os
import resource
import signal
import socket
import statistics
import threading
import time
import unittest

from harness import Uwsgi, http_get, parse_exposition, wait_for

HOSTILE = 1000


def raise_fd_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Attack:
    """Keeps HOSTILE misbehaving connections open (reopening the ones the
    server closes) until stopped."""

    def __init__(self, port, n=HOSTILE):
        self.port = port
        self.n = n
        self.stop = threading.Event()
        self.opened = 0
        self.closed_by_server = 0
        self.threads = []

    def _connect(self):
        s = socket.socket()
        s.setblocking(True)
        s.settimeout(5)
        s.connect(('127.0.0.1', self.port))
        s.setblocking(False)
        self.opened += 1
        return s

    def _run(self, mode, count):
        socks = []
        try:
            while len(socks) < count and not self.stop.is_set():
                try:
                    s = self._connect()
                except OSError:
                    time.sleep(0.01)
                    continue
                if mode == 'garbage':
                    try:
                        s.send(os.urandom(512) if len(socks) % 2 else b'GET /' + b'a' * 65536)
                    except OSError:
                        pass
                elif mode == 'half':
                    s.send(b'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n')
                    s.shutdown(socket.SHUT_WR)
                socks.append(s)
            while not self.stop.is_set():
                for i, s in enumerate(socks):
                    try:
                        if mode == 'slowloris':
                            s.send(b'G')
                        else:
                            data = s.recv(1, socket.MSG_PEEK) if mode != 'half' else b'x'
                            if data == b'':
                                raise ConnectionResetError()
                    except BlockingIOError:
                        continue
                    except OSError:
                        self.closed_by_server += 1
                        s.close()
                        try:
                            socks[i] = self._connect()
                        except OSError:
                            pass
                self.stop.wait(0.5)
        finally:
            for s in socks:
                s.close()

    def start(self):
        share = self.n // 4
        for mode in ('silent', 'slowloris', 'garbage', 'half'):
            t = threading.Thread(target=self._run, args=(mode, share), daemon=True)
            t.start()
            self.threads.append(t)
        wait_for(lambda: self.opened >= self.n, timeout=30, what='hostile connections open')

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)


class HostileClients(unittest.TestCase):
    def test_scrapes_and_respawns_are_not_delayed(self):
        if raise_fd_limit(4096) < HOSTILE + 200:
            self.skipTest('cannot open enough file descriptors')
        with Uwsgi(workers=2) as u:
            attack = Attack(u.port)
            attack.start()
            try:
                times = []
                for _ in range(30):
                    t0 = time.perf_counter()
                    status, _, body = http_get(u.port, '/metrics', timeout=5)
                    times.append(time.perf_counter() - t0)
                    self.assertEqual(status, 200)
                    self.assertIn('uwsgi_workers', body)
                    time.sleep(0.05)
                # Worker respawn: the master loop is not held up either.
                victim = u.stats()['workers'][0]['pid']
                t0 = time.monotonic()
                os.kill(victim, signal.SIGKILL)
                wait_for(lambda: u.stats()['workers'][0]['pid'] not in (0, victim), timeout=10,
                         interval=0.01, what='worker respawn')
                respawn = time.monotonic() - t0
                samples = parse_exposition(u.scrape())[0]
            finally:
                attack.finish()
            print('\nhostile: %d opened, %d closed by the server; scrape median %.1f ms, max %.1f ms; '
                  'respawn %.2f s' % (attack.opened, attack.closed_by_server,
                                      statistics.median(times) * 1e3, max(times) * 1e3, respawn))
            self.assertGreaterEqual(attack.opened, HOSTILE)
            self.assertLess(statistics.median(times), 0.1)
            self.assertLess(sorted(times)[-2], 0.1)  # all but the single worst
            self.assertLess(respawn, 1.0)
            self.assertEqual([v for (n, _), v in samples.items() if n == 'uwsgi_up'], [1.0])


if __name__ == '__main__':
    unittest.main()
