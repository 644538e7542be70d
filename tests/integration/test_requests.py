"""Request metrics measured in the workers: exact counts, buckets that match
the delays, per-code counts, agreement with uWSGI's own request counter under
concurrent load, and counters that survive a killed worker."""
import os
import signal
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

from harness import Uwsgi, http_get, parse_exposition, wait_for

BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]


def requests_by(samples, **labels):
    """'CODE METHOD' -> requests, summed over any other label."""
    out = {}
    for (n, ls), v in samples.items():
        if n == 'uwsgi_requests_total' and all((k, v2) in ls for k, v2 in labels.items()):
            key = dict(ls)['code'] + ' ' + dict(ls)['method']
            out[key] = out.get(key, 0) + v
    return out


def histogram(samples, name='uwsgi_request_duration_seconds', **labels):
    def match(ls):
        return all((k, v) in ls for k, v in labels.items())
    buckets = {float(dict(ls)['le']): v for (n, ls), v in samples.items()
               if n == name + '_bucket' and match(ls)}
    count = sum(v for (n, ls), v in samples.items() if n == name + '_count' and match(ls))
    total = sum(v for (n, ls), v in samples.items() if n == name + '_sum' and match(ls))
    return buckets, count, total


def settled(u, n):
    """A scrape once the plugin has counted `n` requests. The worker runs the
    after-request hook just after the response went out, so a client can
    scrape a few microseconds before its last request is counted."""
    def scrape():
        samples = parse_exposition(u.scrape())[0]
        return samples if histogram(samples)[1] >= n else None
    return wait_for(scrape, timeout=10, what='%d requests counted' % n)


class ExactCounts(unittest.TestCase):
    # (code, delay in seconds, how many): delays sit well inside one bucket each
    PLAN = [(200, 0.0, 20), (404, 0.03, 7), (500, 0.15, 5), (200, 0.7, 2)]

    def test_counts_buckets_and_sum(self):
        with Uwsgi(workers=2) as u:
            delays = []
            for code, delay, n in self.PLAN:
                for _ in range(n):
                    status, _, _ = u.request('/status/%d/%s' % (code, delay))
                    self.assertEqual(status, code)
                    delays.append(delay)
            for _ in range(3):
                self.assertEqual(http_get(u.http_port, '/', method='POST')[0], 200)
            n = len(delays) + 3
            samples = settled(u, n)
            buckets, count, total = histogram(samples)
            self.assertEqual(count, n)
            self.assertEqual(buckets[float('inf')], n)
            expected = {b: sum(1 for d in delays if d <= b) + 3 for b in BOUNDS}
            # each request also spends a little time in the app and uWSGI
            for b in BOUNDS:
                with self.subTest(le=b):
                    if b >= 0.025:
                        self.assertEqual(buckets[b], expected[b])
                    else:
                        # instant requests usually take well under 5 ms, but a
                        # loaded machine may stall one: not exact below 25 ms
                        self.assertLessEqual(buckets[b], expected[b])
                        self.assertGreaterEqual(buckets[0.01], expected[0.01] - 2)
            self.assertGreaterEqual(total, sum(delays))
            self.assertLess(total, sum(delays) + n * 0.005)  # stated tolerance: 5 ms per request
            self.assertEqual(requests_by(samples), {'200 GET': 22, '404 GET': 7, '500 GET': 5,
                                                    '200 POST': 3})
            size_buckets, size_count, size_sum = histogram(samples, 'uwsgi_response_size_bytes')
            self.assertEqual(size_count, n)
            self.assertGreater(size_sum, n * 40)  # status line, headers and body
            # uWSGI's own counter agrees
            self.assertEqual(sum(w['requests'] for w in u.stats()['workers']), n)


class ConcurrentLoad(unittest.TestCase):
    def test_threads_and_processes_agree_with_uwsgi(self):
        with Uwsgi(workers=3, threads=4, extra=[('prometheus-per-worker', 'true')]) as u:
            paths = ['/status/%d/0.00%d' % (code, i % 3) for i in range(300)
                     for code in (200, 404)][:600]
            with ThreadPoolExecutor(16) as pool:
                statuses = list(pool.map(lambda p: u.request(p)[0], paths))
            self.assertEqual(statuses.count(200), 300)
            self.assertEqual(statuses.count(404), 300)
            stats, body = wait_for(lambda: _quiet(u), what='quiet')
            samples = parse_exposition(body)[0]
            uwsgi_total = sum(w['requests'] for w in stats['workers'])
            self.assertEqual(uwsgi_total, 600)
            _, count, _ = histogram(samples)
            self.assertEqual(count, 600)
            self.assertEqual(requests_by(samples), {'200 GET': 300, '404 GET': 300})
            # per worker: each worker's series equals uWSGI's per-worker counter
            for w in stats['workers']:
                _, c, _ = histogram(samples, worker_id=str(w['id']))
                self.assertEqual(c, w['requests'], 'worker %d' % w['id'])


def _quiet(u):
    a = u.stats()
    body = u.scrape()
    b = u.stats()
    counted = histogram(parse_exposition(body)[0])[1]
    if (a['workers'] == b['workers'] and all(w['status'] == 'idle' for w in b['workers'])
            and counted >= sum(w['requests'] for w in b['workers'])):  # hooks have run
        return b, body
    return None


class WorkerRespawn(unittest.TestCase):
    def test_counters_never_go_backwards_when_a_worker_is_killed(self):
        with Uwsgi(workers=2, extra=[('prometheus-per-app', 'true')]) as u:
            for _ in range(20):
                u.request('/status/200/0')
            before = settled(u, 20)
            # kill a worker in the middle of a request
            slow = threading.Thread(target=u.request, args=('/sleep/2',))
            slow.start()
            victim = wait_for(lambda: next((w['pid'] for w in u.stats()['workers']
                                            if w['status'] == 'busy'), None),
                              what='a busy worker')
            os.kill(victim, signal.SIGKILL)
            slow.join()
            wait_for(lambda: victim not in [w['pid'] for w in u.stats()['workers']] and
                     u.all_workers_up(), what='respawn')
            for _ in range(5):
                u.request('/status/200/0')
            after = settled(u, 25)
            for key, value in before.items():
                if key[0].startswith(('uwsgi_request', 'uwsgi_response', 'uwsgi_requests')):
                    with self.subTest(series=key):
                        self.assertGreaterEqual(after[key], value)
            _, count_before, _ = histogram(before)
            _, count_after, _ = histogram(after)
            self.assertEqual(count_after, count_before + 5)
            # per-app series carry the app's mountpoint ('' for the default app)
            self.assertIn(('mountpoint', ''), next(ls for (n, ls) in after
                                                   if n == 'uwsgi_request_duration_seconds_count'))


class Options(unittest.TestCase):
    def test_bad_buckets_stop_startup(self):
        for bad in ('', '0.5,0.1', 'abc', '-1', '1,inf'):
            with self.subTest(value=bad):
                u = Uwsgi(workers=1, extra=[('prometheus-buckets', bad)])
                try:
                    u.start(wait=False)
                    self.assertNotEqual(u.wait_exit(), 0)
                    self.assertIn("[prometheus] --prometheus-buckets '%s'" % bad, u.read_log())
                finally:
                    u.cleanup()

    def test_custom_buckets(self):
        with Uwsgi(workers=1, extra=[('prometheus-buckets', '0.02,0.2')]) as u:
            u.request('/status/200/0.05')
            buckets, count, _ = histogram(settled(u, 1))
            self.assertEqual(buckets, {0.02: 0, 0.2: 1, float('inf'): 1})


if __name__ == '__main__':
    unittest.main()
