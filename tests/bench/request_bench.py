#!/usr/bin/env python3
"""Cost of the request metrics in the workers: requests per second and p50/p99
latency of a trivial app under wrk, with the plugin loaded (A) and not loaded
(B), alternating A,B,A,B... on loopback. The same table also shows the spread
between runs of one setup (A against A), the noise any difference must beat.

    PROMETHEUS_PLUGIN=build/prometheus_plugin.so tests/bench/request_bench.py [--rounds 6] [--seconds 5]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
from harness import Uwsgi  # noqa: E402

UNITS = {'us': 1e-3, 'ms': 1.0, 's': 1e3}


def wrk(port, seconds, connections):
    out = subprocess.run(['wrk', '-t1', '-c%d' % connections, '-d%ds' % seconds, '--latency',
                          'http://127.0.0.1:%d/' % port], capture_output=True, text=True,
                         check=True).stdout
    rps = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
    lat = {}
    for pct in ('50', '99'):
        m = re.search(r'^\s+%s%%\s+([\d.]+)(us|ms|s)' % pct, out, re.M)
        lat[pct] = float(m.group(1)) * UNITS[m.group(2)]
    errors = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    if errors:
        raise RuntimeError('wrk saw %s failed responses' % errors.group(1))
    return rps, lat['50'], lat['99']


def spread(values):
    return (max(values) - min(values)) / statistics.median(values) * 100


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=6)
    parser.add_argument('--seconds', type=int, default=5)
    parser.add_argument('--connections', type=int, default=8)
    parser.add_argument('--workers', type=int, default=2)
    args = parser.parse_args()
    if not shutil.which('wrk'):
        sys.exit('wrk is not installed (Debian package wrk)')
    common = [('disable-logging', 'true'), ('listen', '1024')]
    a = Uwsgi(workers=args.workers, extra=common, stats=False)
    b = Uwsgi(workers=args.workers, extra=common, stats=False, with_plugin=False)
    runs = {'A': [], 'B': []}
    try:
        a.start()
        b.start()
        for inst in (a, b):  # warm up
            wrk(inst.http_port, 1, args.connections)
        for _ in range(args.rounds):
            runs['A'].append(wrk(a.http_port, args.seconds, args.connections))
            runs['B'].append(wrk(b.http_port, args.seconds, args.connections))
        # requests the plugin measured in A, for the record
        body = a.scrape()
        count = re.search(r'^uwsgi_request_duration_seconds_count (\S+)$', body, re.M).group(1)
    finally:
        a.cleanup()
        b.cleanup()

    def med(name, i):
        return statistics.median(r[i] for r in runs[name])

    print('\n%d rounds of %d s, wrk -t1 -c%d, %d workers, alternating A (plugin) and B (no plugin)'
          % (args.rounds, args.seconds, args.connections, args.workers))
    print('| setup | req/s median | p50 ms median | p99 ms median | req/s spread between runs |')
    print('|---|---|---|---|---|')
    for name, label in (('A', 'plugin loaded'), ('B', 'no plugin')):
        print('| %s | %.0f | %.3f | %.3f | %.1f%% |' % (
            label, med(name, 0), med(name, 1), med(name, 2), spread([r[0] for r in runs[name]])))
    print('| A/B | %.3f | %.3f | %.3f | |' % (med('A', 0) / med('B', 0), med('A', 1) / med('B', 1),
                                              med('A', 2) / med('B', 2)))
    print('\nthe plugin counted %s requests in A' % count)


if __name__ == '__main__':
    main()
