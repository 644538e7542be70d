#!/usr/bin/env python3
"""Scrape cost: the plugin's /metrics against one read of uWSGI's JSON stats
server (the data path uwsgi_exporter depends on), side by side in one run.

    PROMETHEUS_PLUGIN=build/prometheus_plugin.so tests/bench/scrape_bench.py [--workers 4,16,64,256] [-n 200]

For each worker count one uWSGI runs with both the stats server and the
plugin, both on TCP loopback. Requests alternate A,B,A,B on fresh
connections. Printed per size: median and p90 wall time per operation, bytes
per answer, CPU time per operation of the master's main thread (the loop that
also spawns and reaps workers) and of the plugin's thread, and the master's
RSS with and without the plugin loaded.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
from harness import Uwsgi, connect, free_port, read_until_eof  # noqa: E402

TICKS = os.sysconf('SC_CLK_TCK')
# Both endpoints on TCP loopback, as uwsgi_exporter usually reads the stats
# server (--stats.uri tcp://127.0.0.1:1717).
STATS = ('127.0.0.1', free_port())


def thread_cpu(pid, tid):
    with open('/proc/%d/task/%d/stat' % (pid, tid)) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


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


def scrape(port):
    t0 = time.perf_counter_ns()
    with connect(('127.0.0.1', port), timeout=30) as s:
        s.sendall(b'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
        data = read_until_eof(s)
    t1 = time.perf_counter_ns()
    assert data.startswith(b'HTTP/1.1 200'), data[:100]
    return (t1 - t0) / 1e6, len(data.split(b'\r\n\r\n', 1)[1])


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


def measure(workers, n):
    # stats_uri as in a typical uwsgi_exporter setup (the label is on every
    # series, so its length matters; the test harness' default is a long
    # temporary path).
    extra = [('listen', '1024'), ('prometheus-stats-uri', 'tcp://127.0.0.1:1717')]
    with Uwsgi(workers=workers, extra=extra, stats_address=STATS) as u:
        master = u.proc.pid
        tid = plugin_thread(master)
        for _ in range(10):  # warm up both paths
            scrape(u.port)
            read_json(STATS)
        a_ms, b_ms, a_bytes, b_bytes = [], [], 0, 0
        a_main = b_main = a_thread = 0.0
        for _ in range(n):
            m0 = thread_cpu(master, master)
            t0 = thread_cpu(master, tid) if tid else 0
            ms, a_bytes = scrape(u.port)
            m1 = thread_cpu(master, master)
            t1 = thread_cpu(master, tid) if tid else 0
            a_ms.append(ms)
            a_main += m1 - m0
            a_thread += t1 - t0
            m0 = thread_cpu(master, master)
            ms, b_bytes = read_json(STATS)
            m1 = thread_cpu(master, master)
            b_ms.append(ms)
            b_main += m1 - m0
        rss_with = rss_kib(master)
    with Uwsgi(workers=workers, extra=extra, with_plugin=False, stats_address=STATS) as u:
        time.sleep(0.5)
        for _ in range(10):
            read_json(STATS)
        rss_without = rss_kib(u.proc.pid)
    return {
        'workers': workers,
        'plugin_p50': statistics.median(a_ms), 'plugin_p90': pct(a_ms, 90),
        'json_p50': statistics.median(b_ms), 'json_p90': pct(b_ms, 90),
        'plugin_bytes': a_bytes, 'json_bytes': b_bytes,
        'plugin_main_cpu_ms': a_main / n * 1e3, 'plugin_thread_cpu_ms': a_thread / n * 1e3,
        'json_main_cpu_ms': b_main / n * 1e3,
        'rss_delta_kib': rss_with - rss_without, 'rss_with_kib': rss_with,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workers', default='4,16,64,256')
    parser.add_argument('-n', type=int, default=200, help='operations of each kind per size')
    args = parser.parse_args()
    rows = [measure(int(w), args.n) for w in args.workers.split(',')]
    print()
    print('| workers | plugin scrape p50 / p90 ms | JSON stats read p50 / p90 ms | ratio JSON/plugin (p50) '
          '| bytes plugin / JSON | master loop CPU per op ms: plugin / JSON | plugin thread CPU per scrape ms '
          '| master RSS with plugin (delta) |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        print('| %d | %.3f / %.3f | %.3f / %.3f | %.2fx | %d / %d | %.3f / %.3f | %.3f | %.1f MiB (%+.1f MiB) |' % (
            r['workers'], r['plugin_p50'], r['plugin_p90'], r['json_p50'], r['json_p90'],
            r['json_p50'] / r['plugin_p50'], r['plugin_bytes'], r['json_bytes'],
            r['plugin_main_cpu_ms'], r['json_main_cpu_ms'], r['plugin_thread_cpu_ms'],
            r['rss_with_kib'] / 1024, r['rss_delta_kib'] / 1024))
    print('\nCPU columns come from /proc tick counters (10 ms resolution), averaged over %d operations.'
          % args.n)


if __name__ == '__main__':
    main()
