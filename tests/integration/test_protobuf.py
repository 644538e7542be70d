"""The protobuf exposition in a real uWSGI: asked for with Prometheus' exact
Accept (--enable-feature=native-histograms), with and without gzip, it comes
with the exact Content-Type and holds every sample of the text scrape of the
same snapshot (uWSGI, request, process, self and prometheus_client
multi-process families). The body is decoded by Debian's python3-protobuf
(proto_decode.py), not by anything of the plugin's. Also a real Prometheus
2.42 with and without the feature flag, compared series for series."""
import gzip
import json
import math
import os
import random
import select
import shutil
import socket
import subprocess
import threading
import time
import unittest
import urllib.parse
import urllib.request

from harness import (HERE, Uwsgi, die_with_test, free_port, parse_exposition, read_until_eof,
                     unescape, wait_for)
from test_multiproc import SYSTEM_PYTHON, WRITER, library_available

PROTOBUF = ('application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; '
            'encoding=delimited')
TEXT = 'text/plain; version=0.0.4; charset=utf-8'
# What Prometheus 2.42 sends with --enable-feature=native-histograms, and without.
NATIVE_ACCEPT = ('application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;'
                 'encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,'
                 'application/openmetrics-text;version=0.0.1;q=0.75,'
                 'text/plain;version=0.0.4;q=0.5,*/*;q=0.1')
CLASSIC_ACCEPT = ('application/openmetrics-text;version=1.0.0,application/openmetrics-text;'
                  'version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1')
BULK_ROWS = 20000

# Enough series, with label values gzip cannot shrink much, that the text
# body (~3 MB, ~1.5 MB compressed) cannot all sit in socket buffers while
# its client does not read: the scrape stays shared.
BULK = r'''
import hashlib, os, sys
os.environ['PROMETHEUS_MULTIPROC_DIR'] = sys.argv[1]
from prometheus_client import Gauge
g = Gauge('bulk_rows', 'Rows of a big scrape.', ['row'], multiprocess_mode='max')
for i in range(int(sys.argv[2])):
    g.labels('row-%06d-%s' % (i, hashlib.sha256(b'%d' % i).hexdigest())).set(i * 0.5)
'''


def protobuf_available():
    return subprocess.run([SYSTEM_PYTHON, '-c', 'import google.protobuf'],
                          capture_output=True).returncode == 0


def decode(body):
    res = subprocess.run([SYSTEM_PYTHON, os.path.join(HERE, 'proto_decode.py')], input=body,
                         capture_output=True, timeout=120)
    if res.returncode != 0:
        raise AssertionError(res.stderr.decode())
    return json.loads(res.stdout)


def number_label(name, value):
    """`le` and `quantile` compared as numbers (protobuf carries doubles)."""
    return float(value) if name in ('le', 'quantile') else value


def same_value(v):
    return 'NaN' if isinstance(v, float) and math.isnan(v) else v


def text_view(text):
    samples, types, helps = parse_exposition(text)
    view = {(name, frozenset((k, number_label(k, v)) for k, v in labels)): same_value(value)
            for (name, labels), value in samples.items()}
    families = [[name, kind, unescape(helps.get(name, ''))] for name, kind in types.items()]
    return families, view


def proto_view(decoded):
    view = {}
    for name, labels, value in decoded['samples']:
        key = (name, frozenset((k, number_label(k, v)) for k, v in labels.items()))
        if key in view:
            raise AssertionError('sample %r twice' % (key,))
        view[key] = same_value(value)
    return decoded['families'], view


def send(port, headers, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(60)
    s.connect(('127.0.0.1', port))
    head = 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n'
    head += ''.join('%s: %s\r\n' % kv for kv in headers.items())
    s.sendall((head + '\r\n').encode())
    return s


def response(s):
    with s:
        data = read_until_eof(s)
    head, _, body = data.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(':')
        headers[k.strip().lower()] = v.strip()
    assert int(headers['content-length']) == len(body), 'short body'
    return int(lines[0].split()[1]), headers, body


def scrapes_total(view):
    return view[('uwsgi_exporter_scrapes_total', frozenset())]


@unittest.skipUnless(library_available() and protobuf_available(),
                     'python3-prometheus-client and python3-protobuf are needed')
class SameScrape(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.u = Uwsgi(workers=2, threads=2, extra=[('prometheus-collect-cores', 'true')])
        mp = cls.u.add_multiproc_dir()
        cls.u.start()
        try:
            for i in range(3):
                subprocess.run([SYSTEM_PYTHON, '-c', WRITER, mp, str(i)], check=True, timeout=60)
            subprocess.run([SYSTEM_PYTHON, '-c', BULK, mp, str(BULK_ROWS)], check=True,
                           timeout=300)
            for path in ('/', '/mp', '/fail', '/status/404/0', '/cache?k', '/sleep/0.02'):
                cls.u.request(path)
            cls.u.scrape_counted(6)
        except BaseException:
            cls.u.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.u.cleanup()

    def both(self, encoding):
        """The text and the protobuf body of one scrape: a protobuf client
        that does not read holds the scrape while a text client asks. (Not
        the other way round: a text scrape reads no native histograms, so a
        protobuf client after it gets a scrape of its own.)"""
        extra = {'Accept-Encoding': encoding} if encoding else {}
        for _ in range(5):
            slow = send(self.u.port, dict(extra, Accept=NATIVE_ACCEPT), rcvbuf=4096)
            ready, _, _ = select.select([slow], [], [], 30)
            self.assertTrue(ready, 'no answer to the protobuf request')
            t_status, t_h, t_body = response(send(self.u.port, dict(extra, Accept=CLASSIC_ACCEPT)))
            status, h, body = response(slow)
            self.assertEqual((status, t_status), (200, 200))
            self.assertEqual(h['content-type'], PROTOBUF)
            self.assertEqual(t_h['content-type'], TEXT)
            self.assertEqual(h['vary'], 'Accept, Accept-Encoding')
            self.assertEqual(h.get('content-encoding'), encoding or None)
            self.assertEqual(t_h.get('content-encoding'), encoding or None)
            if encoding:
                body, t_body = gzip.decompress(body), gzip.decompress(t_body)
            decoded = decode(body)
            self.assertTrue(decoded['canonical'], 'unknown, repeated or unordered fields')
            proto, text = proto_view(decoded), text_view(t_body.decode('utf-8'))
            # Another snapshot (the share window missed on a busy machine)
            # shows in the scrape counter; anything else must match.
            if scrapes_total(proto[1]) == scrapes_total(text[1]):
                return proto, text
        self.fail('the two requests never shared a scrape')

    def check_same(self, encoding):
        (p_families, p_samples), (t_families, t_samples) = self.both(encoding)
        self.assertEqual(p_families, t_families)
        missing = sorted(set(t_samples) - set(p_samples), key=repr)
        extra = sorted(set(p_samples) - set(t_samples), key=repr)
        self.assertEqual((missing[:10], extra[:10]), ([], []))
        for key, value in t_samples.items():
            self.assertEqual(p_samples[key], value, key)
        # Not vacuous: every kind of family, with data in it.
        kinds = {kind for _, kind, _ in p_families}
        self.assertEqual(kinds, {'counter', 'gauge', 'summary', 'histogram'})
        names = {name for name, _, _ in p_families}
        for name in ('uwsgi_worker_requests_total', 'uwsgi_worker_core_requests_total',
                     'uwsgi_request_duration_seconds', 'uwsgi_requests_total',
                     'process_cpu_seconds_total', 'uwsgi_exporter_scrape_duration_seconds',
                     'uwsgi_prometheus_http_requests_total', 'uwsgi_prometheus_build_info',
                     'jobs_total', 'latency_seconds', 'odd', 'sizes', 'g_liveall', 'bulk_rows'):
            self.assertIn(name, names)
        self.assertGreater(len(p_samples), BULK_ROWS + 250)
        self.assertGreaterEqual(
            p_samples[('uwsgi_request_duration_seconds_count', frozenset())], 6)
        # ... and a sample that moves between scrapes, so that equality
        # means one snapshot.
        later = text_view(self.u.scrape())[1]
        self.assertGreater(scrapes_total(later), scrapes_total(p_samples))

    def test_prometheus_native_accept_gets_protobuf_of_the_text_scrape(self):
        self.check_same(None)

    def test_with_gzip(self):
        self.check_same('gzip')

    def test_head_and_other_clients(self):
        status, h, body = self.u.get(headers={'Accept': NATIVE_ACCEPT}, method='HEAD')
        self.assertEqual((status, body), (200, ''))
        self.assertEqual(h['Content-Type'], PROTOBUF)
        for accept in (CLASSIC_ACCEPT, 'application/vnd.google.protobuf', '',
                       'application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;'
                       'encoding=text'):
            with self.subTest(accept=accept):
                status, h, _ = self.u.get(headers={'Accept': accept})
                self.assertEqual((status, h['Content-Type']), (200, TEXT))



# The relabelling the README gives for the plugin's own histograms: under
# protobuf, Prometheus 2.x spells integral bucket bounds its way.
RULE = """      - source_labels: [__name__, le]
        regex: '%s'
        target_label: le
        replacement: '%s'
"""
RELABEL = ('    metric_relabel_configs:\n' +
           RULE % (r'(uwsgi_request_duration_seconds|uwsgi_response_size_bytes)_bucket;'
                   r'([0-9]+)\.0', '$2') +
           ''.join(RULE % (r'uwsgi_response_size_bytes_bucket;1e\+%02d' % e, 10 ** e)
                   for e in range(6, 10)))
# The plugin's histograms that also carry a native histogram in protobuf.
NATIVE = ('uwsgi_request_duration_seconds', 'uwsgi_response_size_bytes')
# Series that move between two scrapes of a quiet uWSGI.
MOVING = ('uwsgi_exporter_', 'process_', 'uwsgi_prometheus_', 'uwsgi_worker_', 'scrape_')


@unittest.skipUnless(shutil.which('prometheus') and library_available(),
                     'prometheus and python3-prometheus-client are needed')
class RealPrometheus(unittest.TestCase):
    """Prometheus 2.42 with --enable-feature=native-histograms (protobuf) and
    without (text) scraping one uWSGI: the same series and values, but for
    the plugin's own histograms, whose native part 2.42 keeps instead of the
    classic one (with the text's count and sum)."""

    def start_prometheus(self, directory, jobs, native):
        port = free_port()
        config = os.path.join(directory, 'prometheus-%d.yml' % port)
        with open(config, 'w') as f:
            f.write('scrape_configs:\n')
            for job, relabel in jobs:
                f.write('  - job_name: %s\n    scrape_interval: 1s\n'
                        '    static_configs: [{targets: ["127.0.0.1:%d"]}]\n' % (job, self.u.port))
                if relabel:
                    f.write(RELABEL)
        log = open(os.path.join(directory, 'prometheus-%d.log' % port), 'wb')
        self.addCleanup(log.close)
        args = ['prometheus', '--config.file', config, '--storage.tsdb.path',
                os.path.join(directory, 'data-%d' % port), '--web.listen-address',
                '127.0.0.1:%d' % port]
        if native:
            args.append('--enable-feature=native-histograms')
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_test)
        self.addCleanup(lambda: (proc.kill(), proc.wait()))
        self.logs[port] = log.name
        return port

    def log_of(self, port):
        with open(self.logs[port], 'rb') as f:
            return f.read()[-3000:].decode('utf-8', 'replace')

    def api(self, port, path, **params):
        url = 'http://127.0.0.1:%d/api/v1/%s?%s' % (port, path, urllib.parse.urlencode(params))
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)['data']

    def scraped_twice(self, port):
        targets = self.api(port, 'targets')['activeTargets']
        if not targets or any(t['health'] != 'up' for t in targets):
            return False
        counts = self.api(port, 'query', query='count_over_time(up[1m])')
        return all(float(r['value'][1]) >= 2 for r in counts['result'])

    def series(self, port, job):
        """{label set without job: value} of the job's latest scrape."""
        result = self.api(port, 'query', query='{job="%s"}' % job)['result']
        out = {}
        for r in result:
            labels = dict(r['metric'])
            del labels['job']
            if 'histogram' in r:  # a native histogram: (count, sum)
                out[frozenset(labels.items())] = (r['histogram'][1]['count'],
                                                  r['histogram'][1]['sum'])
            else:
                out[frozenset(labels.items())] = r['value'][1]
        return out

    def test_same_series_as_text_after_relabelling(self):
        with open(os.path.join(HERE, '..', '..', 'README.md')) as f:
            self.assertIn(RELABEL, f.read())  # the rules tested are the rules documented
        self.logs = {}
        self.u = Uwsgi(workers=2)
        mp = self.u.add_multiproc_dir()
        self.u.start()
        self.addCleanup(self.u.cleanup)
        for i in range(3):
            subprocess.run([SYSTEM_PYTHON, '-c', WRITER, mp, str(i)], check=True, timeout=60)
        for path in ('/', '/mp', '/status/404/0'):
            self.u.request(path)
        self.u.scrape_counted(3)
        text_port = self.start_prometheus(self.u.dir, [('text', False)], native=False)
        proto_port = self.start_prometheus(self.u.dir, [('raw', False), ('relabelled', True)],
                                           native=True)
        for port in (text_port, proto_port):
            wait_for(lambda: self.scraped_twice(port), timeout=90, interval=0.5,
                     what=lambda: 'Prometheus to scrape twice (log: %s)' % self.log_of(port))
        text = self.series(text_port, 'text')
        raw = self.series(proto_port, 'raw')
        relabelled = self.series(proto_port, 'relabelled')

        def name(key):
            return dict(key)['__name__']

        def classic_part(key):  # a series Prometheus 2.42 replaces by the native histogram
            return name(key) in {f + s for f in NATIVE for s in ('_bucket', '_count', '_sum')}
        self.assertGreater(len(text), 250)
        text_rest = {k: v for k, v in text.items() if not classic_part(k)}
        counts = {k for k in text if name(k) in {f + '_count' for f in NATIVE}}
        for scraped in (raw, relabelled):
            # With the feature flag, 2.42 keeps the native part of a histogram
            # that has both: one series per label set, with the text's count
            # and sum. Only protobuf carries it: proof that protobuf was parsed.
            native = {k: v for k, v in scraped.items() if name(k) in NATIVE}
            self.assertEqual(len(native), len(counts))
            for key, (count, total) in native.items():
                labels = dict(key)
                base = labels.pop('__name__')
                self.assertEqual(float(count), float(
                    text[frozenset(dict(labels, __name__=base + '_count').items())]), key)
                self.assertEqual(float(total), float(
                    text[frozenset(dict(labels, __name__=base + '_sum').items())]), key)
            rest = {k: v for k, v in scraped.items() if name(k) not in NATIVE}
            self.assertEqual(sorted(set(text_rest) ^ set(rest), key=repr), [])
            for key, value in text_rest.items():
                if not name(key).startswith(MOVING):
                    self.assertEqual(rest[key], value, key)


def classic_buckets(samples, family):
    """[(upper bound, cumulative count)] of `family` summed over its series."""
    by_bound = {}
    for (name, labels), value in samples.items():
        if name == family + '_bucket':
            le = float(dict(labels)['le'])
            by_bound[le] = by_bound.get(le, 0) + value
    return sorted(by_bound.items())


def classic_quantile(buckets, q):
    """histogram_quantile() of classic buckets as Prometheus computes it:
    linear within the bucket holding the rank, the highest finite bound if
    that bucket is +Inf."""
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


@unittest.skipUnless(shutil.which('prometheus'), 'prometheus is needed')
class NativeQuantiles(unittest.TestCase):
    """Planned requests with known durations, spread over two decades:
    Prometheus 2.42 with native histograms on computes their quantiles from
    the plugin's native histogram within the schema's relative error (schema
    3: a bucket spans a factor of 2^(1/8)), and counts them exactly."""

    SCHEMA_FACTOR = 2 ** (1 / 8)

    def test_histogram_quantile_of_the_native_histogram(self):
        u = Uwsgi(workers=4)
        self.addCleanup(u.cleanup)  # also after a start that failed half-way
        u.start()
        sleeps = [0.005 * 100 ** (i / 59) for i in range(60)]
        random.Random(7).shuffle(sleeps)
        took = []

        def client(part):
            for d in part:
                t0 = time.perf_counter()
                self.assertEqual(u.request('/sleep/%.6f' % d)[0], 200)
                took.append((d, time.perf_counter() - t0))
        threads = [threading.Thread(target=client, args=(sleeps[k::4],)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(len(took), 60)
        classic = classic_buckets(u.scrape_counted(60)[0], 'uwsgi_request_duration_seconds')
        prom = RealPrometheus()
        prom.u, prom.logs = u, {}
        prom.addCleanup = self.addCleanup
        port = prom.start_prometheus(u.dir, [('native', False)], native=True)

        def query(q):
            result = prom.api(port, 'query', query=q)['result']
            return result[0] if result else None

        def counted():
            r = query('histogram_count(sum(uwsgi_request_duration_seconds))')
            return r if r and float(r['value'][1]) >= 60 else None
        wait_for(counted, timeout=90, interval=0.5,
                 what=lambda: 'Prometheus to store the native histogram (log: %s)' % prom.log_of(port))
        self.assertEqual(float(counted()['value'][1]), 60)
        total = float(query('histogram_sum(sum(uwsgi_request_duration_seconds))')['value'][1])
        self.assertGreaterEqual(total, sum(sleeps))
        self.assertLessEqual(total, sum(t for _, t in took))
        # Each measured duration lies between the sleep and the client's time.
        low = sorted(d for d, _ in took)
        high = sorted(t for _, t in took)
        rows = []
        for q in (0.5, 0.9, 0.99):
            got = float(query('histogram_quantile(%s, sum(uwsgi_request_duration_seconds))' % q)
                        ['value'][1])
            rank = q * 60
            lo = low[max(0, math.floor(rank) - 1)] / self.SCHEMA_FACTOR
            hi = high[min(59, math.ceil(rank))] * self.SCHEMA_FACTOR
            rows.append('p%g: planned %.4f s, native %.4f s, classic %.4f s' % (
                q * 100, low[min(59, math.ceil(rank) - 1)], got, classic_quantile(classic, q)))
            self.assertGreaterEqual(got, lo, q)
            self.assertLessEqual(got, hi, q)
        print('\nnative quantiles: ' + '; '.join(rows))


if __name__ == '__main__':
    unittest.main()
