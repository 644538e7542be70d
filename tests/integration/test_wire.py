"""The metrics route on the wire, as Prometheus and other clients ask for
it: gzip per Accept-Encoding (RFC 9110 q-values), the text format whatever
else the client prefers unless it is protobuf (test_protobuf), exact
headers, and HEAD."""
import gzip
import http.client
import unittest

from harness import Uwsgi, parse_exposition

TEXT = 'text/plain; version=0.0.4; charset=utf-8'
# What Prometheus 2.42 sends on every scrape.
PROMETHEUS = {
    'Accept': 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;'
              'version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1',
    'Accept-Encoding': 'gzip',
}
# Series whose values cannot move between two scrapes of a quiet uWSGI.
MOVING = ('uwsgi_exporter_', 'process_', 'uwsgi_prometheus_')


def fetch(port, headers, method='GET'):
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    try:
        conn.request(method, '/metrics', headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def stable(text):
    samples = parse_exposition(text)[0]
    return {k: v for k, v in samples.items() if not k[0].startswith(MOVING)}


class Wire(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.u = Uwsgi(workers=2).start()

    @classmethod
    def tearDownClass(cls):
        cls.u.cleanup()

    def coding(self, accept_encoding):
        headers = {'Accept-Encoding': accept_encoding} if accept_encoding is not None else {}
        status, h, body = fetch(self.u.port, headers)
        self.assertEqual(status, 200)
        self.assertEqual(h['vary'], 'Accept, Accept-Encoding')
        self.assertEqual(int(h['content-length']), len(body))
        return h.get('content-encoding', 'identity'), body

    def test_prometheus_request_gets_gzip_text_of_the_same_scrape(self):
        status, h, body = fetch(self.u.port, PROMETHEUS)
        self.assertEqual(status, 200)
        self.assertEqual(h['content-type'], TEXT)
        self.assertEqual(h['content-encoding'], 'gzip')
        self.assertEqual(h['vary'], 'Accept, Accept-Encoding')
        text = gzip.decompress(body).decode('utf-8')
        _, h2, plain = fetch(self.u.port, {'Accept': PROMETHEUS['Accept']})
        self.assertNotIn('content-encoding', h2)
        self.assertEqual(h2['content-type'], TEXT)
        self.assertGreater(len(plain), 4 * len(body))
        self.assertEqual(stable(text), stable(plain.decode('utf-8')))
        self.assertEqual(parse_exposition(text)[1], parse_exposition(plain.decode('utf-8'))[1])

    def test_accept_encoding_variants(self):
        cases = {
            None: 'identity', '': 'identity', 'gzip': 'gzip', 'GZIP': 'gzip', 'x-gzip': 'gzip',
            'gzip, deflate, br': 'gzip', 'br;q=1.0, gzip;q=0.8, *;q=0.1': 'gzip', '*': 'gzip',
            'gzip;q=0': 'identity', '*;q=0': 'identity', 'gzip;q=0, *': 'identity',
            'identity;q=1, gzip;q=0.5': 'identity', 'deflate, br': 'identity',
            'identity;q=0, gzip;q=0': 'identity', 'gzip;q=0.001': 'gzip',
        }
        for header, want in cases.items():
            with self.subTest(accept_encoding=header):
                coding, body = self.coding(header)
                self.assertEqual(coding, want)
                text = gzip.decompress(body) if coding == 'gzip' else body
                self.assertIn(b'\nuwsgi_up 1\n', text)

    def test_unknown_or_openmetrics_accept_still_gets_text(self):
        for accept in ('application/json', 'application/openmetrics-text;version=1.0.0',
                       'text/html;q=0.9, */*;q=0.1', 'garbage;;;,,', ''):
            with self.subTest(accept=accept):
                status, h, body = fetch(self.u.port, {'Accept': accept})
                self.assertEqual(status, 200)
                self.assertEqual(h['content-type'], TEXT)
                self.assertIn(b'# TYPE uwsgi_cache_hits counter', body)

    def test_head_has_the_headers_of_get_and_no_body(self):
        for headers in (PROMETHEUS, {}):
            with self.subTest(headers=headers):
                status, h, body = fetch(self.u.port, headers, method='HEAD')
                self.assertEqual(status, 200)
                self.assertEqual(body, b'')
                self.assertEqual(h['content-type'], TEXT)
                self.assertEqual(h['vary'], 'Accept, Accept-Encoding')
                self.assertEqual(h.get('content-encoding'), headers and 'gzip' or None)
                _, _, got = fetch(self.u.port, headers)
                # the length GET would send (the scrape counter may add a digit)
                self.assertLess(abs(int(h['content-length']) - len(got)), 16)


if __name__ == '__main__':
    unittest.main()
