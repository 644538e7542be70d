"""The plugin inside a real uWSGI: values against uWSGI's own stats server,
the uwsgi_exporter families, exposition checks, and the endpoint's behaviour
under load, reload and bad configuration."""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (HERE, UWSGI, Uwsgi, free_port, http_get, parse_exposition, plugin_path,
                     quiet_snapshot, wait_for)
import expo_lint

N_REQUESTS = 57


def families_reference():
    rows = []
    with open(os.path.join(HERE, 'exporter_families.tsv')) as f:
        for line in f:
            if line.startswith('#') or not line.strip():
                continue
            name, kind, labels, help_text = line.rstrip('\n').split('\t')
            rows.append((name, kind, [] if labels == '-' else labels.split(','), help_text))
    return rows


def value(samples, family, **labels):
    for (n, ls), v in samples.items():
        if n == family and all((k, str(val)) in ls for k, val in labels.items()):
            return v
    raise KeyError('%s%s not in scrape' % (family, labels))


def series_of(samples, name):
    return {ls: v for (n, ls), v in samples.items() if n == name}


class MatchesStatsServer(unittest.TestCase):
    """One uWSGI with 4 workers, two sockets, a cache and an app, scraped at
    a quiet moment and compared field by field with its stats JSON."""

    @classmethod
    def setUpClass(cls):
        cls.u = Uwsgi(workers=4, extra=[('prometheus-collect-cores', 'true'),
                                        ('prometheus-stats-uri', 'tcp://127.0.0.1:1717'),
                                        ('mules', '1'), ('spooler', 'spool'),
                                        ('spooler-import', 'app.py')])
        os.makedirs(os.path.join(cls.u.dir, 'spool'))
        cls.u.start()
        for i in range(N_REQUESTS):
            cls.u.request('/x%d' % i)
        for key in ('a', 'b', 'a', 'c', 'a'):
            cls.u.request('/cache?' + key)
        for _ in range(3):
            cls.u.request('/fail')
        cls.stats, cls.body = quiet_snapshot(cls.u)
        cls.samples, cls.types, cls.helps = parse_exposition(cls.body)

    @classmethod
    def tearDownClass(cls):
        cls.u.cleanup()

    def test_every_exporter_family_with_type_labels_and_help(self):
        for name, kind, labels, help_text in families_reference():
            with self.subTest(family=name):
                self.assertEqual(self.types.get(name), kind)
                self.assertEqual(self.helps.get(name), help_text)
                series = [ls for (n, ls) in self.samples if n in (name, name + '_sum')]
                self.assertTrue(series, 'no samples')
                self_family = name == 'uwsgi_up' or name.startswith('uwsgi_exporter_')
                expected = set(labels) | (set() if self_family else {'stats_uri'})
                for ls in series:
                    self.assertEqual({k for k, _ in ls}, expected)

    def test_stats_uri_label_is_the_configured_value(self):
        self.assertEqual(value(self.samples, 'uwsgi_workers', stats_uri='tcp://127.0.0.1:1717'), 4)

    def test_server_values(self):
        s = self.stats
        self.assertEqual(value(self.samples, 'uwsgi_listen_queue_length'), s['listen_queue'])
        self.assertEqual(value(self.samples, 'uwsgi_listen_queue_errors'), s['listen_queue_errors'])
        self.assertEqual(value(self.samples, 'uwsgi_signal_queue_length'), s['signal_queue'])
        self.assertEqual(value(self.samples, 'uwsgi_workers'),
                         len([w for w in s['workers'] if w['id'] != 0]))
        self.assertEqual(value(self.samples, 'uwsgi_up'), 1)

    def test_socket_values(self):
        self.assertEqual(len(self.stats['sockets']), 2)
        for sock in self.stats['sockets']:
            labels = dict(name=sock['name'], proto=sock['proto'])
            with self.subTest(**labels):
                self.assertEqual(value(self.samples, 'uwsgi_socket_queue_length', **labels), sock['queue'])
                self.assertEqual(value(self.samples, 'uwsgi_socket_max_queue_length', **labels),
                                 sock['max_queue'])
                self.assertEqual(value(self.samples, 'uwsgi_socket_shared', **labels), sock['shared'])
                self.assertEqual(value(self.samples, 'uwsgi_socket_can_offload', **labels),
                                 sock['can_offload'])

    def test_worker_values(self):
        total = 0
        for w in self.stats['workers']:
            wid = str(w['id'])
            total += w['requests']
            with self.subTest(worker=wid):
                checks = {
                    'uwsgi_worker_accepting': w['accepting'],
                    'uwsgi_worker_delta_requests': w['delta_requests'],
                    'uwsgi_worker_signal_queue_length': w['signal_queue'],
                    'uwsgi_worker_rss_bytes': w['rss'],
                    'uwsgi_worker_vsz_bytes': w['vsz'],
                    'uwsgi_worker_running_time_seconds': w['running_time'] / 1e6,
                    'uwsgi_worker_last_spawn_time_seconds': w['last_spawn'],
                    'uwsgi_worker_average_response_time_seconds': w['avg_rt'] / 1e6,
                    'uwsgi_worker_apps': len(w['apps']),
                    'uwsgi_worker_cores': len(w['cores']),
                    'uwsgi_worker_busy': int(w['status'] == 'busy'),
                    'uwsgi_worker_idle': int(w['status'] == 'idle'),
                    'uwsgi_worker_cheap': int(w['status'] == 'cheap'),
                    'uwsgi_worker_requests_total': w['requests'],
                    'uwsgi_worker_exceptions_total': w['exceptions'],
                    'uwsgi_worker_harakiri_count_total': w['harakiri_count'],
                    'uwsgi_worker_signals_total': w['signals'],
                    'uwsgi_worker_respawn_count_total': w['respawn_count'],
                    'uwsgi_worker_transmitted_bytes_total': w['tx'],
                }
                for name, expected in checks.items():
                    self.assertAlmostEqual(value(self.samples, name, worker_id=wid), expected,
                                           places=9, msg=name)
                self.assertEqual(value(self.samples, 'uwsgi_worker_status', worker_id=wid,
                                       status=w['status']), 1)
                for app in w['apps']:
                    labels = dict(worker_id=wid, app_id=app['id'], mountpoint=app['mountpoint'],
                                  chdir=app['chdir'])
                    self.assertEqual(value(self.samples, 'uwsgi_worker_app_requests_total', **labels),
                                     app['requests'])
                    self.assertEqual(value(self.samples, 'uwsgi_worker_app_exceptions_total', **labels),
                                     app['exceptions'])
                    self.assertEqual(value(self.samples, 'uwsgi_worker_app_startup_time_seconds',
                                           **labels), app['startup_time'])
                for core in w['cores']:
                    labels = dict(worker_id=wid, core_id=core['id'])
                    for field in ('requests', 'static_requests', 'routed_requests',
                                  'offloaded_requests', 'write_errors', 'read_errors'):
                        self.assertEqual(value(self.samples, 'uwsgi_worker_core_%s_total' % field,
                                               **labels), core[field])
                    self.assertEqual(value(self.samples, 'uwsgi_worker_core_busy', **labels),
                                     core['in_request'])
        # 57 plain + 5 cache + 3 failing requests, plus what the harness sent
        self.assertGreaterEqual(total, N_REQUESTS + 8)
        self.assertEqual(sum(series_of(self.samples, 'uwsgi_worker_requests_total').values()), total)
        self.assertEqual(sum(series_of(self.samples, 'uwsgi_worker_exceptions_total').values()), 3)

    def test_cache_values(self):
        caches = self.stats['caches']
        self.assertEqual([c['name'] for c in caches], ['testcache'])
        c = caches[0]
        self.assertEqual(value(self.samples, 'uwsgi_cache_hits', name='testcache'), c['hits'])
        self.assertEqual(value(self.samples, 'uwsgi_cache_misses', name='testcache'), c['miss'])
        self.assertEqual(value(self.samples, 'uwsgi_cache_full', name='testcache'), c['full'])
        self.assertEqual(value(self.samples, 'uwsgi_cache_items', name='testcache'), c['items'])
        self.assertEqual(value(self.samples, 'uwsgi_cache_max_items', name='testcache'), c['max_items'])
        self.assertEqual(c['items'], 3)  # a, b, c

    def test_process_families_describe_the_master(self):
        pid = self.stats['pid']
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        ticks = os.sysconf('SC_CLK_TCK')
        with open('/proc/stat') as f:
            btime = int(re.search(r'^btime (\d+)', f.read(), re.M).group(1))
        start = btime + int(fields[19]) / ticks
        self.assertAlmostEqual(value(self.samples, 'process_start_time_seconds'), start, delta=0.02)
        self.assertGreater(value(self.samples, 'process_resident_memory_bytes'), 1 << 20)
        self.assertGreater(value(self.samples, 'process_virtual_memory_bytes'),
                           value(self.samples, 'process_resident_memory_bytes'))
        self.assertGreater(value(self.samples, 'process_open_fds'), 3)
        self.assertGreater(value(self.samples, 'process_max_fds'), 0)
        self.assertGreaterEqual(value(self.samples, 'process_cpu_seconds_total'), 0)

    def test_self_families_count_scrapes(self):
        before = value(parse_exposition(self.u.scrape())[0], 'uwsgi_exporter_scrapes_total')
        samples = parse_exposition(self.u.scrape())[0]
        self.assertEqual(value(samples, 'uwsgi_exporter_scrapes_total'), before + 1)
        self.assertEqual(value(samples, 'uwsgi_exporter_scrape_duration_seconds_count'), before)
        self.assertEqual(value(samples, 'uwsgi_exporter_scrape_errors_total'), 0)
        self.assertEqual(value(samples, 'uwsgi_exporter_last_scrape_error'), 0)

    def test_promtool_accepts_the_scrape(self):
        promtool = shutil.which('promtool')
        if not promtool:
            self.skipTest('promtool (Debian package prometheus) is not installed')
        res = subprocess.run([promtool, 'check', 'metrics'], input=self.body.encode(),
                             capture_output=True)
        complaints = [l for l in (res.stdout + res.stderr).decode().splitlines() if l.strip()]
        # The only tolerated lint: uwsgi_exporter's cache counters lack _total.
        allowed = re.compile(r'^uwsgi_cache_(hits|misses|full) counter metrics should have "_total" suffix$')
        self.assertEqual([c for c in complaints if not allowed.match(c)], [])

    def test_strict_exposition_checks(self):
        self.assertEqual(expo_lint.lint(self.body.encode()), [])

    def test_scrapes_are_stable(self):
        a = [l for l in self.u.scrape().splitlines() if not l.startswith(('uwsgi_exporter', 'process_'))]
        b = [l for l in self.u.scrape().splitlines() if not l.startswith(('uwsgi_exporter', 'process_'))]
        self.assertEqual([re.sub(r' \S+$', '', l) for l in a], [re.sub(r' \S+$', '', l) for l in b])

    def test_routes(self):
        status, headers, body = http_get(self.u.port, '/metrics')
        self.assertEqual(headers['Content-Type'], 'text/plain; version=0.0.4; charset=utf-8')
        status, _, body = http_get(self.u.port, '/metrics', method='HEAD')
        self.assertEqual((status, body), (200, ''))
        self.assertEqual(http_get(self.u.port, '/-/healthy')[0], 200)
        status, _, body = http_get(self.u.port, '/')
        self.assertEqual(status, 200)
        self.assertIn('href="/metrics"', body)
        self.assertEqual(http_get(self.u.port, '/nope')[0], 404)
        self.assertEqual(http_get(self.u.port, '/metrics', method='POST')[0], 405)
        with socket.create_connection(('127.0.0.1', self.u.port), timeout=5) as s:
            s.sendall(b'NOT HTTP AT ALL\r\n\r\n')
            self.assertTrue(s.recv(100).startswith(b'HTTP/1.1 400'))

    def test_workers_mules_and_spoolers_do_not_hold_the_listener(self):
        inode = listener_inode(self.u.port)
        master = self.stats['pid']
        self.assertIn(inode, socket_inodes(master))
        with open('/proc/%d/task/%d/children' % (master, master)) as f:
            children = [int(p) for p in f.read().split()]
        # 4 workers, a mule and a spooler
        self.assertGreaterEqual(len(children), 6)
        self.assertIn(self.stats['spoolers'][0]['pid'], children)
        for pid in children:
            with self.subTest(pid=pid):
                self.assertNotIn(inode, socket_inodes(pid))


def listener_inode(port):
    with open('/proc/net/tcp') as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[1].endswith(':%04X' % port) and parts[3] == '0A':  # LISTEN
                return parts[9]
    raise AssertionError('no listener on port %d' % port)


def socket_inodes(pid):
    inodes = set()
    for fd in os.listdir('/proc/%d/fd' % pid):
        try:
            target = os.readlink('/proc/%d/fd/%s' % (pid, fd))
        except OSError:
            continue
        m = re.match(r'socket:\[(\d+)\]', target)
        if m:
            inodes.add(m.group(1))
    return inodes


class Endpoint(unittest.TestCase):
    def test_answers_while_every_worker_is_busy(self):
        with Uwsgi(workers=2) as u:
            threads = [threading.Thread(target=u.request, args=('/sleep/4',), kwargs={'timeout': 30})
                       for _ in range(2)]
            for t in threads:
                t.start()
            wait_for(lambda: sum(value(parse_exposition(u.scrape())[0], 'uwsgi_worker_busy',
                                       worker_id=w) for w in (1, 2)) == 2,
                     timeout=3, what='both workers busy')
            start = time.monotonic()
            samples = parse_exposition(u.scrape())[0]
            elapsed = time.monotonic() - start
            self.assertLess(elapsed, 0.5)
            self.assertEqual(value(samples, 'uwsgi_worker_status', worker_id=1, status='busy'), 1)
            self.assertEqual(http_get(u.port, '/-/healthy')[0], 200)
            for t in threads:
                t.join()

    def test_graceful_reload_brings_the_endpoint_back_on_the_same_address(self):
        with Uwsgi(workers=2) as u:
            first = value(parse_exposition(u.scrape())[0], 'process_start_time_seconds')
            old_workers = {w['pid'] for w in u.stats()['workers']}
            os.kill(u.proc.pid, signal.SIGHUP)
            wait_for(lambda: {w['pid'] for w in u.stats()['workers']}.isdisjoint(old_workers)
                     and u.all_workers_up(), timeout=20, what='workers replaced by the reload')
            samples = wait_for(lambda: parse_exposition(u.scrape())[0], what='scrape after reload')
            self.assertEqual(value(samples, 'uwsgi_up'), 1)
            self.assertEqual(value(samples, 'uwsgi_workers'), 2)
            # The master re-executed itself: same pid, same start time, fresh scrape counter.
            self.assertEqual(value(samples, 'process_start_time_seconds'), first)
            self.assertLessEqual(value(samples, 'uwsgi_exporter_scrapes_total'), 5)
            self.assertIsNone(u.proc.poll())

    def test_unix_socket_endpoint(self):
        u = Uwsgi(workers=1, prometheus_socket='PLACEHOLDER')
        path = os.path.join(u.dir, 'metrics.sock')
        with open(u.ini) as f:
            ini = f.read().replace('PLACEHOLDER', path)
        with open(u.ini, 'w') as f:
            f.write(ini)
        try:
            u.start(wait=False)
            wait_for(lambda: os.path.exists(path) and
                     http_get(None, '/metrics', unix=path)[0] == 200, what='unix endpoint')
            # the endpoint answers before the master forks the worker
            wait_for(u.all_workers_up, what='the worker to start')
            body = http_get(None, '/metrics', unix=path)[2]
            self.assertIn('uwsgi_workers{stats_uri="unix://%s"} 1' % u.stats_path, body)
        finally:
            u.cleanup()
        self.assertFalse(os.path.exists(path))

    def test_ipv6_loopback(self):
        if not socket.has_ipv6:
            self.skipTest('no IPv6')
        port = free_port()
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(('::1', 0))
        except OSError:
            self.skipTest('no IPv6 loopback')
        u = Uwsgi(workers=1, prometheus_socket='[::1]:%d' % port, port=port)
        try:
            u.start(wait=False)
            status = wait_for(lambda: http_get(port, '/metrics', host='::1')[0],
                              what='IPv6 endpoint')
            self.assertEqual(status, 200)
            with self.assertRaises(OSError):  # not on IPv4
                http_get(port, '/metrics', host='127.0.0.1', timeout=1)
        finally:
            u.cleanup()


class Misconfiguration(unittest.TestCase):
    def start_failing(self, **kwargs):
        u = Uwsgi(**kwargs)
        try:
            u.start(wait=False)
            rc = u.wait_exit()
            return rc, u.read_log()
        finally:
            u.cleanup()

    def test_busy_port_with_fail_fast_stops_startup(self):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(('127.0.0.1', 0))
            s.listen()
            port = s.getsockname()[1]
            rc, log = self.start_failing(prometheus_socket='127.0.0.1:%d' % port,
                                         extra=[('prometheus-bind-fail-fast', 'true')])
        self.assertNotEqual(rc, 0)
        self.assertRegex(log, r"\[prometheus\] --prometheus-socket '127\.0\.0\.1:%d': "
                         r"127\.0\.0\.1:%d: address already in use \(.*pid \d+\); stopping "
                         r"because prometheus-bind-fail-fast is set" % (port, port))
        self.assertNotIn('spawned uWSGI worker', log)

    def test_busy_port_starts_the_app_and_binds_once_free(self):
        """The default: uWSGI starts without the endpoint, keeps trying
        (across a graceful reload too) and serves metrics once the port is
        free."""
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(('127.0.0.1', 0))
        holder.listen()
        port = holder.getsockname()[1]
        u = Uwsgi(workers=1, port=port, extra=[('prometheus-bind-retry', '1')])
        try:
            u.start(wait=False)
            wait_for(u.all_workers_up, what=lambda: 'the worker (log: %s)' % u.read_log()[-2000:])
            self.assertEqual(u.request('/x')[0], 200)
            first = "[prometheus] --prometheus-socket '127.0.0.1:%d': 127.0.0.1:%d: address " \
                    "already in use (%s, pid %d); uWSGI starts without the metrics endpoint" % (
                        port, port, u.ini, u.proc.pid)
            self.assertIn(first, u.read_log())
            self.assertIn('[prometheus] fix: give every instance its own address', u.read_log())
            # A graceful reload re-executes the master, which tries again from the start.
            old_workers = {w['pid'] for w in u.stats()['workers']}
            os.kill(u.proc.pid, signal.SIGHUP)
            wait_for(lambda: {w['pid'] for w in u.stats()['workers']}.isdisjoint(old_workers)
                     and u.all_workers_up(), timeout=20, what='workers replaced by the reload')
            self.assertEqual(u.request('/y')[0], 200)
            self.assertEqual(u.read_log().count(first), 2)
            holder.close()
            wait_for(lambda: http_get(port, '/metrics', timeout=2)[0] == 200, timeout=10,
                     what=lambda: 'the endpoint (log: %s)' % u.read_log()[-2000:])
            self.assertRegex(u.read_log(), r"\[prometheus\] --prometheus-socket "
                             r"'127\.0\.0\.1:%d': bound after \d+ failed attempts in \d+ s; "
                             r"the metrics endpoint is up" % port)
            samples = u.scrape_counted(1)[0]  # /y: the reload started counting afresh
            self.assertEqual(value(samples, 'uwsgi_workers'), 1)
        finally:
            holder.close()
            u.cleanup()

    def test_bad_socket_values(self):
        for bad in ('nonsense', ':99999', '127.0.0.1:', ':0', '[::1'):
            with self.subTest(value=bad):
                rc, log = self.start_failing(prometheus_socket=bad)
                self.assertNotEqual(rc, 0)
                self.assertIn("[prometheus] --prometheus-socket '%s'" % bad, log)
                self.assertNotIn('spawned uWSGI worker', log)

    def test_bad_path(self):
        for bad in ('metrics', '/-/healthy', '/a b'):
            with self.subTest(value=bad):
                rc, log = self.start_failing(extra=[('prometheus-path', bad)])
                self.assertNotEqual(rc, 0)
                self.assertIn("[prometheus] --prometheus-path '%s'" % bad, log)

    def test_bad_native_histogram_options(self):
        for option, bad in (('prometheus-native-schema', '9'),
                            ('prometheus-native-duration-range', '10,1'),
                            ('prometheus-native-size-range', '0,1e9')):
            with self.subTest(option=option, value=bad):
                rc, log = self.start_failing(extra=[(option, bad)])
                self.assertNotEqual(rc, 0)
                self.assertIn("[prometheus] --%s '%s'" % (option, bad), log)
                self.assertNotIn('spawned uWSGI worker', log)

    def test_missing_master(self):
        rc, log = self.start_failing(master=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("[prometheus] the prometheus plugin serves metrics from the uWSGI master: add 'master = true'", log)

    def test_plugin_built_for_another_uwsgi_refuses_to_start(self):
        # Same plugin, with one define in its recorded build flags changed:
        # what a plugin built against another uWSGI build looks like.
        with open(plugin_path(), 'rb') as f:
            data = f.read()
        self.assertEqual(data.count(b'-DUWSGI_ZLIB'), 1)
        fake = os.path.join(tempfile.mkdtemp(prefix='uwsgi-prom-abi-'), 'prometheus_plugin.so')
        with open(fake, 'wb') as f:
            f.write(data.replace(b'-DUWSGI_ZLIB', b'-DUWSGI_ZLIX'))
        try:
            rc, log = self.start_failing(plugin=fake)
        finally:
            shutil.rmtree(os.path.dirname(fake), ignore_errors=True)
        self.assertNotEqual(rc, 0)
        self.assertIn('[prometheus] this plugin was built for a different uWSGI build', log)
        self.assertIn('[prometheus] rebuild the plugin against the uwsgi you run', log)
        self.assertNotIn('spawned uWSGI worker', log)


if __name__ == '__main__':
    unittest.main()
