"""The plugin under a real Emperor (`uwsgi --emperor DIR`): vassals whose
metrics addresses clash keep serving their apps, the one without its
endpoint says why and binds when the address frees, fail-fast makes it exit
instead, and one shared template line gives every vassal its own socket."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import (APP, UWSGI, die_with_test, free_port, http_get, parse_exposition,
                     plugin_path, python_plugin_options, sanitizer_env, sanitizer_reports,
                     wait_for)

RETRY_S = 2  # prometheus-bind-retry of the vassals: the longest wait between bind attempts


def children(pid):
    """The direct children of `pid` (all its threads' children)."""
    found = []
    try:
        tasks = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return found
    for tid in tasks:
        try:
            with open('/proc/%d/task/%s/children' % (pid, tid)) as f:
                found += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return found


def start_time(pid):
    """The process's start time in clock ticks (None when it is gone): with
    the pid, an identity that pid reuse cannot fake."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == 'Z' else fields[19]


class Emperor:
    """An Emperor watching a vassal directory in a temp dir; each vassal
    runs the harness's app on its own http-socket and logs to its own file."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='uwsgi-prom-emperor-')
        self.vassals = os.path.join(self.dir, 'vassals')
        self.run = os.path.join(self.dir, 'run')
        os.makedirs(self.vassals)
        os.makedirs(self.run)
        with open(os.path.join(self.dir, 'app.py'), 'w') as f:
            f.write(APP)
        self.log_path = os.path.join(self.dir, 'emperor.log')
        self.ini = os.path.join(self.dir, 'emperor.ini')
        with open(self.ini, 'w') as f:
            f.write('[uwsgi]\nemperor = %s\nemperor-freq = 1\n' % self.vassals +
                    # the README's template: every vassal its own socket
                    'vassal-set = prometheus-socket=%s/%%(vassal).sock\n' % self.run +
                    'vassal-set = prometheus-bind-retry=%d\n' % RETRY_S)
        self.http_ports = {}
        self.seen = {}  # pid -> start time of every process of the tree
        self.proc = None

    def add_vassal(self, name, extra=()):
        port = free_port()
        self.http_ports[name] = port
        opts = python_plugin_options() + [
            ('plugin', plugin_path()), ('http-socket', '127.0.0.1:%d' % port),
            ('chdir', self.dir), ('wsgi-file', os.path.join(self.dir, 'app.py')),
            ('processes', '1'), ('logto', self.vassal_log(name))]
        text = '[uwsgi]\n' + ''.join('%s = %s\n' % kv for kv in list(opts) + list(extra))
        tmp = os.path.join(self.dir, name + '.ini.tmp')  # appears whole in the directory
        with open(tmp, 'w') as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.vassals, name + '.ini'))

    def remove_vassal(self, name):
        os.unlink(os.path.join(self.vassals, name + '.ini'))

    def vassal_log(self, name):
        return os.path.join(self.dir, name + '.log')

    def read(self, path):
        try:
            with open(path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def start(self):
        self.log = open(self.log_path, 'wb')
        self.proc = subprocess.Popen([UWSGI, '--ini', self.ini], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.dir,
                                     start_new_session=True, env=sanitizer_env(self.dir),
                                     preexec_fn=die_with_test)

    def note_processes(self):
        """Remembers every process below the Emperor, to check at the end."""
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            started = start_time(pid)
            if started is not None:
                self.seen.setdefault(pid, started)
                todo += children(pid)

    def app_serves(self, name):
        status, _, body = http_get(self.http_ports[name], '/hello', timeout=5)
        return status == 200 and body == 'hello /hello'

    def stop(self):
        """SIGINT to the Emperor, which stops its vassals; returns the pids
        of processes of its tree still alive afterwards (then killed)."""
        if not self.proc:
            return []
        if self.proc.poll() is None:
            self.note_processes()
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        left = []
        deadline = time.monotonic() + 10
        for pid, started in self.seen.items():
            while start_time(pid) == started and time.monotonic() < deadline:
                time.sleep(0.05)
            if start_time(pid) == started:
                left.append(pid)
                os.kill(pid, signal.SIGKILL)
        self.log.close()
        return left

    def cleanup(self):
        left = self.stop()
        logs = ''.join(self.read(os.path.join(self.dir, n)) for n in sorted(os.listdir(self.dir))
                       if n.endswith('.log'))
        reports = sanitizer_reports(self.dir, logs)
        shutil.rmtree(self.dir, ignore_errors=True)
        if left:
            raise AssertionError('processes left after the Emperor stopped: %r' % left)
        if reports:
            raise AssertionError('sanitizer reports:\n' + '\n'.join(reports.values()))


def endpoint_sockets(port):
    """The http-socket names in the scrape of the endpoint on `port`: which
    vassal answers there."""
    samples = parse_exposition(http_get(port, '/metrics', timeout=5)[2])[0]
    return {dict(labels)['name'] for (name, labels) in samples
            if name == 'uwsgi_socket_queue_length'}


class ClashingVassals(unittest.TestCase):
    """Three vassals: a and b both want 127.0.0.1:P for metrics, c takes the
    Emperor's template (a UNIX socket named after the vassal)."""

    @classmethod
    def setUpClass(cls):
        cls.emperor = Emperor()
        cls.metrics_port = free_port()
        try:
            for name in ('a', 'b'):
                cls.emperor.add_vassal(name, [('prometheus-socket',
                                               '127.0.0.1:%d' % cls.metrics_port)])
            cls.emperor.add_vassal('c')
            cls.emperor.start()
            for name in ('a', 'b', 'c'):
                wait_for(lambda: cls.emperor.app_serves(name), timeout=30,
                         what=lambda: '%s to serve (log: %s)' % (
                             name, cls.emperor.read(cls.emperor.vassal_log(name))[-2000:]))
            cls.emperor.note_processes()
            # The vassal that bound first holds the port; the other one waits.
            holder_socket = wait_for(lambda: endpoint_sockets(cls.metrics_port), timeout=10,
                                     what='the clashing endpoint')
            ports = {n: '127.0.0.1:%d' % p for n, p in cls.emperor.http_ports.items()}
            cls.holder = [n for n in 'ab' if {ports[n]} == holder_socket][0]
            cls.waiter = 'b' if cls.holder == 'a' else 'a'
            wait_for(lambda: 'still no metrics endpoint' in cls.log(cls.waiter),
                     timeout=3 * RETRY_S + 5, what='a reminder in the waiting vassal\'s log')
        except BaseException:
            cls.emperor.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.emperor.cleanup()

    @classmethod
    def log(cls, name):
        return cls.emperor.read(cls.emperor.vassal_log(name))

    def test_both_clashing_apps_serve_and_one_endpoint_answers(self):
        self.assertTrue(self.emperor.app_serves('a'))
        self.assertTrue(self.emperor.app_serves('b'))
        self.assertEqual(http_get(self.metrics_port, '/-/healthy', timeout=5)[0], 200)
        self.assertIn('[prometheus] serving metrics on 127.0.0.1:%d/metrics' % self.metrics_port,
                      self.log(self.holder))

    def test_the_waiting_vassal_logs_address_instance_and_fix_once_per_interval(self):
        log = self.log(self.waiter)
        address = '127.0.0.1:%d' % self.metrics_port
        first = re.escape("[prometheus] --prometheus-socket '%s': %s: address already in use "
                          "(vassal %s.ini, pid " % (address, address, self.waiter)) + \
            r'\d+' + re.escape('); uWSGI starts without the metrics endpoint and binds it as '
                               'soon as the address is free (trying again every 1 s to %d s)'
                               % RETRY_S)
        self.assertRegex(log, first)
        self.assertIn('[prometheus] fix: give every instance its own address, e.g. '
                      'prometheus-socket = /run/uwsgi/metrics/%(vassal).sock', log)
        self.assertIn('prometheus-bind-fail-fast = true', log)
        # Reminders, one per longest wait: the attempt at 1 s is not logged.
        reminders = re.findall(r"^\[prometheus\] --prometheus-socket '%s': .*\(vassal %s\.ini, "
                               r"pid \d+\), (\d+) attempts in (\d+) s; still no metrics "
                               r"endpoint, next attempt in %d s$"
                               % (re.escape(address), self.waiter, RETRY_S), log, re.M)
        self.assertTrue(reminders, log)
        attempts = [int(n) for n, _ in reminders]
        seconds = [int(s) for _, s in reminders]
        self.assertGreaterEqual(attempts[0], 3)
        self.assertLess(len(reminders), attempts[-1])
        for earlier, later in zip(seconds, seconds[1:]):
            self.assertGreaterEqual(later - earlier, RETRY_S - 1)
        # (the endpoint may have moved here since, see the test below)
        self.assertNotIn('serving metrics on %s' % address, log.split('bound after')[0])

    def test_the_template_gives_every_vassal_its_own_socket(self):
        path = os.path.join(self.emperor.run, 'c.sock')
        status, _, body = http_get(None, '/metrics', unix=path, timeout=5)
        self.assertEqual(status, 200)
        self.assertIn('name="127.0.0.1:%d"' % self.emperor.http_ports['c'], body)
        self.assertIn('uwsgi_prometheus_build_info{', body)
        self.assertIn('[prometheus] serving metrics on unix:%s/metrics' % path, self.log('c'))

    def test_fail_fast_makes_a_clashing_vassal_exit_with_a_clear_message(self):
        self.emperor.add_vassal('d', [('prometheus-socket', '127.0.0.1:%d' % self.metrics_port),
                                      ('prometheus-bind-fail-fast', 'true')])
        try:
            wait_for(lambda: 'stopping because prometheus-bind-fail-fast is set' in self.log('d'),
                     timeout=20, what=lambda: 'd to stop (log: %s)' % self.log('d')[-2000:])
            self.assertRegex(self.log('d'), re.escape(
                "[prometheus] --prometheus-socket '127.0.0.1:%d': 127.0.0.1:%d: address already "
                "in use (vassal d.ini, pid " % (self.metrics_port, self.metrics_port)) + r'\d+\); '
                r'stopping because prometheus-bind-fail-fast is set: give every instance its own '
                r'address')
            self.assertNotIn('spawned uWSGI worker', self.log('d'))
            with self.assertRaises(OSError):
                self.emperor.app_serves('d')
        finally:
            self.emperor.note_processes()
            self.emperor.remove_vassal('d')

    def test_the_endpoint_moves_to_the_waiting_vassal_when_the_holder_goes(self):
        started = time.monotonic()
        self.emperor.remove_vassal(self.holder)
        waiter_socket = {'127.0.0.1:%d' % self.emperor.http_ports[self.waiter]}
        # The Emperor notices within emperor-freq (1 s), the holder stops, and
        # the waiter's next attempt comes within RETRY_S.
        wait_for(lambda: endpoint_sockets(self.metrics_port) == waiter_socket,
                 timeout=15 + RETRY_S, interval=0.2,
                 what=lambda: 'the endpoint of %s (log: %s)' % (
                     self.waiter, self.log(self.waiter)[-2000:]))
        print('endpoint moved in %.1f s' % (time.monotonic() - started))
        log = self.log(self.waiter)
        self.assertRegex(log, r"\[prometheus\] --prometheus-socket '127\.0\.0\.1:%d': bound after "
                         r"\d+ failed attempts in \d+ s; the metrics endpoint is up"
                         % self.metrics_port)
        self.assertIn('[prometheus] serving metrics on 127.0.0.1:%d/metrics' % self.metrics_port,
                      log)
        self.assertTrue(self.emperor.app_serves(self.waiter))


if __name__ == '__main__':
    unittest.main()
