#!/usr/bin/env python3
"""Scrape cost: the plugin's /metrics, asked as Prometheus asks, against one
read of uWSGI's JSON stats server (the data path uwsgi_exporter depends on),
side by side in one run.

    PROMETHEUS_PLUGIN=build/prometheus_plugin.so tests/bench/scrape_bench.py \
        [--workers 4,16,64,256,1024] [-n 200]

For each worker count one uWSGI runs with both the stats server and the
plugin, both on TCP loopback. Operations rotate: a scrape with Prometheus
2.42's exact request headers (gzip accepted), the same without
Accept-Encoding (identity), the same as Prometheus sends them with
--enable-feature=native-histograms (protobuf, gzip), and a JSON stats read,
each on a fresh connection. Printed per size: bytes on the wire, median and p90 wall time,
CPU time per operation of the plugin's thread and of the master's main
thread (the loop that also spawns and reaps workers; from schedstat, in
nanoseconds), and the master's RSS with and without the plugin.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
from harness import Uwsgi, connect, free_port, read_until_eof  # noqa: E402

# Both endpoints on TCP loopback, as uwsgi_exporter usually reads the stats
# server (--stats.uri tcp://127.0.0.1:1717).
STATS = ('127.0.0.1', free_port())


# What Prometheus 2.42 sends on every scrape.
PROMETHEUS_HEADERS = (
    'Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;'
    'version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n'
    'Accept-Encoding: gzip\r\n'
    'User-Agent: Prometheus/2.42.0\r\n'
    'X-Prometheus-Scrape-Timeout-Seconds: 10\r\n')
# ... and with --enable-feature=native-histograms.
NATIVE_ACCEPT = (
    'Accept: application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;'
    'encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,'
    'application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,'
    '*/*;q=0.1\r\n')


def thread_cpu(pid, tid):
    """Seconds on CPU of one thread (schedstat: nanoseconds)."""
    if tid is None:
        return 0.0
    with open('/proc/%d/task/%d/schedstat' % (pid, tid)) as f:
        return int(f.read().split()[0]) / 1e9


def plugin_thread(pid):
    """The thread the plugin runs the endpoint on (the master's non-main
    thread that holds most CPU after a burst of scrapes is not reliable, so
    pick by name: it is the only thread created by the plugin)."""
    tids = [int(t) for t in os.listdir('/proc/%d/task' % pid) if int(t) != pid]
    names = {}
    for t in tids:
        with open('/proc/%d/task/%d/comm' % (pid, t)) as f:
            names[t] = f.read().strip()
    for t, name in names.items():
        if name == 'prometheus-http':
            return t
    return None


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def scrape(port, gzip, protobuf=False):
    """(ms, body bytes on the wire) of one scrape on a fresh connection."""
    headers = PROMETHEUS_HEADERS
    if not gzip:
        headers = headers.replace('Accept-Encoding: gzip\r\n', '')
    if protobuf:
        headers = NATIVE_ACCEPT + headers.split('\r\n', 1)[1]
    request = 'GET /metrics HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n' % headers
    t0 = time.perf_counter_ns()
    with connect(('127.0.0.1', port), timeout=30) as s:
        s.sendall(request.encode())
        data = read_until_eof(s)
    t1 = time.perf_counter_ns()
    assert data.startswith(b'HTTP/1.1 200'), data[:100]
    head, body = data.split(b'\r\n\r\n', 1)
    assert gzip or b'content-encoding' not in head.lower(), head
    assert protobuf == (b'application/vnd.google.protobuf' in head), head
    return (t1 - t0) / 1e6, len(body)


def read_json(address):
    t0 = time.perf_counter_ns()
    with connect(address, timeout=30) as s:
        data = read_until_eof(s)
    t1 = time.perf_counter_ns()
    assert data.startswith(b'{') and data.rstrip().endswith(b'}'), data[-100:]
    return (t1 - t0) / 1e6, len(data)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


class Series:
    """Wall times, bytes and per-operation CPU of one kind of operation."""

    def __init__(self):
        self.ms, self.bytes, self.main_cpu, self.thread_cpu = [], 0, 0.0, 0.0

    def run(self, op, master, tid):
        m0, t0 = thread_cpu(master, master), thread_cpu(master, tid)
        ms, self.bytes = op()
        self.main_cpu += thread_cpu(master, master) - m0
        self.thread_cpu += thread_cpu(master, tid) - t0
        self.ms.append(ms)

    def row(self, n):
        return {'p50': statistics.median(self.ms), 'p90': pct(self.ms, 90), 'bytes': self.bytes,
                'main_cpu_ms': self.main_cpu / n * 1e3, 'thread_cpu_ms': self.thread_cpu / n * 1e3}


def measure(workers, n, collect_cores=False):
    # stats_uri as in a typical uwsgi_exporter setup (the label is on every
    # series, so its length matters; the test harness' default is a long
    # temporary path).
    extra = [('listen', '1024'), ('prometheus-stats-uri', 'tcp://127.0.0.1:1717')]
    if collect_cores:
        extra.append(('prometheus-collect-cores', 'true'))
    with Uwsgi(workers=workers, extra=extra, stats_address=STATS) as u:
        master = u.proc.pid
        tid = plugin_thread(master)
        ops = {'gzip': lambda: scrape(u.port, True), 'identity': lambda: scrape(u.port, False),
               'protobuf': lambda: scrape(u.port, True, protobuf=True),
               'json': lambda: read_json(STATS)}
        for _ in range(10):  # warm up every path
            for op in ops.values():
                op()
        series = {name: Series() for name in ops}
        for _ in range(n):
            for name, op in ops.items():
                series[name].run(op, master, tid)
        rss_with = rss_kib(master)
    with Uwsgi(workers=workers, extra=extra, with_plugin=False, stats_address=STATS) as u:
        time.sleep(0.5)
        for _ in range(n + 10):  # the master serves as many stats reads as above
            read_json(STATS)
        rss_without = rss_kib(u.proc.pid)
    row = {name: s.row(n) for name, s in series.items()}
    row.update(workers=workers, rss_delta_kib=rss_with - rss_without, rss_with_kib=rss_with)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workers', default='4,16,64,256,1024')
    parser.add_argument('-n', type=int, default=200, help='operations of each kind per size')
    parser.add_argument('--collect-cores', action='store_true',
                        help='with prometheus-collect-cores (per-core families)')
    args = parser.parse_args()
    rows = [measure(int(w), args.n, args.collect_cores) for w in args.workers.split(',')]
    print()
    print('| workers | bytes: gzip / identity / JSON | p50 / p90 ms: gzip | identity | JSON '
          '| plugin thread CPU per scrape ms: gzip / identity | master loop CPU per op ms: '
          'scrape / JSON | master RSS with plugin (added) | protobuf gzip: bytes, p50 / p90 ms, '
          'plugin thread CPU ms |')
    print('|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        g, i, j, p = r['gzip'], r['identity'], r['json'], r['protobuf']
        print('| %d | %d / %d / %d | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.3f / %.3f '
              '| %.3f / %.3f | %.1f MiB (%+.1f MiB) | %d, %.2f / %.2f, %.3f |' % (
                  r['workers'], g['bytes'], i['bytes'], j['bytes'], g['p50'], g['p90'],
                  i['p50'], i['p90'], j['p50'], j['p90'], g['thread_cpu_ms'], i['thread_cpu_ms'],
                  (g['main_cpu_ms'] + i['main_cpu_ms']) / 2, j['main_cpu_ms'],
                  r['rss_with_kib'] / 1024, r['rss_delta_kib'] / 1024,
                  p['bytes'], p['p50'], p['p90'], p['thread_cpu_ms']))
    print('\n%d operations of each kind per size, interleaved; CPU from /proc schedstat.' % args.n)


if __name__ == '__main__':
    main()
