#!/usr/bin/env python3
"""Cost of merging prometheus_client multi-process files into the scrape:
scrape time of the plugin against the number of .db files, next to
prometheus_client's own MultiProcessCollector on the same directory.

    PROMETHEUS_PLUGIN=build/prometheus_plugin.so tests/bench/multiproc_bench.py [--processes 1,4,16,64,256]

Each process' worth of files is what a Django worker with django-prometheus
style metrics writes: counters, a latency histogram (15 buckets) per view and
method, and gauges, over 10 views.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
from harness import Uwsgi  # noqa: E402

PY = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else 'python3'

WRITER = r'''
import os, sys
os.environ['PROMETHEUS_MULTIPROC_DIR'] = sys.argv[1]
from prometheus_client import Counter, Gauge, Histogram
req = Counter('django_http_requests_total_by_view_transport_method', 'Requests.', ['view', 'transport', 'method'])
resp = Counter('django_http_responses_total_by_status_view_method', 'Responses.', ['status', 'view', 'method'])
lat = Histogram('django_http_requests_latency_seconds_by_view_method', 'Latency.', ['view', 'method'],
                buckets=(.01, .025, .05, .075, .1, .25, .5, .75, 1, 2.5, 5, 7.5, 10, 25, 50))
g = Gauge('app_inflight', 'In flight.', ['view'], multiprocess_mode='livesum')
for v in range(10):
    for m in ('GET', 'POST'):
        req.labels('view%d' % v, 'http', m).inc(3)
        resp.labels('200', 'view%d' % v, m).inc(3)
        lat.labels('view%d' % v, m).observe(0.03 * v)
    g.labels('view%d' % v).set(1)
'''

COLLECT = r'''
import os, sys, time
os.environ['PROMETHEUS_MULTIPROC_DIR'] = sys.argv[1]
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
times = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg)
    generate_latest(reg)
    times.append(time.perf_counter() - t0)
times.sort()
print(times[len(times) // 2] * 1e3)
'''


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--processes', default='1,4,16,64,256')
    parser.add_argument('-n', type=int, default=30)
    args = parser.parse_args()
    template = tempfile.mkdtemp(prefix='mp-template-')
    subprocess.run([PY, '-c', WRITER, template], check=True)
    files = sorted(os.listdir(template))
    rows = []
    u = Uwsgi(workers=2)
    mp = u.add_multiproc_dir()
    try:
        u.start()
        for n in (int(x) for x in args.processes.split(',')):
            for name in os.listdir(mp):
                os.remove(os.path.join(mp, name))
            for pid in range(100000, 100000 + n):
                for name in files:
                    kind = name.rsplit('_', 1)[0]
                    shutil.copy(os.path.join(template, name), os.path.join(mp, '%s_%d.db' % (kind, pid)))
            u.scrape()
            times, size = [], 0
            for _ in range(args.n):
                t0 = time.perf_counter()
                body = u.scrape()
                times.append(time.perf_counter() - t0)
                size = len(body)
            py = float(subprocess.run([PY, '-c', COLLECT, mp, str(max(3, args.n // 3))],
                                      capture_output=True, text=True, check=True).stdout)
            rows.append((n, n * len(files), statistics.median(times) * 1e3, py, size))
    finally:
        u.cleanup()
        shutil.rmtree(template, ignore_errors=True)
    print('\n| processes | .db files | plugin scrape p50 ms (uWSGI + merged app metrics) | '
          'prometheus_client MultiProcessCollector ms | bytes |')
    print('|---|---|---|---|---|')
    for n, f, ms, py, size in rows:
        print('| %d | %d | %.2f | %.2f | %d |' % (n, f, ms, py, size))


if __name__ == '__main__':
    main()
