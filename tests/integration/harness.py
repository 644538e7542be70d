"""Start a real uWSGI with the built plugin on loopback, scrape it, read its
stats server, and clean up. Standard library only."""
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
UWSGI = os.environ.get('UWSGI_BIN', shutil.which('uwsgi') or '/usr/bin/uwsgi')
# Set by CMake when the plugin is built with UWSGI_PROMETHEUS_SANITIZE=ON: the
# ASan and UBSan runtimes (':'-separated, ASan first) that the sanitized
# plugin needs, preloaded into each uwsgi started here. This Python never
# loads them.
SANITIZER_PRELOAD = os.environ.get('UWSGI_PROMETHEUS_SANITIZER_PRELOAD', '')
SANITIZER_FILES = os.path.join(HERE, '..', 'sanitizer')


def python_plugin_options():
    """The options that load uWSGI's python3 plugin: Debian's from its plugin
    directory, or the file named by UWSGI_PYTHON_PLUGIN (a uWSGI built from
    source, as tests/uwsgi-matrix does, has its python3_plugin.so in its
    tree)."""
    path = os.environ.get('UWSGI_PYTHON_PLUGIN')
    if path:
        return [('plugin', os.path.abspath(path))]
    return [('plugins-dir', '/usr/lib/uwsgi/plugins'), ('plugin', 'python3')]


def plugin_path():
    path = os.environ.get('PROMETHEUS_PLUGIN')
    if not path:
        raise RuntimeError('set PROMETHEUS_PLUGIN to the built prometheus_plugin.so')
    return os.path.abspath(path)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=15.0, interval=0.05, what='condition'):
    """Polls predicate() until it returns something true. `what` names the
    condition in the error; a callable is called then (e.g. to show a log
    as it is at the deadline)."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # keep polling until the deadline
            last_error = e
        time.sleep(interval)
    if callable(what):
        what = what()
    raise AssertionError('timed out waiting for %s (last error: %r)' % (what, last_error))


def basic_auth(user, password):
    """An Authorization header for HTTP Basic auth."""
    token = base64.b64encode(('%s:%s' % (user, password)).encode('utf-8')).decode('ascii')
    return {'Authorization': 'Basic ' + token}


def http_get(port, path='/metrics', method='GET', host='127.0.0.1', timeout=10, headers=None,
             unix=None, ssl_context=None):
    if unix:
        conn = UnixHTTPConnection(unix, timeout=timeout)
    elif ssl_context:
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl_context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode('utf-8')
    finally:
        conn.close()


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__('localhost', timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def unescape(value):
    return re.sub(r'\\(.)', lambda m: '\n' if m.group(1) == 'n' else m.group(1), value)


def parse_exposition(text):
    """Returns (samples, types, helps): samples maps (name, frozenset of
    (label, value)) to a float."""
    samples, types, helps = {}, {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith('# HELP '):
            name, _, help_text = line[7:].partition(' ')
            helps[name] = help_text
            continue
        if line.startswith('# TYPE '):
            name, _, kind = line[7:].partition(' ')
            types[name] = kind
            continue
        if line.startswith('#'):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise ValueError('unparsable line: %r' % line)
        labels = frozenset((k, unescape(v)) for k, v in LABEL_RE.findall(m.group(3) or ''))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples, types, helps


def read_until_eof(s):
    chunks = []
    while True:
        data = s.recv(262144)
        if not data:
            return b''.join(chunks)
        chunks.append(data)


def connect(where, timeout=10):
    """A UNIX socket path or a (host, port) pair."""
    if isinstance(where, tuple):
        return socket.create_connection(where, timeout=timeout)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(where)
    except BaseException:
        s.close()
        raise
    return s


def read_stats(where):
    """uWSGI's JSON stats server, on a UNIX socket path or a (host, port)."""
    with connect(where) as s:
        return json.loads(read_until_eof(s).decode('utf-8'))


APP = '''
import os, threading, time

def application(environ, start_response):
    path = environ.get('PATH_INFO', '/')
    if path.startswith('/sleep/'):
        time.sleep(float(path.split('/')[2]))
    if path == '/fail':
        raise RuntimeError('requested failure')
    if path == '/cache':
        import uwsgi
        key = environ.get('QUERY_STRING', 'k')
        if uwsgi.cache_get(key) is None:
            uwsgi.cache_set(key, b'v')
    status = '200 OK'
    if path in ('/mp', '/clash'):
        # prometheus_client in multi-process mode (PROMETHEUS_MULTIPROC_DIR set by the plugin)
        from prometheus_client import Counter, Gauge
        m = globals().setdefault('_metrics', {})
        if not m:
            m['hits'] = Counter('app_hits', 'Hits.', ['path'])
            m['live'] = Gauge('app_live', 'Set by each live worker.', multiprocess_mode='liveall')
        m['hits'].labels(path).inc()
        m['live'].set(os.getpid())
        if path == '/clash' and 'clash' not in m:
            m['clash'] = Gauge('uwsgi_workers', 'Clashes with the plugin.', multiprocess_mode='max')
            m['clash'].set(99)
    if path.startswith('/status/'):
        # /status/CODE/SECONDS: answer CODE after sleeping SECONDS
        _, _, code, delay = path.split('/')
        time.sleep(float(delay))
        status = code + ' Whatever'
    if path == '/pid':
        body = str(os.getpid()).encode()
    elif path.startswith('/pid/'):
        # /pid/SECONDS: "PID TID" of the worker thread, after sleeping SECONDS
        time.sleep(float(path.split('/')[2]))
        body = ('%d %d' % (os.getpid(), threading.get_native_id())).encode()
    else:
        body = b'hello ' + path.encode()
    start_response(status, [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])
    return [body]
'''


def die_with_test():
    """preexec_fn for a uWSGI started by a test: the kernel sends it SIGINT
    (uWSGI's "stop") when the test process dies, so that a test killed by
    ctest's timeout leaves no uWSGI behind. Runs in the child before exec."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGINT, 0, 0, 0)  # PR_SET_PDEATHSIG


def sanitizer_env(directory):
    """The environment for a uwsgi process: this one's, plus under a
    sanitized build the preloaded runtimes and their options, ASan's
    reports going to files in `directory` (see sanitizer_reports)."""
    env = dict(os.environ)
    if not SANITIZER_PRELOAD:
        return env
    env['LD_PRELOAD'] = ':'.join(p for p in (SANITIZER_PRELOAD, env.get('LD_PRELOAD')) if p)
    common = [
        'halt_on_error=1',     # the first report ends the process...
        'abort_on_error=1',    # ...with SIGABRT, which uWSGI logs for a worker
    ]
    env['ASAN_OPTIONS'] = ':'.join(common + [
        'log_path=' + os.path.join(directory, 'sanitizer'),  # one file per reporting pid
        # uWSGI and CPython keep their memory until exit by design and
        # workers end by signal; leaks are checked in the unit tests.
        'detect_leaks=0',
        # a crash gets an ASan report, not only uWSGI's own backtrace
        'allow_user_segv_handler=0',
        'suppressions=' + os.path.abspath(os.path.join(SANITIZER_FILES, 'asan.supp')),
    ])
    # With gcc's separate runtimes UBSan ignores log_path and reports on
    # stderr, which is the instance's log (sanitizer_reports reads it there).
    env['UBSAN_OPTIONS'] = ':'.join(common + ['print_stacktrace=1'])
    return env


def sanitizer_reports(directory, log=''):
    """The text of each ASan report file in `directory`, by name, and the
    first UBSan report in `log`, the instance's output (see sanitizer_env)."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith('sanitizer.'))
    except OSError:
        names = []
    reports = {}
    for name in names:
        with open(os.path.join(directory, name), 'rb') as f:
            reports[name] = f.read().decode('utf-8', 'replace')
    ubsan = [m.start() for m in re.finditer(r'^\S+:\d+:\d+: runtime error: ', log, re.M)]
    if ubsan:
        reports['UBSan in the uwsgi log'] = log[ubsan[0]:ubsan[0] + 6000]
    return reports


class Uwsgi:
    """One uWSGI instance in a temp dir. Use as a context manager."""

    def __init__(self, extra=(), workers=2, master=True, with_plugin=True, plugin=None,
                 prometheus_socket=None, stats=True, threads=None, port=None,
                 stats_address=None, client_headers=None, ssl_context=None):
        # What the endpoint's clients here send (credentials) and use (an
        # ssl.SSLContext for HTTPS), when a web configuration asks for them.
        self.client_headers = client_headers or {}
        self.ssl_context = ssl_context
        self.dir = tempfile.mkdtemp(prefix='uwsgi-prom-test-')
        self.workers = workers
        self.port = port or free_port()    # the plugin's endpoint
        self.http_port = free_port()       # an http-socket for requests
        self.uwsgi_port = free_port()      # a uwsgi-protocol socket
        self.stats_path = os.path.join(self.dir, 'stats.sock')
        self.log_path = os.path.join(self.dir, 'uwsgi.log')
        with open(os.path.join(self.dir, 'app.py'), 'w') as f:
            f.write(APP)
        opts = python_plugin_options() + [
            ('http-socket', '127.0.0.1:%d' % self.http_port),
            ('socket', '127.0.0.1:%d' % self.uwsgi_port),
            ('chdir', self.dir),
            ('wsgi-file', os.path.join(self.dir, 'app.py')),
            ('processes', str(workers)),
            ('die-on-term', 'true'),
        ]
        if master:
            # cache2, memory-report and stats would switch the master on by themselves
            opts.insert(0, ('master', 'true'))
            opts += [('cache2', 'name=testcache,items=100'), ('memory-report', 'true')]
        else:
            stats = False
        if threads:
            opts.append(('threads', str(threads)))
        self.stats_enabled = stats
        self.stats_address = stats_address if stats else None
        if stats:
            opts.append(('stats', '%s:%d' % stats_address if stats_address else self.stats_path))
        if with_plugin:
            opts.append(('plugin', plugin or plugin_path()))
            opts.append(('prometheus-socket',
                         prometheus_socket or '127.0.0.1:%d' % self.port))
        opts.extend(extra)
        self.ini = os.path.join(self.dir, 'uwsgi.ini')
        with open(self.ini, 'w') as f:
            f.write('[uwsgi]\n')
            for k, v in opts:
                f.write('%s = %s\n' % (k, v))
        self.proc = None
        self.with_plugin = with_plugin

    def add_multiproc_dir(self):
        """Sets prometheus-multiproc-dir to a new directory (before start);
        returns its path."""
        mp = os.path.join(self.dir, 'mp')
        os.makedirs(mp)
        with open(self.ini, 'a') as f:
            f.write('prometheus-multiproc-dir = %s\n' % mp)
        return mp

    def start(self, wait=True):
        self.log = open(self.log_path, 'wb')
        self.proc = subprocess.Popen([UWSGI, '--ini', self.ini], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.dir,
                                     start_new_session=True, env=sanitizer_env(self.dir),
                                     preexec_fn=die_with_test)
        if wait and self.with_plugin:
            wait_for(lambda: self.proc.poll() is None and
                     self.get('/-/healthy', timeout=2)[0] == 200,
                     what=lambda: 'the prometheus endpoint (exit status %r, log: %s)' % (
                         self.proc.poll(), self.read_log()[-2000:]))
        if wait:
            # hundreds of workers on a busy 2-core machine take a while to fork
            wait_for(self.all_workers_up, timeout=max(15.0, 0.25 * self.workers),
                     what='all workers to start')
        return self

    def all_workers_up(self):
        """Every worker has reached its accept loop. uWSGI marks a worker
        `accepting` only after it has installed its signal handlers; before
        that the worker still ignores SIGHUP (inherited from the master's
        start-up), so a reload signalled earlier is lost for that worker and
        the master waits worker-reload-mercy (60 s) before killing it. A pid
        in the stats is not enough: it is written by the master at fork."""
        if not self.stats_address and not os.path.exists(self.stats_path):
            return not self.stats_enabled
        stats = self.stats()
        return all(w['pid'] > 0 and w['id'] > 0 and w['accepting'] == 1
                   for w in stats['workers'])

    def wait_exit(self, timeout=15):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def read_log(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        # anything left in the process group (workers of a stuck master)
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if getattr(self, 'log', None):
            self.log.close()

    def cleanup(self):
        """Stops uWSGI and removes its directory; fails if a sanitizer
        reported anything in any of its processes."""
        self.stop()
        log = self.read_log() if SANITIZER_PRELOAD else ''
        reports = sanitizer_reports(self.dir, log)
        shutil.rmtree(self.dir, ignore_errors=True)
        if reports:
            raise AssertionError('sanitizer reports from uwsgi:\n' + '\n'.join(
                '--- %s\n%s' % (name, text) for name, text in reports.items()) +
                '\n--- end of uwsgi log\n' + log[-4000:])

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()  # __exit__ does not run when __enter__ fails
            raise

    def __exit__(self, *exc):
        self.cleanup()

    def get(self, path='/metrics', headers=None, timeout=10, method='GET'):
        """The endpoint's answer, with this instance's credentials and TLS."""
        return http_get(self.port, path, method=method, timeout=timeout,
                        headers=dict(self.client_headers, **(headers or {})),
                        ssl_context=self.ssl_context)

    def scrape(self, path='/metrics'):
        status, headers, body = self.get(path)
        assert status == 200, (status, body)
        return body

    def scrape_counted(self, n, timeout=10):
        """The parsed scrape once the plugin has counted `n` requests. A
        worker runs the after-request hook just after its response went out,
        so a client that scrapes the moment it has its answer can be a few
        microseconds early; the request families appear with the first
        counted request."""
        def counted():
            parsed = parse_exposition(self.scrape())
            total = sum(v for (name, _), v in parsed[0].items() if name == 'uwsgi_requests_total')
            return parsed if total >= n else None
        return wait_for(counted, timeout=timeout, what='%d requests counted' % n)

    def request(self, path='/', timeout=30):
        try:
            return http_get(self.http_port, path, timeout=timeout)
        except http.client.RemoteDisconnected:
            # uWSGI closes the connection when the app raises
            return 500, {}, ''

    def stats(self):
        return read_stats(self.stats_address or self.stats_path)


def quiet_snapshot(instance, tries=20):
    """Stats JSON and a scrape taken at one quiet moment: stats read before
    and after the scrape agree on every counter that can move."""
    def volatile(stats):
        return json.dumps([stats['workers'], stats.get('caches'), stats['sockets'],
                           stats['listen_queue'], stats['signal_queue']], sort_keys=True)
    for _ in range(tries):
        before = instance.stats()
        body = instance.scrape()
        after = instance.stats()
        if volatile(before) == volatile(after):
            return after, body
        time.sleep(0.2)
    raise AssertionError('uWSGI never became quiet')
