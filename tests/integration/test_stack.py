"""End to end: the Django demo stack (NGINX -> uWSGI with the plugin ->
Django with django-prometheus, prometheus-nginx-exporter, Prometheus) on
loopback; known traffic through NGINX, checked through Prometheus' HTTP API."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from harness import HERE, free_port, plugin_path

ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
STACK = os.path.join(ROOT, 'examples', 'django', 'stack')
SYSTEM_PYTHON = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable


def missing():
    for tool in ('nginx', 'prometheus', 'prometheus-nginx-exporter'):
        if not shutil.which(tool) and not os.path.exists('/usr/sbin/' + tool):
            return tool
    ok = subprocess.run([SYSTEM_PYTHON, '-c', 'import django, django_prometheus'],
                        capture_output=True).returncode == 0
    return None if ok else 'python3-django / python3-django-prometheus'


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


@unittest.skipIf(missing(), 'needs %s' % missing())
class DjangoStack(unittest.TestCase):
    TRAFFIC = {'/': ('index', 5), '/items/2': ('item', 4), '/items/3': ('item', 4),
               '/slow': ('slow', 2), '/error': ('error', 3)}

    @classmethod
    def setUpClass(cls):
        cls.run_dir = tempfile.mkdtemp(prefix='uwsgi-prom-stack-')
        cls.ports = {name: free_port() for name in
                     ('nginx', 'uwsgi', 'metrics', 'nginx-exporter', 'prometheus')}
        args = [SYSTEM_PYTHON, STACK, 'up', '--run-dir', cls.run_dir, '--scrape-interval', '1s',
                '--plugin', plugin_path()]
        for name, port in cls.ports.items():
            args += ['--%s-port' % name, str(port)]
        res = subprocess.run(args, capture_output=True, text=True, timeout=180)
        if res.returncode != 0:
            cls.tearDownClass()
            raise AssertionError(res.stdout + res.stderr)

    @classmethod
    def tearDownClass(cls):
        subprocess.run([SYSTEM_PYTHON, STACK, 'down', '--run-dir', cls.run_dir],
                       capture_output=True, timeout=60)
        shutil.rmtree(cls.run_dir, ignore_errors=True)

    def query(self, expr):
        url = 'http://127.0.0.1:%d/api/v1/query?%s' % (
            self.ports['prometheus'], urllib.parse.urlencode({'query': expr}))
        data = json.loads(get(url)[1])
        self.assertEqual(data['status'], 'success')
        return {json.dumps(r['metric'], sort_keys=True): float(r['value'][1])
                for r in data['data']['result']}

    def eventually(self, expr, expected, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            got = self.query(expr)
            if got == expected or time.monotonic() > deadline:
                self.assertEqual(got, expected, expr)
                return
            time.sleep(0.5)

    def test_traffic_is_counted_everywhere(self):
        base = 'http://127.0.0.1:%d' % self.ports['nginx']
        total = 0
        # One request per path first, so that every series exists before the
        # rest arrives and the dashboard's rates see counters move.
        for phase in (0, 1):
            for path, (_, n) in self.TRAFFIC.items():
                for _ in range(1 if phase == 0 else n - 1):
                    try:
                        status, _ = get(base + path)
                    except urllib.error.HTTPError as e:
                        status = e.code
                    self.assertEqual(status, 500 if path == '/error' else 200)
                    total += 1
            if phase == 0:
                time.sleep(3)  # three scrapes
        # /metrics is not served through the public proxy
        with self.assertRaises(urllib.error.HTTPError) as e:
            get(base + '/metrics')
        self.assertEqual(e.exception.code, 403)

        self.eventually('up', {json.dumps({'__name__': 'up', 'instance': '127.0.0.1:%d' % p,
                                           'job': job}, sort_keys=True): 1.0
                               for job, p in (('uwsgi', self.ports['metrics']),
                                              ('nginx', self.ports['nginx-exporter']))})
        by_view = {}
        for path, (view, n) in self.TRAFFIC.items():
            by_view[view] = by_view.get(view, 0) + n
        self.eventually(
            'sum by (view) (django_http_requests_total_by_view_transport_method_total)',
            {json.dumps({'view': v}): float(n) for v, n in by_view.items()})
        self.eventually('sum(uwsgi_worker_requests_total)', {'{}': float(total)})
        self.eventually('sum(uwsgi_request_duration_seconds_count)', {'{}': float(total)})
        self.eventually('sum by (code) (uwsgi_requests_total)',
                        {json.dumps({'code': '200'}): float(total - 3),
                         json.dumps({'code': '500'}): 3.0})
        self.eventually('sum by (parity) (demo_items_viewed_total)',
                        {json.dumps({'parity': 'even'}): 4.0, json.dumps({'parity': 'odd'}): 4.0})
        self.eventually('uwsgi_workers', {json.dumps({'__name__': 'uwsgi_workers', 'instance':
                                                      '127.0.0.1:%d' % self.ports['metrics'],
                                                      'job': 'uwsgi'},
                                                     sort_keys=True): 4.0})
        # NGINX counts our requests plus the exporter's stub_status reads. Its
        # target is scraped on its own schedule: the sample Prometheus holds
        # can predate our last requests (seen under load), so wait for one
        # that does not.
        def nginx_count():
            got = self.query('nginx_http_requests_total')
            self.assertEqual(len(got), 1)
            return list(got.values())[0]
        deadline = time.monotonic() + 30
        while nginx_count() < total + 1 and time.monotonic() < deadline:
            time.sleep(0.5)
        self.assertGreaterEqual(nginx_count(), total + 1)
        self.eventually('nginx_up', {json.dumps({'__name__': 'nginx_up', 'instance': '127.0.0.1:%d'
                                                 % self.ports['nginx-exporter'], 'job': 'nginx'},
                                                sort_keys=True): 1.0})

        # Every query of the Grafana dashboard returns data from this stack.
        with open(os.path.join(ROOT, 'examples', 'grafana', 'uwsgi-dashboard.json')) as f:
            dashboard = json.load(f)
        exprs = [t['expr'] for p in dashboard['panels'] for t in p['targets']]
        self.assertGreaterEqual(len(exprs), 10)
        for expr in exprs:
            q = expr.replace('$instance', '.*').replace('$__rate_interval', '1m')
            with self.subTest(expr=q):
                if 'cheap|pause|sig' in q:
                    # no worker is in those states here
                    result = self.query(q)
                    self.assertTrue(result)
                    self.assertEqual(set(result.values()), {0.0})
                    continue
                moving = 'rate(' in q and 'respawn' not in q and 'harakiri' not in q
                deadline = time.monotonic() + 20  # a rate needs two scrapes in its window
                while True:
                    result = self.query(q)
                    ok = result and (not moving or any(v == v and v > 0 for v in result.values()))
                    if ok or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)
                self.assertTrue(ok, result)


if __name__ == '__main__':
    unittest.main()
