#!/usr/bin/env python3
"""Soak: does the endpoint give back its memory and sockets after a long mixed load?

    python3 tests/bench/soak.py [--requests 100000] [--workers 64] [--concurrency 8]
                                [--plugin build/prometheus_plugin.so]

Starts one uWSGI (the integration harness' trivial app, --workers workers,
master, the plugin) and sends exactly --requests requests to the plugin's
endpoint from --concurrency client threads, as a mix of:

  keep-alive  one connection, 2-20 requests (/metrics, HEAD /metrics,
              /-/healthy, /, a 404 path); ends with "Connection: close" or
              with the client just closing
  fresh       a new connection per GET /metrics or /-/healthy ("Connection: close")
  head        a new connection per HEAD /metrics
  404         a new connection per GET of a path that does not exist
  abort       GET /metrics, read 1-32 KiB of the answer, then close with
              SO_LINGER 0 (the server sees a reset); half of them with a 4 KiB
              receive buffer, so the server is still writing when it happens

A request counts once its whole response was read and checked (status,
Content-Length, body) or, for `abort`, once the client has reset the
connection. A request that fails any other way (timeout, unexpected reset,
wrong answer) is reported as a client error and sent again, so the count is
exact.

Warm-up is the first --warmup requests (default 10,000). The clients then
stop, the server is given time to close every connection, and the master's
RSS (VmRSS in /proc/PID/status) and open fds (/proc/PID/fd) become the
baseline. The remaining requests follow; when all clients are done the script
waits (at most --settle seconds) for the fds to come back to the baseline and
compares. A row is printed every --every requests (RSS and fds sampled by the
client that completes that request, so mid-load).

Verdict: PASS when RSS grew by less than --max-growth KiB (256) after warm-up
and the fds returned to the baseline. uWSGI is stopped on every exit,
Ctrl-C included.
"""
import argparse
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
from harness import Uwsgi, http_get  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
KINDS = ('keep-alive', 'fresh', 'head', '404', 'abort')
SHARE = (40, 15, 15, 15, 15)  # percent of the requests
SESSION = (2, 20)             # requests per keep-alive connection
# Connections are drawn with these weights: a keep-alive one carries 11 requests on average.
WEIGHTS = tuple(s / (sum(SESSION) / 2 if k == 'keep-alive' else 1) for k, s in zip(KINDS, SHARE))
KEEP_ALIVE_PATHS = ('/metrics', '/metrics', 'HEAD /metrics', '/-/healthy', '/', '/missing')
TIMEOUT = 30.0
MAX_ERRORS = 1000  # beyond this the server is considered gone and the run stops


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise RuntimeError('no VmRSS for pid %d' % pid)


def open_fds(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


class ClientError(Exception):
    pass


class Reader:
    """HTTP/1.1 responses from one socket, framed by Content-Length."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.received = 0

    def fill(self):
        data = self.sock.recv(262144)
        if not data:
            raise ClientError('connection closed by the server before the response ended')
        self.received += len(data)
        self.buf += data

    def response(self, head_only):
        """(status, headers dict with lower-case names, body)."""
        scanned = 0
        while True:
            end = self.buf.find(b'\r\n\r\n', scanned)
            if end >= 0:
                break
            scanned = max(0, len(self.buf) - 3)
            self.fill()
        lines = bytes(self.buf[:end]).decode('latin-1').split('\r\n')
        parts = lines[0].split(' ', 2)
        if len(parts) < 2 or not parts[0].startswith('HTTP/1.'):
            raise ClientError('bad status line %r' % lines[0])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(':')
            headers[name.strip().lower()] = value.strip()
        if 'content-length' not in headers:
            raise ClientError('no Content-Length in %r' % lines)
        length = 0 if head_only else int(headers['content-length'])
        start = end + 4
        while len(self.buf) < start + length:
            self.fill()
        body = bytes(self.buf[start:start + length])
        del self.buf[:start + length]
        return int(parts[1]), headers, body

    def expect_eof(self):
        data = self.sock.recv(65536)
        if data or self.buf:
            raise ClientError('bytes after the last response: %r' % (bytes(self.buf) + data)[:80])


def request_bytes(target, close):
    method, _, path = target.rpartition(' ')
    return ('%s %s HTTP/1.1\r\nHost: soak\r\n%s\r\n' % (
        method or 'GET', path, 'Connection: close\r\n' if close else '')).encode()


def check(target, status, headers, body, close, metrics_length):
    method, _, path = target.rpartition(' ')
    want = 404 if path == '/missing' or path.startswith('/missing-') else 200
    if status != want:
        raise ClientError('%s: status %d, expected %d' % (target, status, want))
    if close != (headers.get('connection', '').lower() == 'close'):
        raise ClientError('%s: Connection header %r' % (target, headers.get('connection')))
    if path == '/metrics':
        if int(headers['content-length']) < metrics_length // 2:
            raise ClientError('/metrics answer of only %s bytes' % headers['content-length'])
        if method != 'HEAD' and not body.startswith(b'# HELP '):
            raise ClientError('/metrics body starts with %r' % body[:40])
    elif path == '/-/healthy' and body != b'OK\n':
        raise ClientError('/-/healthy said %r' % body)


class Load:
    """Hands out request budget to client threads, counts completions and
    samples the master at every --every-th completed request."""

    def __init__(self, args, port, pid, metrics_length):
        self.args = args
        self.port = port
        self.pid = pid
        self.metrics_length = metrics_length
        self.lock = threading.Lock()
        self.unclaimed = 0
        self.target = 0
        self.done = 0
        self.by_kind = {k: 0 for k in KINDS}
        self.connections = {k: 0 for k in KINDS}
        self.errors = 0
        self.error_samples = []
        self.rows = []  # (done, rss KiB, fds, seconds since start)
        self.row_ready = threading.Condition(self.lock)
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def claim(self, n):
        with self.lock:
            n = min(n, self.unclaimed)
            self.unclaimed -= n
            return n

    def refund(self, n, error):
        with self.lock:
            self.unclaimed += n
            self.errors += 1
            if len(self.error_samples) < 10:
                self.error_samples.append(error)
            if self.errors >= MAX_ERRORS:
                self.stop.set()

    def complete(self, kind):
        with self.lock:
            self.done += 1
            self.by_kind[kind] += 1
            if self.done % self.args.every == 0:
                self.rows.append((self.done, rss_kib(self.pid), open_fds(self.pid),
                                  time.monotonic() - self.t0))
                self.row_ready.notify_all()

    def run_phase(self, n, seed):
        """Sends n more requests; returns when every client has finished."""
        with self.lock:
            self.unclaimed += n
            self.target += n
        threads = [threading.Thread(target=self.client, args=(random.Random(seed * 1000 + i),),
                                    daemon=True) for i in range(self.args.concurrency)]
        for t in threads:
            t.start()
        printed = len(self.rows)
        while any(t.is_alive() for t in threads):
            with self.lock:
                self.row_ready.wait(0.5)
                rows = self.rows[printed:]
            for row in rows:
                yield row
            printed += len(rows)
        for t in threads:
            t.join()
        for row in self.rows[printed:]:
            yield row
        if self.stop.is_set():
            raise RuntimeError('%d client errors; stopping. First ones: %s'
                               % (self.errors, '; '.join(self.error_samples)))
        if self.done != self.target:
            raise RuntimeError('client threads ended after %d of %d requests'
                               % (self.done, self.target))

    # --- one client thread ---------------------------------------------------

    def client(self, rng):
        handlers = {'keep-alive': self.do_keep_alive, 'fresh': self.do_fresh,
                    'head': self.do_head, '404': self.do_missing, 'abort': self.do_abort}
        while not self.stop.is_set():
            kind = rng.choices(KINDS, WEIGHTS)[0]
            n = self.claim(rng.randint(*SESSION) if kind == 'keep-alive' else 1)
            if n == 0:
                return
            sock = None
            completed = 0

            def counted():
                nonlocal completed
                completed += 1
                self.complete(kind)
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                if kind == 'abort' and rng.random() < 0.5:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(TIMEOUT)
                sock.connect(('127.0.0.1', self.port))
                with self.lock:
                    self.connections[kind] += 1
                handlers[kind](sock, rng, n, counted)
                sock.close()
                sock = None
            except (OSError, ClientError, ValueError) as e:
                self.refund(n - completed, '%s: %s: %s' % (kind, type(e).__name__, e))
            finally:
                if sock is not None:
                    sock.close()

    def exchange(self, sock, reader, target, close):
        sock.sendall(request_bytes(target, close))
        status, headers, body = reader.response(target.startswith('HEAD '))
        check(target, status, headers, body, close, self.metrics_length)

    def do_keep_alive(self, sock, rng, n, counted):
        reader = Reader(sock)
        polite = rng.random() < 0.5  # the last request says "Connection: close"
        for i in range(n):
            close = polite and i == n - 1
            self.exchange(sock, reader, rng.choice(KEEP_ALIVE_PATHS), close)
            if close:
                reader.expect_eof()
            counted()

    def do_fresh(self, sock, rng, n, counted):
        reader = Reader(sock)
        self.exchange(sock, reader, '/metrics' if rng.random() < 0.7 else '/-/healthy', True)
        reader.expect_eof()
        counted()

    def do_head(self, sock, rng, n, counted):
        reader = Reader(sock)
        self.exchange(sock, reader, 'HEAD /metrics', True)
        reader.expect_eof()
        counted()

    def do_missing(self, sock, rng, n, counted):
        reader = Reader(sock)
        self.exchange(sock, reader, '/missing-%d' % rng.randrange(1 << 30), True)
        reader.expect_eof()
        counted()

    def do_abort(self, sock, rng, n, counted):
        sock.sendall(request_bytes('/metrics', rng.random() < 0.5))
        # well under the whole answer, which would otherwise end the read
        want = rng.randint(1024, max(1024, min(32 * 1024, self.metrics_length // 2)))
        received = 0
        while received < want:
            data = sock.recv(min(16384, want - received))
            if not data:
                raise ClientError('EOF after %d bytes of /metrics' % received)
            received += len(data)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        sock.close()  # RST; the caller's close() is then a no-op
        counted()


def steady_fds(pid, quiet=1.5, timeout=20.0):
    """The master's fd count once it has not changed for `quiet` seconds
    (a closed connection lingers up to 1 s on the server)."""
    deadline = time.monotonic() + timeout
    fds, since = open_fds(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = open_fds(pid)
        if now != fds:
            fds, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return fds


def settle(pid, target_fds, timeout):
    """Waits until the master has target_fds open fds; returns (fds, seconds)."""
    t0 = time.monotonic()
    while True:
        fds = open_fds(pid)
        waited = time.monotonic() - t0
        if fds <= target_fds or waited >= timeout:
            return fds, waited
        time.sleep(0.1)


def on_signal(signum, frame):
    raise KeyboardInterrupt('signal %d' % signum)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--requests', type=int, default=100000)
    parser.add_argument('--workers', type=int, default=64)
    parser.add_argument('--plugin', default=os.path.join(ROOT, 'build', 'prometheus_plugin.so'))
    parser.add_argument('--concurrency', type=int, default=8, help='client threads')
    parser.add_argument('--warmup', type=int, default=10000, help='requests before the baseline')
    parser.add_argument('--every', type=int, default=10000, help='print a row every N requests')
    parser.add_argument('--settle', type=float, default=20.0,
                        help='seconds to wait for the fds to come back (request timeout is 10 s)')
    parser.add_argument('--max-growth', type=int, default=256, help='KiB of RSS growth allowed')
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args()
    if not 0 < args.warmup < args.requests or args.concurrency < 1 or args.every < 1:
        parser.error('need 0 < --warmup < --requests, --concurrency >= 1, --every >= 1')
    plugin = os.path.abspath(args.plugin)
    if not os.path.exists(plugin):
        parser.error('%s does not exist: build first (see README) or pass --plugin' % plugin)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # even if inherited as ignored
        signal.signal(sig, on_signal)
    try:
        with Uwsgi(workers=args.workers, plugin=plugin) as u:
            return soak(args, u)
    except KeyboardInterrupt:
        print('\ninterrupted; uWSGI stopped', file=sys.stderr)
        return 130


def soak(args, u):
    pid = u.proc.pid
    status, headers, body = http_get(u.port, '/metrics')
    assert status == 200, status
    metrics_length = len(body.encode())
    start_fds = steady_fds(pid)
    print('uWSGI master %d, %d workers, plugin %s' % (pid, args.workers, args.plugin))
    print('endpoint 127.0.0.1:%d, /metrics %d bytes; %d requests from %d client threads; '
          'warm-up %d requests' % (u.port, metrics_length, args.requests, args.concurrency,
                                   args.warmup))
    print('before any client: RSS %d KiB, %d fds\n' % (rss_kib(pid), start_fds))
    print('| requests | master RSS KiB | RSS vs baseline KiB | master fds | elapsed s | req/s |')
    print('|---|---|---|---|---|---|')
    load = Load(args, u.port, pid, metrics_length)
    last = [0, 0.0]
    baseline = {}

    def show(row):
        done, rss, fds, elapsed = row
        rate = (done - last[0]) / max(elapsed - last[1], 1e-9)
        last[:] = [done, elapsed]
        delta = '%+d' % (rss - baseline['rss']) if baseline else '(warm-up)'
        print('| %d | %d | %s | %d | %.1f | %.0f |' % (done, rss, delta, fds, elapsed, rate),
              flush=True)

    for row in load.run_phase(args.warmup, args.seed):
        show(row)
    fds, waited = settle(pid, start_fds, args.settle)
    time.sleep(0.5)
    baseline.update(rss=rss_kib(pid), fds=open_fds(pid))
    print('| baseline after %d warm-up requests, idle (%.1f s to settle) | %d | 0 | %d | %.1f | |' % (
        args.warmup, waited, baseline['rss'], baseline['fds'], time.monotonic() - load.t0),
        flush=True)
    last[:] = [args.warmup, time.monotonic() - load.t0]  # req/s without the pause
    peak = baseline['rss']
    for row in load.run_phase(args.requests - args.warmup, args.seed + 1):
        peak = max(peak, row[1])
        show(row)
    busy_rss = rss_kib(pid)
    fds, waited = settle(pid, baseline['fds'], args.settle)
    time.sleep(0.5)
    final_rss, final_fds = rss_kib(pid), open_fds(pid)
    growth = final_rss - baseline['rss']
    fds_ok = final_fds <= baseline['fds']
    rss_ok = growth < args.max_growth

    print()
    print('requests: %d (%s)' % (load.done, ', '.join(
        '%s %d' % (k, load.by_kind[k]) for k in KINDS)))
    print('connections: %d (%s)' % (sum(load.connections.values()), ', '.join(
        '%s %d' % (k, load.connections[k]) for k in KINDS)))
    print('client errors (retried, not counted): %d%s' % (
        load.errors, ''.join('\n  ' + e for e in load.error_samples)))
    print()
    print('| | master RSS KiB | master fds |')
    print('|---|---|---|')
    print('| before any client | | %d |' % start_fds)
    print('| baseline (after %d warm-up requests, idle) | %d | %d |' % (
        args.warmup, baseline['rss'], baseline['fds']))
    print('| highest row after warm-up (under load) | %d | |' % peak)
    print('| clients just done | %d | |' % busy_rss)
    print('| end, idle (%.1f s to settle) | %d | %d |' % (waited, final_rss, final_fds))
    print()
    print('RSS growth after warm-up: %+d KiB (limit < %d KiB): %s' % (
        growth, args.max_growth, 'ok' if rss_ok else 'TOO MUCH'))
    print('fds back to the baseline: %s (%d now, %d baseline)' % (
        'yes' if fds_ok else 'NO', final_fds, baseline['fds']))
    print('verdict: %s' % ('PASS' if rss_ok and fds_ok else 'FAIL'))
    return 0 if rss_ok and fds_ok else 1


if __name__ == '__main__':
    sys.exit(main())
