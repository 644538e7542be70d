#!/usr/bin/env python3
"""The master's memory during and after a burst of concurrent scrapes.

    PROMETHEUS_PLUGIN=build/prometheus_plugin.so tests/bench/burst_bench.py \
        [--workers 256] [--clients 128] [--rounds 3]

One uWSGI with the plugin; each round, `clients` clients connect at once,
ask for /metrics (identity, gzip, or half and half) and read it slowly
(2 KiB every 5 ms through a 4 KiB receive buffer), so that bodies are still
being sent while the others ask. Printed per round: the body size, how many
renders the clients' bodies came from, and the master's RSS before the
burst, at its peak during it and 0.5 s after the last client finished.
"""
import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
from harness import Uwsgi  # noqa: E402
from test_memory import SCRAPES, SlowClient, rss_bytes  # noqa: E402

MODES = {'identity': lambda i: False, 'gzip': lambda i: True, 'mixed': lambda i: i % 2 == 1}


def burst(u, clients, mode):
    start_line = threading.Event()
    group = [SlowClient(u.port, MODES[mode](i), start_line) for i in range(clients)]
    for c in group:
        c.start()
    pid = u.proc.pid
    before = peak = rss_bytes(pid)
    start_line.set()
    while any(c.is_alive() for c in group):
        peak = max(peak, rss_bytes(pid))
        time.sleep(0.01)
    time.sleep(0.5)
    after = rss_bytes(pid)
    errors = [c.error for c in group if c.error or not c.head.startswith(b'HTTP/1.1 200')]
    renders = {int(SCRAPES.search(c.text()).group(1)) for c in group if not c.error}
    sizes = sorted({len(c.body) for c in group if not c.error})
    return {'before': before, 'peak': peak, 'after': after, 'renders': len(renders),
            'bytes': '%d-%d' % (sizes[0], sizes[-1]) if sizes else '-', 'errors': len(errors)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workers', type=int, default=256)
    parser.add_argument('--clients', type=int, default=128)
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    rows = []
    with Uwsgi(workers=args.workers, extra=[('listen', '1024')]) as u:
        for _ in range(5):
            u.scrape()
        for r in range(args.rounds):
            for mode in MODES:
                rows.append((r + 1, mode, burst(u, args.clients, mode)))
    kib = 1024
    print('\n%d workers, %d clients per burst\n' % (args.workers, args.clients))
    print('| round | coding | body bytes | renders | RSS before | peak (added) | after (added) '
          '| errors |')
    print('|---|---|---|---|---|---|---|---|')
    for r, mode, x in rows:
        print('| %d | %s | %s | %d | %.1f MiB | %+.0f KiB | %+.0f KiB | %d |' % (
            r, mode, x['bytes'], x['renders'], x['before'] / kib / kib,
            (x['peak'] - x['before']) / kib, (x['after'] - x['before']) / kib, x['errors']))


if __name__ == '__main__':
    main()
