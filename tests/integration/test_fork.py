"""Workers forked while the endpoint's thread runs: graceful reloads (SIGHUP
to the master) and respawns (SIGKILL of a worker) with processes = 2 and
threads = 2, while one client scrapes the endpoint in a loop and another
sends app requests. Every new worker must come up and serve from both of its
threads, and the endpoint must keep answering.

A worker forked while another thread of the master held a lock (the
sanitizer allocator's, say) can block forever on its first allocation. Each
wait has a deadline; a worker that misses it fails the test with the state
and, where gdb can attach, the backtraces of every process of the instance.
"""
import os
import shutil
import signal
import subprocess
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

from harness import Uwsgi, http_get, parse_exposition

RELOADS = 5
KILLS = 6
DEADLINE = 30.0  # seconds for one reload or respawn to finish, sanitizers included


class Client:
    """Background loops: scrapes of the endpoint and requests to the app, each
    outcome recorded with its time."""

    def __init__(self, u):
        self.u = u
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.scrapes = []   # (monotonic time, None or error text)
        self.requests = []
        self.threads = [threading.Thread(target=self._loop, args=(self._scrape, self.scrapes)),
                        threading.Thread(target=self._loop, args=(self._request, self.requests))]

    def _scrape(self):
        status, _, body = http_get(self.u.port, '/metrics', timeout=10)
        if status != 200 or 'uwsgi_up 1' not in body:
            raise AssertionError('status %d, uwsgi_up 1 missing' % status)

    def _request(self):
        status, _, body = http_get(self.u.http_port, '/', timeout=10)
        if status != 200:
            raise AssertionError('status %d' % status)

    def _loop(self, call, log):
        while not self.stop.is_set():
            try:
                call()
                outcome = None
            except Exception as e:  # recorded; refused while the master re-executes
                outcome = repr(e)
            with self.lock:
                log.append((time.monotonic(), outcome))
            if outcome:
                self.stop.wait(0.05)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def failures(self, log, since):
        with self.lock:
            return [(t, e) for t, e in log if t >= since and e]

    def last_success(self, log):
        with self.lock:
            return max((t for t, e in log if not e), default=None)


def proc_stat(pid):
    """(state, ppid, session) of a process or thread, or None once it is gone."""
    try:
        with open('/proc/%s/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[3])


def instance_pids(u):
    """Every process of the instance: uWSGI runs in its own session."""
    pids = []
    for name in os.listdir('/proc'):
        if name.isdigit():
            st = proc_stat(name)
            if st and st[2] == u.proc.pid:
                pids.append(int(name))
    return sorted(pids)


def describe(pid):
    """One line per thread: tid, state, kernel wait channel, name."""
    lines = []
    try:
        tids = sorted(os.listdir('/proc/%d/task' % pid), key=int)
    except OSError:
        return '  pid %d: gone\n' % pid
    for tid in tids:
        base = '/proc/%d/task/%s/' % (pid, tid)
        try:
            with open(base + 'comm') as f:
                comm = f.read().strip()
            with open(base + 'wchan') as f:
                wchan = f.read().strip()
        except OSError:
            continue
        st = proc_stat('%d/task/%s' % (pid, tid))
        lines.append('  pid %d tid %s %s wchan=%s (%s)' % (pid, tid, st[0] if st else '?',
                                                          wchan, comm))
    return '\n'.join(lines) + '\n'


def backtraces(pid):
    """Every thread's stack of a live process, from gdb (or why there is none)."""
    gdb = shutil.which('gdb')
    if not gdb:
        return '  (no backtrace: gdb is not installed)\n'
    try:
        res = subprocess.run([gdb, '-nx', '-batch', '-p', str(pid), '-ex', 'set pagination off',
                              '-ex', 'thread apply all bt 25'],
                             capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        return '  (gdb did not finish within 90 s)\n'
    threads = res.stdout[res.stdout.find('\nThread '):] if '\nThread ' in res.stdout else res.stdout
    if not threads.strip():
        return '  (gdb: %s)\n' % res.stderr.strip()[-500:]
    return threads


class ReloadsAndRespawns(unittest.TestCase):
    def setUp(self):
        # uWSGI 2.0's graceful stop of a threaded worker can deadlock: the
        # SIGHUP handler joins the other thread while holding the GIL that
        # thread waits for. The master kills such an old worker after
        # worker-reload-mercy (60 s by default); this test is about the new
        # workers, so the old ones get 5 s.
        self.u = Uwsgi(workers=2, threads=2, extra=[('worker-reload-mercy', '5')])
        self.u.start()
        self.addCleanup(self.u.cleanup)

    def workers(self):
        try:
            return self.u.stats()['workers']
        except (OSError, ValueError):
            return None  # no stats server while the master re-executes itself

    def hang_report(self, what, workers):
        u = self.u
        text = ['TIMEOUT: %s did not happen within %.0f s. A worker that stops after a fork '
                'is usually blocked on a lock that another thread of the master held when it '
                'forked; see the backtraces.' % (what, DEADLINE),
                'master pid %d %s' % (u.proc.pid, 'still running' if u.proc.poll() is None
                                      else 'exited with %s' % u.proc.returncode)]
        if workers:
            text.append('workers in the stats: ' + ', '.join(
                'id %d pid %d accepting %d' % (w['id'], w['pid'], w['accepting'])
                for w in workers))
        pids = instance_pids(u)
        text.append('threads of the instance:\n' + ''.join(describe(p) for p in pids))
        # the workers first (the master last): they are the ones expected to hang
        for pid in [p for p in pids if p != u.proc.pid][:4] + [u.proc.pid]:
            text.append('backtraces of pid %d%s:\n%s' % (
                pid, ' (master)' if pid == u.proc.pid else '', backtraces(pid)))
        text.append('uwsgi log (end):\n' + u.read_log()[-3000:])
        return '\n'.join(text)

    def wait_workers(self, gone, what):
        """Waits until no worker has a pid in `gone` and every worker accepts
        requests; returns the workers' pids."""
        deadline = time.monotonic() + DEADLINE
        workers = None
        while time.monotonic() < deadline:
            current = self.workers()
            workers = current or workers
            if current and all(w['pid'] > 0 and w['pid'] not in gone and w['accepting'] == 1
                               for w in current):
                return {w['pid'] for w in current}
            time.sleep(0.05)
        self.fail(self.hang_report(what, workers))

    def wait_served(self, pids, what):
        """Concurrent slow requests until each worker in `pids` has answered
        from two different threads: both of its threads run."""
        seen = {}
        deadline = time.monotonic() + DEADLINE

        def get(_):
            try:
                status, _, body = http_get(self.u.http_port, '/pid/0.2', timeout=DEADLINE)
            except OSError:
                return None
            return tuple(int(x) for x in body.split()) if status == 200 else None

        with ThreadPoolExecutor(4) as pool:
            while time.monotonic() < deadline:
                for answer in pool.map(get, range(4)):
                    if answer:
                        seen.setdefault(answer[0], set()).add(answer[1])
                if all(len(seen.get(p, ())) >= 2 for p in pids):
                    return
        self.fail(self.hang_report('%s: both threads of workers %s serving (answered: %s)'
                                   % (what, sorted(pids), seen), self.workers()))

    def wait_scraped(self, client, since, what):
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            last = client.last_success(client.scrapes)
            if last is not None and last > since:
                return
            time.sleep(0.05)
        self.fail(self.hang_report('%s: a successful scrape (failures since: %s)'
                                   % (what, client.failures(client.scrapes, since)[-3:]),
                                   self.workers()))

    def respawns(self):
        samples = parse_exposition(self.u.scrape())[0]
        return sum(v for (name, _), v in samples.items()
                   if name == 'uwsgi_worker_respawn_count_total')

    def test_every_new_worker_serves_and_the_endpoint_keeps_answering(self):
        u = self.u
        with Client(u) as client:
            pids = self.wait_workers(set(), 'start')
            self.wait_served(pids, 'start')
            for n in range(1, RELOADS + 1):
                what = 'reload %d of %d' % (n, RELOADS)
                started = time.monotonic()
                os.kill(u.proc.pid, signal.SIGHUP)
                pids = self.wait_workers(pids, what + ': new workers accepting')
                self.wait_served(pids, what)
                self.wait_scraped(client, started, what)
                self.assertIsNone(u.proc.poll(), what + ': the master exited')

            kills_started = time.monotonic()
            respawns_before = self.respawns()
            for n in range(1, KILLS + 1):
                what = 'respawn %d of %d' % (n, KILLS)
                victim = sorted(pids)[n % 2]
                os.kill(victim, signal.SIGKILL)
                pids = self.wait_workers({victim}, what + ': replacement worker accepting')
                self.wait_served(pids, what)
            self.wait_scraped(client, time.monotonic(), 'after the respawns')
            # the master never stopped: not one scrape may have failed
            self.assertEqual(client.failures(client.scrapes, kills_started), [])
            self.assertEqual(self.respawns() - respawns_before, KILLS)
        ok = sum(1 for _, e in client.scrapes if not e)
        self.assertGreater(ok, RELOADS + KILLS, 'the scraping client hardly ran')
        self.assertGreater(sum(1 for _, e in client.requests if not e), RELOADS + KILLS)


if __name__ == '__main__':
    unittest.main()
