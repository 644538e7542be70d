"""--prometheus-web-config with basic_auth_users and http_server_config
headers, against a real uWSGI: right and wrong passwords, unknown users,
every route behind the same authentication, the headers on every answer,
changes to the file applied without a restart, a file broken at run time
(500, logged once), a bad file at start-up (uWSGI stops), and no busy loop
when a client resets while its password is being checked."""
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import unittest

from harness import UWSGI, Uwsgi, basic_auth, http_get, parse_exposition, plugin_path, wait_for
from secure import bcrypt_hash, users_yaml, write_file

HEADERS = {
    'Strict-Transport-Security': 'max-age=31536000',
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'deny',
    'X-XSS-Protection': '1; mode=block',
    'Content-Security-Policy': "default-src 'none'",
}


def headers_yaml(headers):
    return 'http_server_config:\n  http2: true\n  headers:\n' + ''.join(
        '    %s: "%s"\n' % (k, v) for k, v in headers.items())


def counter(body, name, **labels):
    samples = parse_exposition(body)[0]
    return samples[(name, frozenset(labels.items()))]


def prometheus_lines(log):
    return [line for line in log.splitlines() if line.startswith('[prometheus]')]


class Instance:
    """A uWSGI whose endpoint uses a web configuration file in its own
    directory; `users` maps user -> password."""

    def __init__(self, users, extra_yaml='', client=('prometheus', None)):
        self.dir = tempfile.mkdtemp(prefix='uwsgi-prom-auth-')
        self.path = os.path.join(self.dir, 'web.yml')
        self.hashes = {u: bcrypt_hash(p, cost=4) for u, p in users.items()}
        write_file(self.path, users_yaml(self.hashes) + extra_yaml)
        user = client[0]
        self.u = Uwsgi(workers=1, extra=[('prometheus-web-config', self.path)],
                       client_headers=basic_auth(user, client[1] or users[user]))

    def __enter__(self):
        self.u.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            self.u.__exit__(*exc)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class BasicAuth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix='uwsgi-prom-auth-')
        cls.path = os.path.join(cls.dir, 'web.yml')
        users = {'prometheus': bcrypt_hash('s3cret'),                 # $2y$, cost 10
                 'bee': bcrypt_hash('b-pass', cost=5, prefix='$2b$'),
                 'ada': bcrypt_hash('a-pass', cost=5, prefix='$2a$')}
        write_file(cls.path, users_yaml(users) + headers_yaml(HEADERS))
        cls.u = Uwsgi(workers=1, extra=[('prometheus-web-config', cls.path)],
                      client_headers=basic_auth('prometheus', 's3cret')).start()

    @classmethod
    def tearDownClass(cls):
        cls.u.cleanup()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def anonymous(self, path='/metrics', headers=None, method='GET'):
        return http_get(self.u.port, path, headers=headers or {}, method=method)

    def assert_unauthorized(self, answer):
        status, headers, body = answer
        self.assertEqual(status, 401)
        self.assertEqual(headers['WWW-Authenticate'], 'Basic')
        self.assertEqual(headers['Content-Type'], 'text/plain; charset=utf-8')
        self.assertEqual(body, 'Unauthorized\n')
        for name, value in HEADERS.items():
            self.assertEqual(headers.get(name), value, name)

    def test_right_password_opens_every_route(self):
        for path, want in (('/metrics', 200), ('/-/healthy', 200), ('/', 200), ('/nope', 404)):
            with self.subTest(path=path):
                status, _, body = self.u.get(path)
                self.assertEqual(status, want, body)
        for user, password in (('bee', 'b-pass'), ('ada', 'a-pass')):  # $2b$ and $2a$ hashes
            with self.subTest(user=user):
                self.assertEqual(self.anonymous(headers=basic_auth(user, password))[0], 200)

    def test_every_route_is_closed_without_the_right_password(self):
        for path in ('/metrics', '/-/healthy', '/', '/nope'):
            for headers in ({}, basic_auth('prometheus', 'wrong'), basic_auth('nobody', 's3cret'),
                            basic_auth('bee', 's3cret'), {'Authorization': 'Bearer s3cret'},
                            {'Authorization': 'Basic !!!not-base64'},
                            {'Authorization': 'Basic ' + 'cHJvbWV0aGV1cw=='},  # no colon
                            basic_auth('prometheus', 's3cret\x00')):
                with self.subTest(path=path, headers=headers):
                    self.assert_unauthorized(self.anonymous(path, headers))
        self.assert_unauthorized(self.anonymous(method='HEAD')[:2] + ('Unauthorized\n',))

    def test_scheme_is_case_insensitive_as_in_go(self):
        token = basic_auth('prometheus', 's3cret')['Authorization'].split(' ', 1)[1]
        self.assertEqual(self.anonymous(headers={'Authorization': 'bAsIc ' + token})[0], 200)

    def test_headers_on_every_response(self):
        answers = {'200': self.u.get('/metrics'), '404': self.u.get('/nope'),
                   '401': self.anonymous()}
        with socket.create_connection(('127.0.0.1', self.u.port), timeout=10) as s:
            s.sendall(b'BREW /metrics HTTP/1.1\r\nHost: x\r\n\r\n')
            raw = s.recv(65536).decode()
        head = raw.split('\r\n\r\n')[0].split('\r\n')
        answers['405'] = (int(head[0].split()[1]), dict(line.split(': ', 1) for line in head[1:]),
                          '')
        for name, (status, headers, _) in answers.items():
            with self.subTest(answer=name):
                self.assertEqual(str(status), name)
                for header, value in HEADERS.items():
                    self.assertEqual(headers.get(header), value, header)

    def test_unknown_users_cost_a_check_as_known_ones(self):
        """Unknown users are checked against a fixed hash: a cache miss
        runs bcrypt whether or not the user exists."""
        before = counter(self.u.scrape(), 'uwsgi_prometheus_http_password_checks_total')
        for headers in (basic_auth('nobody-%d' % time.time_ns(), 'x'),
                        basic_auth('prometheus', 'wrong-%d' % time.time_ns())):
            self.assert_unauthorized(self.anonymous(headers=headers))
        body = self.u.scrape()
        self.assertEqual(counter(body, 'uwsgi_prometheus_http_password_checks_total'), before + 2)
        self.assertGreater(counter(body, 'uwsgi_prometheus_http_requests_refused_total',
                                   reason='wrong_credentials'), 0)
        self.assertGreater(counter(body, 'uwsgi_prometheus_http_requests_refused_total',
                                   reason='no_credentials'), 0)

    def test_cached_results_answer_without_a_check(self):
        self.u.scrape()
        before = counter(self.u.scrape(), 'uwsgi_prometheus_http_password_checks_total')
        for _ in range(5):
            self.u.scrape()
            self.assert_unauthorized(self.anonymous(headers=basic_auth('prometheus', 'wrong')))
        after = counter(self.u.scrape(), 'uwsgi_prometheus_http_password_checks_total')
        self.assertLessEqual(after - before, 1)  # 'wrong' may not have been cached yet

    def test_start_up_line_says_where_and_how(self):
        lines = [l for l in prometheus_lines(self.u.read_log()) if 'serving metrics on' in l]
        self.assertEqual(lines, [
            '[prometheus] serving metrics on 127.0.0.1:%d/metrics: plain HTTP, basic auth '
            '(3 users), web config %s; stats_uri="unix://%s"' % (self.u.port, self.path,
                                                                 self.u.stats_path)])


class FileChanges(unittest.TestCase):
    def test_password_change_applies_without_restart(self):
        with Instance({'prometheus': 'old'}) as i:
            self.assertEqual(i.u.get()[0], 200)
            # same length, same inode, within the same second: still seen
            write_file(i.path, users_yaml({'prometheus': bcrypt_hash('new', cost=4)}))
            self.assertEqual(i.u.get()[0], 401)
            i.u.client_headers = basic_auth('prometheus', 'new')
            self.assertEqual(i.u.get()[0], 200)

    def test_replaced_file_and_new_headers_apply(self):
        with Instance({'prometheus': 'pw'}) as i:
            self.assertNotIn('X-Frame-Options', i.u.get()[1])
            new = i.path + '.new'
            write_file(new, users_yaml(i.hashes) + headers_yaml({'X-Frame-Options': 'sameorigin'}))
            os.rename(new, i.path)  # a new inode, as configuration tools write
            self.assertEqual(i.u.get()[1].get('X-Frame-Options'), 'sameorigin')

    def test_adding_users_turns_auth_on_and_removing_them_off(self):
        with Instance({'prometheus': 'pw'}) as i:
            write_file(i.path, '')
            self.assertEqual(http_get(i.u.port)[0], 200)
            write_file(i.path, users_yaml(i.hashes))
            self.assertEqual(http_get(i.u.port)[0], 401)
            self.assertEqual(i.u.get()[0], 200)

    def test_broken_file_answers_500_logged_once_until_fixed(self):
        with Instance({'prometheus': 'pw'}) as i:
            with open(i.path) as f:
                good = f.read()
            breakages = [
                ('basic_auth_users:\n  prometheus: plaintext\n',
                 'basic_auth_users.prometheus: not a bcrypt hash'),
                ('basic_auth_users: [oops\n', 'not valid YAML'),
                (good + 'tls_server_config:\n  cert_file: a.pem\n  key_file: a.key\n',
                 'tls_server_config now turns TLS on, but the endpoint serves plain HTTP'),
            ]
            for text, error in breakages:
                with self.subTest(error=error):
                    write_file(i.path, text)
                    for _ in range(3):
                        status, headers, body = i.u.get()
                        self.assertEqual((status, body), (500, 'Internal Server Error\n'))
                        self.assertEqual(http_get(i.u.port, '/-/healthy')[0], 500)
                    logged = [l for l in prometheus_lines(i.u.read_log()) if error in l]
                    self.assertEqual(len(logged), 1, i.u.read_log()[-3000:])
                    self.assertIn('--prometheus-web-config %s: ' % i.path, logged[0])
                    self.assertIn('every request is answered 500 until the file is fixed',
                                  logged[0])
            os.unlink(i.path)
            self.assertEqual(i.u.get()[0], 500)
            write_file(i.path, good)
            self.assertEqual(i.u.get()[0], 200)
            self.assertIn('[prometheus] --prometheus-web-config %s: fixed, in use again' % i.path,
                          prometheus_lines(i.u.read_log()))
            body = i.u.scrape()
            self.assertGreaterEqual(counter(body, 'uwsgi_prometheus_http_requests_refused_total',
                                            reason='config_error'), 10)


def thread_cpu_ns(pid, name):
    """CPU time so far of the thread `name` of process `pid` (schedstat)."""
    for tid in os.listdir('/proc/%d/task' % pid):
        try:
            with open('/proc/%d/task/%s/comm' % (pid, tid)) as f:
                if f.read().strip() != name:
                    continue
            with open('/proc/%d/task/%s/schedstat' % (pid, tid)) as f:
                return int(f.read().split()[0])
        except OSError:
            continue
    raise unittest.SkipTest('no thread %s (or no schedstat)' % name)


class ClientGoneWhilePaused(unittest.TestCase):
    def test_a_reset_during_a_slow_check_does_not_spin_the_loop(self):
        # The request pauses for a slow check; the client fills the input
        # buffer behind it and resets. Epoll reports the hang-up even with
        # no events asked for: the loop must close, not spin.
        slow = bcrypt_hash('slow-pass', cost=14)
        with Instance({'prometheus': 's3cret'}) as i:
            write_file(i.path, users_yaml(dict(i.hashes, slow=slow)))
            i.u.get('/-/healthy')  # the file is read again
            master = i.u.proc.pid
            s = socket.create_connection(('127.0.0.1', i.u.port))
            auth = basic_auth('slow', 'slow-pass')['Authorization']
            s.sendall(('GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n'
                       % auth).encode() + b'x' * 8300)
            time.sleep(0.2)  # read and paused
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            s.close()  # RST
            before = thread_cpu_ns(master, 'prometheus-http')
            time.sleep(0.5)  # the check (cost 14) is still running
            spent = thread_cpu_ns(master, 'prometheus-http') - before
            self.assertLess(spent, 50 * 1000 * 1000, 'server thread busy while paused')
            self.assertEqual(i.u.get('/-/healthy')[0], 200)


class AtStartUp(unittest.TestCase):
    def start_fails(self, text, path=None):
        d = tempfile.mkdtemp(prefix='uwsgi-prom-auth-')
        try:
            path = path or os.path.join(d, 'web.yml')
            if text is not None:
                write_file(path, text)
            u = Uwsgi(workers=1, extra=[('prometheus-web-config', path)])
            try:
                u.start(wait=False)
                status = u.wait_exit(30)
                log = u.read_log()
            finally:
                u.cleanup()
            self.assertNotEqual(status, 0)
            return path, [l for l in prometheus_lines(log) if 'web-config' in l]
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_bad_file_stops_uwsgi_naming_key_and_reason(self):
        cases = [
            ('basic_auth_users:\n  alice: secret\n',
             "basic_auth_users.alice: not a bcrypt hash: expected $2y$, $2b$ or $2a$, a two-digit "
             "cost and 53 characters of salt and hash (htpasswd -nBC 10 USER makes one) (line 2)"),
            ('http_server_config:\n  headers:\n    Server: x\n',
             'http_server_config.headers.Server: this header cannot be set'),
            ('tls_server_config:\n  cert_file: c.pem\n',
             'tls_server_config: missing key_file (line 2)'),
            ('basic_auth: {}\n', 'basic_auth: unknown key'),
        ]
        for text, reason in cases:
            with self.subTest(reason=reason):
                path, lines = self.start_fails(text)
                self.assertEqual(len(lines), 1, lines)
                self.assertTrue(lines[0].startswith(
                    "[prometheus] --prometheus-web-config '%s': %s" % (path, reason)), lines[0])

    def test_missing_file_stops_uwsgi(self):
        path, lines = self.start_fails(None, '/nonexistent/web.yml')
        self.assertEqual(lines, ["[prometheus] --prometheus-web-config '/nonexistent/web.yml': "
                                 "cannot open: no such file or directory"])


if __name__ == '__main__':
    unittest.main()
