"""HTTPS from --prometheus-web-config's tls_server_config, against a real
uWSGI, with certificates made at test time by the openssl command: curl
and Python's ssl for each TLS version, each client auth type with no
certificate, one from another CA and the right one, certificate rotation
without restart, hostile clients on the TLS port (plain HTTP, garbage,
silent, a handshake sent a byte per second) that must not delay scrapes,
and the real Prometheus scraping with scheme https, tls_config and
basic_auth."""
import http.client
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request
import warnings

from harness import Uwsgi, basic_auth, die_with_test, free_port, parse_exposition, wait_for
from secure import Certificates, bcrypt_hash, openssl, users_yaml, write_file
from test_hostile import Attack, raise_fd_limit

VERSIONS = [('TLS10', 'TLSv1', '1.0'), ('TLS11', 'TLSv1_1', '1.1'), ('TLS12', 'TLSv1_2', '1.2'),
            ('TLS13', 'TLSv1_3', '1.3')]
AUTH_TYPES = ('NoClientCert', 'RequestClientCert', 'RequireAnyClientCert',
              'VerifyClientCertIfGiven', 'RequireAndVerifyClientCert')


def tls_yaml(certs, **extra):
    lines = ['tls_server_config:', '  cert_file: server.pem', '  key_file: server.key']
    lines += ['  %s: %s' % kv for kv in extra.items()]
    return '\n'.join(lines) + '\n'


def client_context(certs, version=None, cert=None):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)  # TLS 1.0/1.1 on purpose
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(certs.ca)
        if version:
            v = getattr(ssl.TLSVersion, version)
            ctx.minimum_version = ctx.maximum_version = v
            if v < ssl.TLSVersion.TLSv1_2:
                ctx.set_ciphers('DEFAULT:@SECLEVEL=0')  # SHA-1 signatures
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def https_get(port, ctx, path='/metrics', headers=None, timeout=10):
    """(status, TLS version, peer certificate DER) or raises."""
    conn = http.client.HTTPSConnection('127.0.0.1', port, context=ctx, timeout=timeout)
    try:
        conn.request('GET', path, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status, conn.sock.version(), conn.sock.getpeercert(binary_form=True)
    finally:
        conn.close()


def outcome(port, ctx):
    try:
        return https_get(port, ctx, '/-/healthy')[0]
    except (ssl.SSLError, OSError) as e:
        return type(e).__name__


def curl(port, certs, *args):
    if not shutil.which('curl'):
        raise unittest.SkipTest('curl is not installed')
    r = subprocess.run(['curl', '-sS', '--cacert', certs.ca, '-o', '/dev/null', '-w',
                        '%{http_code}', *args, 'https://127.0.0.1:%d/-/healthy' % port],
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip(), r.stderr.strip()


class TlsInstance:
    """A uWSGI serving HTTPS from a web.yml next to fresh certificates."""

    def __init__(self, test, key='rsa:2048', users=None, **tls):
        if not shutil.which('openssl'):
            test.skipTest('the openssl command is not installed')
        self.dir = tempfile.mkdtemp(prefix='uwsgi-prom-tls-')
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.certs = Certificates(self.dir, key=key)
        self.path = os.path.join(self.dir, 'web.yml')
        self.users = users or {}
        self.tls = tls
        self.write(**tls)
        headers = basic_auth(*next(iter(self.users.items()))) if self.users else {}
        self.u = Uwsgi(workers=1, extra=[('prometheus-web-config', self.path)],
                       ssl_context=client_context(self.certs, cert=self.client_cert()),
                       client_headers=headers)
        self.u.start()
        test.addCleanup(self.u.cleanup)

    def client_cert(self):
        return self.certs.client if self.tls.get('client_auth_type', 'NoClientCert') != \
            'NoClientCert' else None

    def write(self, **tls):
        text = tls_yaml(self.certs, **tls)
        if self.users:
            text += users_yaml({u: bcrypt_hash(p, cost=4) for u, p in self.users.items()})
        write_file(self.path, text)


class Versions(unittest.TestCase):
    def test_each_version_with_python_and_curl(self):
        i = TlsInstance(self, min_version='TLS10', max_version='TLS13')
        for name, py, curl_name in VERSIONS:
            with self.subTest(version=name):
                status, version, _ = https_get(i.u.port, client_context(i.certs, py))
                self.assertEqual((status, version), (200, py.replace('_', '.')))
                ciphers = ['--ciphers', 'DEFAULT:@SECLEVEL=0'] if name < 'TLS12' else []
                code, err = curl(i.u.port, i.certs, '--tlsv' + curl_name, '--tls-max', curl_name,
                                 *ciphers)
                self.assertEqual(code, '200', err)

    def test_defaults_refuse_old_versions_and_keep_serving(self):
        i = TlsInstance(self)  # TLS12..TLS13, as exporter-toolkit
        for _, py, curl_name in VERSIONS[:2]:
            self.assertEqual(outcome(i.u.port, client_context(i.certs, py)), 'SSLError')
            self.assertNotEqual(curl(i.u.port, i.certs, '--tlsv' + curl_name, '--tls-max',
                                     curl_name, '--ciphers', 'DEFAULT:@SECLEVEL=0')[0], '200')
        for _, py, _ in VERSIONS[2:]:
            self.assertEqual(outcome(i.u.port, client_context(i.certs, py)), 200)
        self.assertIn('endpoint closed a connection (tls_handshake)', i.u.read_log())

    def test_cipher_suites_curves_and_server_preference(self):
        i = TlsInstance(self, max_version='TLS12',
                        cipher_suites='[TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, '
                                      'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]',
                        curve_preferences='[CurveP384]', prefer_server_cipher_suites='true')
        ctx = client_context(i.certs)
        ctx.set_ciphers('ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305')
        conn = http.client.HTTPSConnection('127.0.0.1', i.u.port, context=ctx, timeout=10)
        conn.request('GET', '/-/healthy')
        self.assertEqual(conn.getresponse().status, 200)
        self.assertEqual(conn.sock.cipher()[0], 'ECDHE-RSA-CHACHA20-POLY1305')  # server's order
        conn.close()
        ctx = client_context(i.certs)
        ctx.set_ciphers('ECDHE-RSA-AES128-GCM-SHA256')  # not configured
        self.assertEqual(outcome(i.u.port, ctx), 'SSLError')
        code, _ = curl(i.u.port, i.certs, '--curves', 'X25519')  # P-384 only
        self.assertNotEqual(code, '200')
        self.assertEqual(curl(i.u.port, i.certs, '--curves', 'secp384r1')[0], '200')


class ClientCertificates(unittest.TestCase):
    # Which of (no certificate, another CA's, the right one) get through.
    EXPECTED = {
        'NoClientCert': (True, True, True),
        'RequestClientCert': (True, True, True),
        'RequireAnyClientCert': (False, True, True),
        'VerifyClientCertIfGiven': (True, False, True),
        'RequireAndVerifyClientCert': (False, False, True),
    }

    def test_each_client_auth_type(self):
        i = TlsInstance(self, client_auth_type='RequireAndVerifyClientCert',
                        client_ca_file='ca.pem')
        for auth in AUTH_TYPES:
            # the file is re-read: every policy in one uWSGI, no restart
            extra = {'client_auth_type': auth}
            if auth != 'NoClientCert':
                extra['client_ca_file'] = 'ca.pem'
            i.write(**extra)
            for version in ('TLSv1_2', 'TLSv1_3'):
                got = []
                for cert in (None, i.certs.stranger, i.certs.client):
                    got.append(outcome(i.u.port, client_context(i.certs, version, cert)) == 200)
                with self.subTest(auth=auth, version=version):
                    self.assertEqual(tuple(got), self.EXPECTED[auth])
        self.assertIn('endpoint closed a connection (tls_handshake)', i.u.read_log())
        self.assertRegex(i.u.read_log(), r'\[(peer did not return a certificate|'
                                         r'certificate verify failed)')


class IntermediateCa(unittest.TestCase):
    def test_client_ca_file_with_only_an_intermediate_trusts_its_clients(self):
        # As Go: each certificate of client_ca_file is a trust anchor, even
        # one that is not self-signed; the client sends its leaf alone.
        i = TlsInstance(self, client_auth_type='NoClientCert')
        ext = i.certs.path('inter.ext')
        write_file(ext, 'basicConstraints=critical,CA:TRUE\n'
                        'keyUsage=critical,keyCertSign,cRLSign\n')
        openssl('req', *i.certs._key_args(), '-nodes', '-subj', '/CN=test inter',
                '-keyout', i.certs.path('inter.key'), '-out', i.certs.path('inter.csr'))
        openssl('x509', '-req', '-in', i.certs.path('inter.csr'), '-CA', i.certs.ca,
                '-CAkey', i.certs.path('ca.key'), '-CAcreateserial', '-days', '2',
                '-extfile', ext, '-out', i.certs.path('inter.pem'))
        leaf = i.certs.make_leaf('inter-client', 'inter', 'clientAuth')
        i.write(client_auth_type='RequireAndVerifyClientCert', client_ca_file='inter.pem')
        for version in ('TLSv1_2', 'TLSv1_3'):
            with self.subTest(version=version):
                self.assertEqual(outcome(i.u.port, client_context(i.certs, version, leaf)), 200)
                # signed by the root only, which the file does not hold
                self.assertNotEqual(
                    outcome(i.u.port, client_context(i.certs, version, i.certs.client)), 200)


class Rotation(unittest.TestCase):
    def test_certificate_and_key_rotate_without_restart(self):
        i = TlsInstance(self)
        _, _, before = https_get(i.u.port, client_context(i.certs))
        # a new key and certificate, written in place one after the other
        cert, key = i.certs.make_leaf('server2', 'ca', 'serverAuth',
                                      'subjectAltName=IP:127.0.0.1,DNS:localhost')
        shutil.copy(key, i.certs.path('server.key'))
        shutil.copy(cert, i.certs.path('server.pem'))
        _, _, after = https_get(i.u.port, client_context(i.certs))
        self.assertNotEqual(before, after)
        with open(cert) as f:
            self.assertEqual(ssl.DER_cert_to_PEM_cert(after), f.read())
        self.assertEqual(i.u.get()[0], 200)

    def test_broken_key_keeps_the_old_context_and_answers_500(self):
        i = TlsInstance(self)
        key = i.certs.path('server.key')
        with open(key) as f:
            good = f.read()
        write_file(key, 'not a key\n')
        status, _, _ = https_get(i.u.port, client_context(i.certs))  # the old context serves
        self.assertEqual(status, 500)
        self.assertIn("tls_server_config.key_file '%s': no PEM private key in it" % key,
                      i.u.read_log())
        write_file(key, good)
        self.assertEqual(https_get(i.u.port, client_context(i.certs))[0], 200)


class HostileOnTls(unittest.TestCase):
    @staticmethod
    def closed_reasons(i):
        return {dict(ls)['reason']: v for (n, ls), v in parse_exposition(i.u.scrape())[0].items()
                if n == 'uwsgi_prometheus_http_connections_closed_total'}

    def test_hostile_clients_do_not_delay_scrapes(self):
        if raise_fd_limit(4096) < 1200:
            self.skipTest('cannot open enough file descriptors')
        i = TlsInstance(self, users={'prometheus': 'pw'})
        ctx = client_context(i.certs)
        hello = client_hello(ctx)
        stop = threading.Event()
        slow = socket.create_connection(('127.0.0.1', i.u.port))
        trickle = threading.Thread(target=send_slowly, args=(slow, hello, stop), daemon=True)
        trickle.start()
        attack = Attack(i.u.port, n=1000)  # silent, slowloris, garbage, plain HTTP half-closed
        attack.start()
        try:
            times = []
            for k in range(30):
                t0 = time.perf_counter()
                try:
                    status = i.u.get()[0]
                except OSError as e:  # say which close reasons the endpoint counted
                    attack.finish()
                    self.fail('scrape %d under attack failed: %r; closed so far: %s; log:\n%s' % (
                        k, e, self.closed_reasons(i), i.u.read_log()[-3000:]))
                self.assertEqual(status, 200)
                times.append(time.perf_counter() - t0)
                time.sleep(0.05)
        finally:
            attack.finish()
            stop.set()
            trickle.join(5)
            slow.close()
        print('\nhostile on TLS: scrape (new TLS connection each) median %.1f ms, max %.1f ms'
              % (statistics.median(times) * 1e3, max(times) * 1e3))
        self.assertLess(statistics.median(times), 0.1)
        self.assertLess(sorted(times)[-2], 0.2)
        closed = self.closed_reasons(i)
        print('closed by reason: %s' % {k: int(v) for k, v in closed.items() if v})
        for reason in ('evicted', 'tls_handshake', 'http_to_https'):
            self.assertGreater(closed[reason], 0, reason)

    def test_each_hostile_kind_is_closed_for_its_reason(self):
        i = TlsInstance(self)
        hello = client_hello(client_context(i.certs))
        socks = [socket.create_connection(('127.0.0.1', i.u.port)) for _ in range(4)]
        silent, slow, garbage, plain = socks
        garbage.sendall(os.urandom(600))
        plain.sendall(b'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n')
        self.assertEqual(plain.recv(4096), b'HTTP/1.0 400 Bad Request\r\n\r\n'
                                           b'Client sent an HTTP request to an HTTPS server.\n')
        stop = threading.Event()
        t = threading.Thread(target=send_slowly, args=(slow, hello, stop), daemon=True)
        t.start()
        try:
            def closed():
                body = i.u.scrape()
                c = {dict(ls)['reason']: v for (n, ls), v in parse_exposition(body)[0].items()
                     if n == 'uwsgi_prometheus_http_connections_closed_total'}
                return c if c['request_timeout'] >= 2 else None
            reasons = wait_for(closed, timeout=30, interval=0.5, what='request timeouts')
        finally:
            stop.set()
            t.join(5)
            for s in socks:
                s.close()
        self.assertEqual(reasons['request_timeout'], 2)  # silent, and the byte-a-second hello
        self.assertEqual(reasons['tls_handshake'], 1)
        self.assertEqual(reasons['http_to_https'], 1)


def client_hello(ctx):
    """The bytes of a real ClientHello from `ctx`."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname='localhost')
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def send_slowly(sock, data, stop):
    for byte in data:
        if stop.wait(1.0):
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return


class RealPrometheus(unittest.TestCase):
    def test_prometheus_scrapes_https_with_client_cert_and_basic_auth(self):
        if not shutil.which('prometheus'):
            self.skipTest('prometheus is not installed')
        i = TlsInstance(self, users={'prometheus': 'scrape-pw'},
                        client_auth_type='RequireAndVerifyClientCert', client_ca_file='ca.pem')
        port = free_port()
        config = os.path.join(i.dir, 'prometheus.yml')
        job = ('  - job_name: %s\n    scheme: https\n    scrape_interval: 1s\n'
               '    tls_config: {ca_file: %s, cert_file: %s, key_file: %s}\n'
               '    basic_auth: {username: prometheus, password: %s}\n'
               '    static_configs: [{targets: ["127.0.0.1:%d"]}]\n')
        with open(config, 'w') as f:
            f.write('scrape_configs:\n')
            f.write(job % ('good', i.certs.ca, i.certs.client[0], i.certs.client[1], 'scrape-pw',
                           i.u.port))
            f.write(job % ('bad', i.certs.ca, i.certs.client[0], i.certs.client[1], 'wrong',
                           i.u.port))
        log = open(os.path.join(i.dir, 'prometheus.log'), 'wb')
        self.addCleanup(log.close)
        proc = subprocess.Popen(['prometheus', '--config.file', config, '--storage.tsdb.path',
                                 os.path.join(i.dir, 'data'), '--web.listen-address',
                                 '127.0.0.1:%d' % port], stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_test)
        self.addCleanup(lambda: (proc.kill(), proc.wait()))

        def targets():
            with urllib.request.urlopen('http://127.0.0.1:%d/api/v1/targets' % port,
                                        timeout=5) as r:
                found = {t['labels']['job']: t for t in
                         json.load(r)['data']['activeTargets']}
            if all(found.get(j, {}).get('health') in ('up', 'down') for j in ('good', 'bad')):
                return found
            return None
        found = wait_for(targets, timeout=60, interval=0.5, what='Prometheus to scrape')
        self.assertEqual(found['good']['health'], 'up', found['good'].get('lastError'))
        self.assertEqual(found['bad']['health'], 'down')
        self.assertIn('401 Unauthorized', found['bad']['lastError'])
        with urllib.request.urlopen('http://127.0.0.1:%d/api/v1/query?query=uwsgi_up' % port,
                                    timeout=5) as r:
            result = json.load(r)['data']['result']
        self.assertEqual([(s['metric']['job'], s['value'][1]) for s in result], [('good', '1')])


if __name__ == '__main__':
    unittest.main()
