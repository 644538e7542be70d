"""The multi-process merge against prometheus_client itself: real .db files
written by the library from several processes (some marked dead), merged by
the plugin's reader and by MultiProcessCollector, compared sample for sample
after parsing both with prometheus_client's parser. Also the newer on-disk
layout (value + timestamp), and hostile directory contents."""
import json
import os
import shutil
import struct
import subprocess
import tempfile
import unittest

import signal

from harness import HERE, Uwsgi, parse_exposition, wait_for

# The library must be Debian's (python3-prometheus-client), whatever runs the tests.
SYSTEM_PYTHON = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else 'python3'
DUMP = os.environ.get('MULTIPROC_DUMP', os.path.join(HERE, '..', '..', 'build', 'tests', 'multiproc_dump'))

# Every family prometheus_client 0.16 writes in multi-process mode (Info and
# Enum write nothing): counters, gauges in all eight modes, histograms with
# default and odd buckets, summaries; label values with escapes and unicode.
WRITER = r'''
import os, sys
os.environ['PROMETHEUS_MULTIPROC_DIR'] = sys.argv[1]
from prometheus_client import Counter, Gauge, Histogram, Summary
i = int(sys.argv[2])
c = Counter('jobs', 'Jobs done.', ['kind'])
c.labels('a').inc(i + 1)
c.labels('b"q\\\\').inc(0.5)
c.labels('two\nlines').inc(i)
Counter('plain', 'No labels.').inc(i)
Counter('unicode_total', 'H\u00e9lp with \\ backslash\nnewline.', ['v']).labels('caf\u00e9 \u2603').inc(2)
for mode in ('all', 'liveall', 'livesum', 'sum', 'max', 'min', 'livemax', 'livemin'):
    g = Gauge('g_' + mode, 'Gauge ' + mode, ['x'], multiprocess_mode=mode)
    g.labels('1').set(i * 10 + 1)
    g.labels('2').set(-i)
    g.labels('\u00fc"\\').set(i * 0.25)
    # an app label named pid: the library drops it outside all/liveall
    p = Gauge('gp_' + mode, 'Gauge ' + mode + ' by pid', ['pid', 'x'], multiprocess_mode=mode)
    p.labels(str(i % 2), '1').set(i + 1)
    p.labels('7', '2').set(-i)
h = Histogram('latency_seconds', 'Latency.', ['route'], buckets=(0.01, 0.1, 1, 10))
for v in (0.005, 0.05, 0.5, 5, 50)[: i + 2]:
    h.labels('/x').observe(v)
h.labels('/y').observe(i * 0.3)
h.labels('/\u00e9"\\').observe(i)
d = Histogram('default_seconds', 'Default buckets.')
for v in (0.003, 0.2, 0.9, 3, 12)[: i + 2]:
    d.observe(v)
o = Histogram('odd', 'Odd buckets.', ['k'],
              buckets=(-2.5, 0, 1e-05, 0.0001, 0.1, 2.5, 100000.0, 1e6, 1234567.0, 1e+20))
for v in (-3, -1, 0, 3e-06, 0.05, 2, 99999, 5e5, 1.1e6, 1e19, 1e21)[i:]:
    o.labels('v').observe(v)
s = Summary('sizes', 'Sizes.')
s.observe(i * 100 + 1)
Summary('sizes_by', 'Sizes by route.', ['route']).labels('/\u00e9"').observe(i + 0.5)
'''

# Both expositions through prometheus_client's own parser: label values stay
# the strings the text carries (never read as numbers: le="1" and le="1.0"
# are two series), sample names as written, values as floats.
READER = r'''
import os, sys, json
os.environ['PROMETHEUS_MULTIPROC_DIR'] = sys.argv[1]
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families
def parse(text):
    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.append([fam.name, fam.type, fam.documentation, s.name, sorted(s.labels.items()),
                        s.value])
    return sorted(out)
if sys.argv[2] == 'library':
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg)
    text = generate_latest(reg).decode()
else:
    text = sys.stdin.read()
print(json.dumps(parse(text)))
'''

MARK_DEAD = r'''
import os, sys
from prometheus_client import multiprocess
multiprocess.mark_process_dead(sys.argv[2], sys.argv[1])
'''


def run_py(code, *args, stdin=None):
    res = subprocess.run([SYSTEM_PYTHON, '-c', code] + list(args), input=stdin,
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise AssertionError(res.stderr)
    return res.stdout


def parse_with_library(text):
    return json.loads(run_py(READER, '/', 'stdin', stdin=text))


def assert_same_series(test, ours, expected):
    """Sample lists of READER: the same families, series and values."""
    def by_series(samples):
        return {(s[3], tuple(map(tuple, s[4]))): (s[0], s[1], s[2], s[5]) for s in samples}
    ours_map, expected_map = by_series(ours), by_series(expected)
    test.assertEqual(len(ours_map), len(ours), 'a series served twice')
    missing = sorted(set(expected_map) - set(ours_map))
    extra = sorted(set(ours_map) - set(expected_map))
    test.assertEqual((missing[:20], extra[:20]), ([], []),
                     '%d series missing, %d extra' % (len(missing), len(extra)))
    for k in expected_map:
        test.assertEqual(ours_map[k], expected_map[k], k)


def write_entries(path, entries, used=None, tail=b'\0' * 64):
    """A .db file in the 0.16 layout: (JSON key, value) pairs; `used` as given
    or true."""
    out = bytearray(8)
    for key, value in entries:
        k = key.encode() if isinstance(key, str) else key
        pad = 8 - (len(k) + 4) % 8
        out += struct.pack('<i', len(k)) + k + b' ' * pad + struct.pack('<d', value)
    struct.pack_into('<i', out, 0, used if used is not None else len(out))
    with open(path, 'wb') as f:
        f.write(bytes(out) + tail)


def dump(directory):
    res = subprocess.run([DUMP, directory], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout, res.stderr


def library_available():
    return subprocess.run([SYSTEM_PYTHON, '-c', 'import prometheus_client'],
                          capture_output=True).returncode == 0


def write_new_layout(old_path, new_path, timestamp_of, value_of=lambda v: v,
                     key_of=lambda k: k):
    """Rewrites a 0.16 file in the layout of 0.18+ (a timestamp after each value)."""
    with open(old_path, 'rb') as f:
        data = f.read()
    used = struct.unpack_from('<i', data, 0)[0]
    pos, out = 8, bytearray(8)
    while pos < used:
        n = struct.unpack_from('<i', data, pos)[0]
        key = data[pos + 4:pos + 4 + n]
        pad = 8 - (n + 4) % 8
        value = struct.unpack_from('<d', data, pos + 4 + n + pad)[0]
        pos += 4 + n + pad + 8
        new_key = key_of(key)
        new_pad = 8 - (len(new_key) + 4) % 8
        out += (struct.pack('<i', len(new_key)) + new_key + b' ' * new_pad +
                struct.pack('<dd', value_of(value), timestamp_of(key)))
    struct.pack_into('<i', out, 0, len(out))
    with open(new_path, 'wb') as f:
        f.write(bytes(out) + b'\0' * 4096)


@unittest.skipUnless(library_available(), 'python3-prometheus-client is not installed')
class MergeLikePrometheusClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix='multiproc-')
        cls.pids = []
        for i in range(4):
            # each writer is its own process: its pid names its files
            p = subprocess.Popen([SYSTEM_PYTHON, '-c', WRITER, cls.dir, str(i)])
            p.wait(60)
            cls.pids.append(p.pid)
        run_py(MARK_DEAD, cls.dir, str(cls.pids[1]))  # one process died

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def compare(self, directory):
        expected = json.loads(run_py(READER, directory, 'library'))
        text, skipped = dump(directory)
        self.assertEqual(skipped, '')
        assert_same_series(self, parse_with_library(text), expected)
        return text, expected

    def test_same_samples_as_multiprocess_collector(self):
        text, expected = self.compare(self.dir)
        self.assertGreater(len(expected), 90)
        self.assertNotIn('pid="%d"' % self.pids[1], text.split('g_liveall')[1].split('# HELP')[0])
        # the spellings this is about, as the library writes them
        for series in ('latency_seconds_bucket{le="1.0",route="/x"}',
                       'latency_seconds_bucket{le="+Inf",route="/x"}',
                       'default_seconds_bucket{le="0.005"}', 'default_seconds_bucket{le="10.0"}',
                       'odd_bucket{k="v",le="1e-05"}', 'odd_bucket{k="v",le="100000.0"}',
                       'odd_bucket{k="v",le="1e+06"}', 'odd_bucket{k="v",le="1.234567e+06"}',
                       'odd_bucket{k="v",le="1e+20"}', 'odd_bucket{k="v",le="-2.5"}',
                       'odd_bucket{k="v",le="0.0"}'):
            name, labels = series.split('{')
            labels = sorted(tuple(l.split('=')) for l in labels[:-1].replace('"', '').split(','))
            self.assertIn([name, [list(l) for l in labels]], [e[3:5] for e in expected], series)

    def test_bounds_respelled_as_the_library_does(self):
        # Buckets written by another client (or by hand) with other spellings
        # of the same bound: MultiProcessCollector reads le as a float, adds
        # up equal bounds and spells them with floatToGoString.
        new_dir = tempfile.mkdtemp(prefix='multiproc-spelling-')
        try:
            def key(le):
                return '["h", "h_bucket", {"le": "%s", "r": "a"}, "H."]' % le
            write_entries(os.path.join(new_dir, 'histogram_1.db'),
                          [(key('1'), 1.0), (key('0.50'), 2.0), (key('1e3'), 4.0),
                           (key('+Inf'), 8.0), ('["h", "h_sum", {"r": "a"}, "H."]', 9.5)])
            write_entries(os.path.join(new_dir, 'histogram_2.db'),
                          [(key('1.0'), 16.0), (key('.5'), 32.0), (key('1000.0'), 64.0),
                           (key('2e6'), 128.0), ('["h", "h_sum", {"r": "a"}, "H."]', 0.5)])
            _, expected = self.compare(new_dir)
            les = [dict(e[4]).get('le') for e in expected if e[3] == 'h_bucket']
            self.assertEqual(sorted(les), sorted(['0.5', '1.0', '1000.0', '2e+06', '+Inf']))
        finally:
            shutil.rmtree(new_dir, ignore_errors=True)

    def test_newer_layout_with_timestamps(self):
        new_dir = tempfile.mkdtemp(prefix='multiproc-new-')
        try:
            for name in os.listdir(self.dir):
                write_new_layout(os.path.join(self.dir, name), os.path.join(new_dir, name),
                                 lambda key: 1795000000.0)
            # same values, so the 0.16 library's merge of the old files is the reference
            expected = json.loads(run_py(READER, self.dir, 'library'))
            text, skipped = dump(new_dir)
            self.assertEqual(skipped, '')
            assert_same_series(self, parse_with_library(text), expected)
            # mostrecent: the value with the newest timestamp wins, across processes
            src = os.path.join(self.dir, 'gauge_max_%d.db' % self.pids[0])
            stamps = (1795000009.0, 1795000050.0, 1795000008.0)  # the second file is newest
            for i, pid in enumerate((7001, 7002, 7003)):
                write_new_layout(src, os.path.join(new_dir, 'gauge_mostrecent_%d.db' % pid),
                                 lambda key, i=i: stamps[i], lambda v, i=i: (i + 1) * 100.0,
                                 lambda k: k.replace(b'"g_max"', b'"g_recent"'))
            text, _ = dump(new_dir)
            self.assertIn('# TYPE g_recent gauge\ng_recent{x="1"} 200\ng_recent{x="2"} 200\n', text)
        finally:
            shutil.rmtree(new_dir, ignore_errors=True)


class HostileDirectory(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='multiproc-bad-')
        self.good = self.entry_file('counter_1.db', [('["c", "c_total", {"a": "b"}, "Help."]', 3.0)])

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def entry_file(self, name, entries, used=None, tail=b'\0' * 64):
        path = os.path.join(self.dir, name)
        write_entries(path, entries, used, tail)
        return path

    def served(self):
        text, skipped = dump(self.dir)
        self.assertIn('c_total{a="b"} 3', text)  # the good file always served
        return text, skipped

    def test_truncated_and_growing_files(self):
        full = self.entry_file('counter_2.db', [('["d", "d_total", {}, "D."]', 1.0),
                                                ('["d", "d_total", {"x": "y"}, "D."]', 2.0)])
        with open(full, 'rb') as f:
            data = f.read()
        with open(full, 'wb') as f:  # `used` says more than is there: still being written
            f.write(data[:8 + 40])
        text, skipped = self.served()
        self.assertIn('d_total 1', text)
        self.assertNotIn('x="y"', text)

    def test_corrupt_and_foreign_files(self):
        with open(os.path.join(self.dir, 'counter_3.db'), 'wb') as f:
            f.write(os.urandom(4096))
        with open(os.path.join(self.dir, 'gauge_all_4.db'), 'wb') as f:
            f.write(b'\xff\xff\xff\x7f' + b'\0' * 100)  # used far beyond the file
        with open(os.path.join(self.dir, 'notes.db'), 'w') as f:
            f.write('not a metrics file')
        self.entry_file('counter_5.db', [('["bad name", "x", {}, ""]', 1.0),
                                         ('not json at all', 1.0),
                                         (b'["u", "u_total", {"v": "\xff\xfe"}, "U."]', 4.0),
                                         ('["u", "u_total", {"v": "\\ud800"}, "U."]', 5.0)])
        text, skipped = self.served()
        self.assertIn('notes.db', skipped)
        self.assertIn('counter_5.db', skipped)
        self.assertIn('u_total{v="\ufffd\ufffd"} 4', text)

    def test_same_series_under_another_help_text_adds_up(self):
        # an app redeployed with a new help text; older workers' files remain
        self.entry_file('counter_20.db', [('["r", "r_total", {"a": "x"}, "Old help."]', 5.0)])
        self.entry_file('counter_21.db', [('["r", "r_total", {"a": "x"}, "New help."]', 7.0)])
        text, _ = self.served()
        self.assertIn('r_total{a="x"} 12\n', text)
        self.assertEqual(text.count('r_total{a="x"}'), 1)

    def test_a_pid_label_of_the_app_is_not_repeated(self):
        self.entry_file('gauge_all_30.db', [('["g", "g", {"pid": "mine"}, "G."]', 5.0)])
        text, _ = self.served()
        self.assertIn('g{pid="30"} 5\n', text)  # prometheus_client's pid wins, once
        from expo_lint import lint
        self.assertEqual(lint(text.encode()), [])

    def test_fifo_symlink_directory_and_huge_file(self):
        os.mkfifo(os.path.join(self.dir, 'counter_6.db'))
        os.symlink(self.good, os.path.join(self.dir, 'counter_7.db'))
        os.mkdir(os.path.join(self.dir, 'counter_8.db'))
        with open(os.path.join(self.dir, 'counter_9.db'), 'wb') as f:
            f.truncate(200 << 20)  # sparse, 200 MiB
        text, skipped = self.served()
        for name in ('counter_6.db', 'counter_7.db', 'counter_8.db', 'counter_9.db'):
            self.assertIn(name, skipped)


class ThroughThePlugin(unittest.TestCase):
    """prometheus-multiproc-dir in a real uWSGI: merged into the scrape, cleared at
    start, live gauges of dead workers removed, clashes and bad files survived."""

    def test_merged_cleared_marked_dead_and_robust(self):
        if not library_available():
            self.skipTest('python3-prometheus-client is not installed')
        u = Uwsgi(workers=2)
        mp = u.add_multiproc_dir()
        stale = os.path.join(mp, 'counter_1.db')
        with open(stale, 'wb') as f:
            f.write(b'stale')
        try:
            u.start()
            self.assertFalse(os.path.exists(stale))  # emptied when the master started
            for _ in range(10):
                u.request('/mp')
            samples = parse_exposition(u.scrape())[0]
            self.assertEqual(sum(v for (n, _), v in samples.items() if n == 'app_hits_total'), 10)
            live = {dict(ls)['pid'] for (n, ls) in samples if n == 'app_live'}
            self.assertTrue(live)

            # a name that the plugin serves itself: one family, one log line
            for _ in range(3):
                u.request('/clash')
            body = u.scrape()
            body = u.scrape()
            self.assertEqual(body.count('# TYPE uwsgi_workers gauge'), 1)
            self.assertNotIn(' 99\n', ''.join(l + '\n' for l in body.splitlines()
                                              if l.startswith('uwsgi_workers')))
            self.assertEqual(u.read_log().count('family uwsgi_workers is served twice'), 1)

            # a corrupt file and a FIFO appear: the scrape goes on, the counter moves
            with open(os.path.join(mp, 'histogram_777.db'), 'wb') as f:
                f.write(b'\x10\x00\x00\x00garbage!' * 10)
            os.mkfifo(os.path.join(mp, 'gauge_all_778.db'))
            samples = parse_exposition(u.scrape())[0]
            self.assertEqual(sum(v for (n, _), v in samples.items() if n == 'app_hits_total'), 13)
            skipped = {dict(ls)['reason']: v for (n, ls), v in samples.items()
                       if n == 'uwsgi_prometheus_multiproc_skipped_files_total'}
            self.assertEqual(set(skipped), {'directory', 'file_name', 'open', 'not_regular',
                                            'too_large', 'corrupt', 'invalid_keys'})
            self.assertGreaterEqual(skipped['corrupt'], 1)
            self.assertGreaterEqual(skipped['not_regular'], 1)
            self.assertGreaterEqual(samples[('uwsgi_prometheus_multiproc_files', frozenset())], 2)
            self.assertIn(('uwsgi_prometheus_multiproc_merge_duration_seconds', frozenset()), samples)
            self.assertIn('multiproc: skipped gauge_all_778.db: not a regular file', u.read_log())

            # a worker dies: its live gauge goes, its counts stay
            victim = int(next(iter(live)))
            live_file = os.path.join(mp, 'gauge_liveall_%d.db' % victim)
            self.assertTrue(os.path.exists(live_file))
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: not os.path.exists(live_file), what='live gauge file removed')
            samples = parse_exposition(u.scrape())[0]
            self.assertNotIn(str(victim), {dict(ls)['pid'] for (n, ls) in samples if n == 'app_live'})
            self.assertEqual(sum(v for (n, _), v in samples.items() if n == 'app_hits_total'), 13)
        finally:
            u.cleanup()

    def test_scrape_carries_the_library_series(self):
        # The app's part of a real scrape (the exporter's path, not just the
        # merge) against MultiProcessCollector on the same quiet directory.
        if not library_available():
            self.skipTest('python3-prometheus-client is not installed')
        u = Uwsgi(workers=1)
        mp = u.add_multiproc_dir()
        try:
            u.start()
            own = {s[0] for s in parse_with_library(u.scrape())}  # the plugin's families
            for i in range(3):
                subprocess.run([SYSTEM_PYTHON, '-c', WRITER, mp, str(i)], check=True, timeout=60)
            expected = json.loads(run_py(READER, mp, 'library'))
            ours = [s for s in parse_with_library(u.scrape()) if s[0] not in own]
            self.assertGreater(len(expected), 90)
            assert_same_series(self, ours, expected)
        finally:
            u.cleanup()


if __name__ == '__main__':
    unittest.main()
