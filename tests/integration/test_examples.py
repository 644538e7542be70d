"""The deployment examples: Prometheus rules (promtool check and unit tests),
the demo's Prometheus config, the Kubernetes manifests (built offline
with `kubectl kustomize`, then checked for what the migration relies on), and
the configurations of other collectors (Google Cloud Managed Service for
Prometheus, the OpenTelemetry Collector), checked against the Deployment."""
import re
import base64
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import HERE

ROOT = os.path.abspath(os.path.join(HERE, '..', '..'))
EXAMPLES = os.path.join(ROOT, 'examples')
SYSTEM_PYTHON = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else 'python3'


def run(argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)


def yaml_documents(text):
    """YAML -> list of objects, through Debian's python3-yaml."""
    res = run([SYSTEM_PYTHON, '-c', 'import sys, json, yaml; '
               'print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))'], input=text)
    if res.returncode != 0:
        raise unittest.SkipTest('python3-yaml is needed: ' + res.stderr[-200:])
    return json.loads(res.stdout)


@unittest.skipUnless(shutil.which('promtool'), 'promtool (Debian package prometheus) is missing')
class PrometheusExamples(unittest.TestCase):
    def test_rules_check_and_unit_tests(self):
        d = os.path.join(EXAMPLES, 'prometheus')
        res = run(['promtool', 'check', 'rules', 'rules.yml'], cwd=d)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        res = run(['promtool', 'test', 'rules', 'rules_test.yml'], cwd=d)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn('SUCCESS', res.stdout)

    def test_demo_prometheus_config(self):
        with open(os.path.join(EXAMPLES, 'django', 'prometheus.yml.in')) as f:
            text = f.read()
        for k, v in (('SCRAPE_INTERVAL', '5s'), ('METRICS_PORT', '9117'),
                     ('NGINX_EXPORTER_PORT', '9113')):
            text = text.replace('@%s@' % k, v)
        with tempfile.NamedTemporaryFile('w', suffix='.yml') as f:
            f.write(text)
            f.flush()
            res = run(['promtool', 'check', 'config', f.name])
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)


def read_yaml(*path):
    with open(os.path.join(EXAMPLES, *path)) as f:
        return yaml_documents(f.read())


def demo_pod():
    """The pod template of examples/kubernetes/deployment.yaml and its
    container ports by name."""
    (deployment,) = read_yaml('kubernetes', 'deployment.yaml')
    pod = deployment['spec']['template']
    (container,) = pod['spec']['containers']
    return pod, {p['name']: p['containerPort'] for p in container['ports']}


class OtherCollectors(unittest.TestCase):
    """examples/kubernetes/podmonitoring.yaml and
    examples/opentelemetry/collector.yaml scrape what the Deployment serves:
    the plugin's port (named metrics, 9117) and path."""

    def test_podmonitoring_selects_the_pods_on_the_metrics_port(self):
        (monitor,) = read_yaml('kubernetes', 'podmonitoring.yaml')
        self.assertEqual((monitor['apiVersion'], monitor['kind']),
                         ('monitoring.googleapis.com/v1', 'PodMonitoring'))
        pod, ports = demo_pod()
        selector = monitor['spec']['selector']['matchLabels']
        self.assertTrue(selector)
        self.assertLessEqual(selector.items(), pod['metadata']['labels'].items())
        (endpoint,) = monitor['spec']['endpoints']
        self.assertEqual(ports[endpoint['port']], 9117)
        self.assertEqual(endpoint['path'], '/metrics')
        self.assertRegex(endpoint['interval'], r'^[0-9]+[smh]$')

    def collector(self):
        with open(os.path.join(EXAMPLES, 'opentelemetry', 'collector.yaml')) as f:
            text = f.read()
        (config,) = yaml_documents(text)
        return text, config

    def test_collector_pipeline_takes_the_prometheus_receiver(self):
        _, config = self.collector()
        metrics = config['service']['pipelines']['metrics']
        self.assertEqual(metrics['receivers'], ['prometheus'])
        for kind in ('receivers', 'processors', 'exporters'):
            for name in metrics.get(kind, []):
                self.assertIn(name, config[kind])

    def test_collector_scrape_job_keeps_the_metrics_port(self):
        _, config = self.collector()
        (job,) = config['receivers']['prometheus']['config']['scrape_configs']
        self.assertEqual(job['metrics_path'], '/metrics')
        self.assertEqual(job['kubernetes_sd_configs'], [{'role': 'pod'}])
        keep = [r for r in job['relabel_configs'] if r.get('action') == 'keep']
        self.assertIn({'source_labels': ['__meta_kubernetes_pod_container_port_name'],
                       'action': 'keep', 'regex': 'metrics'}, keep)
        _, ports = demo_pod()
        self.assertIn('metrics', ports)

    def test_collector_dollars_are_escaped(self):
        # The Collector expands ${...} and $$ in its values before the
        # receiver sees them: a lone $ (a relabel replacement such as $1)
        # would be taken for a variable.
        _, config = self.collector()

        def strings(node):
            if isinstance(node, dict):
                node = list(node.values())
            if isinstance(node, list):
                for item in node:
                    yield from strings(item)
            elif isinstance(node, str):
                yield node
        for value in strings(config):
            self.assertNotRegex(value.replace('$$', ''), r'\$(?!\{env:)', value)

    @unittest.skipUnless(shutil.which('promtool'), 'promtool (Debian package prometheus) is missing')
    def test_collector_scrape_config_passes_promtool(self):
        # Debian's promtool has no Kubernetes discovery: the same job with a
        # static target, $$ unescaped as the Collector does.
        text, _ = self.collector()
        (config,) = yaml_documents(text.replace('$$', '$'))
        (job,) = config['receivers']['prometheus']['config']['scrape_configs']
        del job['kubernetes_sd_configs']
        job['static_configs'] = [{'targets': ['127.0.0.1:9117']}]
        with tempfile.NamedTemporaryFile('w', suffix='.yml') as f:
            json.dump({'scrape_configs': [job]}, f)
            f.flush()
            res = run(['promtool', 'check', 'config', f.name])
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)


@unittest.skipUnless(shutil.which('kubectl'), 'kubectl (Debian package kubernetes-client) is missing')
class KubernetesExamples(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        d = os.path.join(EXAMPLES, 'kubernetes')
        res = run(['kubectl', 'kustomize', d])
        assert res.returncode == 0, res.stderr
        cls.objects = {o['kind']: o for o in yaml_documents(res.stdout)}
        with open(os.path.join(d, 'servicemonitor.yaml')) as f:
            cls.monitor = yaml_documents(f.read())[0]
        with open(os.path.join(d, 'prometheus-scrape-config.yaml')) as f:
            cls.scrape = yaml_documents(f.read())[0]

    def test_one_container_no_sidecar_probes_on_the_plugin(self):
        pod = self.objects['Deployment']['spec']['template']
        containers = pod['spec']['containers']
        self.assertEqual(len(containers), 1)
        ports = {p['name']: p['containerPort'] for p in containers[0]['ports']}
        self.assertEqual(ports, {'http': 8000, 'metrics': 9117})
        for probe in ('livenessProbe', 'readinessProbe'):
            self.assertEqual(containers[0][probe]['httpGet'], {'path': '/-/healthy', 'port': 'metrics'})
        self.assertEqual(pod['metadata']['annotations'],
                         {'prometheus.io/scrape': 'true', 'prometheus.io/port': '9117',
                          'prometheus.io/path': '/metrics'})
        self.assertTrue(pod['spec']['securityContext']['runAsNonRoot'])

    def test_service_and_servicemonitor_use_the_metrics_port(self):
        ports = {p['name']: p for p in self.objects['Service']['spec']['ports']}
        self.assertEqual(ports['metrics']['targetPort'], 'metrics')
        self.assertEqual(self.monitor['kind'], 'ServiceMonitor')
        self.assertEqual(self.monitor['spec']['endpoints'][0]['port'], 'metrics')
        self.assertEqual(self.monitor['spec']['selector']['matchLabels'],
                         self.objects['Service']['metadata']['labels'])

    def test_scrape_config_keeps_the_port_named_metrics(self):
        relabel = self.scrape['scrape_configs'][0]['relabel_configs']
        keep = [r for r in relabel if r.get('action') == 'keep']
        self.assertIn({'source_labels': ['__meta_kubernetes_pod_container_port_name'],
                       'action': 'keep', 'regex': 'metrics'}, keep)


@unittest.skipUnless(shutil.which('kubectl'), 'kubectl (Debian package kubernetes-client) is missing')
class SecureKubernetesExample(unittest.TestCase):
    """examples/kubernetes-secure: HTTPS and basic auth from a Secret, and
    probes that authenticate; its web.yml served by a real uWSGI."""

    @classmethod
    def setUpClass(cls):
        res = run(['kubectl', 'kustomize', os.path.join(EXAMPLES, 'kubernetes-secure')])
        assert res.returncode == 0, res.stderr
        cls.objects = {(o['kind'], o['metadata']['name']): o for o in yaml_documents(res.stdout)}
        cls.pod = cls.objects[('Deployment', 'django-demo')]['spec']['template']
        cls.container = cls.pod['spec']['containers'][0]
        secret = cls.objects[('Secret', 'uwsgi-web-config')]
        cls.web_yml = base64.b64decode(secret['data']['web.yml']).decode()

    def probe_credentials(self):
        found = set()
        for probe in ('livenessProbe', 'readinessProbe'):
            get = self.container[probe]['httpGet']
            self.assertEqual((get['path'], get['port'], get['scheme']),
                             ('/-/healthy', 'metrics', 'HTTPS'))
            (header,) = get['httpHeaders']
            self.assertEqual(header['name'], 'Authorization')
            found.add(base64.b64decode(header['value'].split(' ', 1)[1]).decode())
        self.assertEqual(len(found), 1)
        return found.pop().split(':', 1)

    def test_deployment_mounts_the_config_and_probes_authenticate(self):
        env = {e['name']: e['value'] for e in self.container['env']}
        self.assertEqual(env['UWSGI_PROMETHEUS_WEB_CONFIG'], '/etc/uwsgi/web/web.yml')
        mounts = {m['name']: m['mountPath'] for m in self.container['volumeMounts']}
        self.assertEqual(mounts['web-config'], '/etc/uwsgi/web')
        self.assertEqual(mounts['metrics-tls'], '/etc/uwsgi/tls')
        self.assertEqual(self.pod['metadata']['annotations']['prometheus.io/scheme'], 'https')
        self.assertEqual(self.probe_credentials()[0], 'probe')

    def test_its_web_config_is_served_and_lets_the_probe_in(self):
        from harness import Uwsgi, basic_auth  # noqa: the plugin is needed from here on
        from secure import Certificates
        from test_tls import client_context
        d = tempfile.mkdtemp(prefix='uwsgi-prom-k8s-')
        self.addCleanup(shutil.rmtree, d, True)
        certs = Certificates(d)
        shutil.copy(certs.server[0], os.path.join(d, 'tls.crt'))
        shutil.copy(certs.server[1], os.path.join(d, 'tls.key'))
        path = os.path.join(d, 'web.yml')
        with open(path, 'w') as f:
            f.write(self.web_yml.replace('/etc/uwsgi/tls/', d + '/'))
        user, password = self.probe_credentials()
        with Uwsgi(workers=1, extra=[('prometheus-web-config', path)],
                   client_headers=basic_auth(user, password),
                   ssl_context=client_context(certs)) as u:
            status, headers, _ = u.get('/-/healthy')
            self.assertEqual(status, 200)
            self.assertEqual(headers['Strict-Transport-Security'], 'max-age=31536000')
            self.assertEqual(u.get(headers=basic_auth('prometheus', 'change-me-scrape'))[0], 200)
            self.assertEqual(u.get(headers=basic_auth('probe', 'wrong'))[0], 401)

    def test_servicemonitor_scrapes_https_with_basic_auth(self):
        with open(os.path.join(EXAMPLES, 'kubernetes-secure', 'servicemonitor.yaml')) as f:
            endpoint = yaml_documents(f.read())[0]['spec']['endpoints'][0]
        self.assertEqual(endpoint['scheme'], 'https')
        self.assertEqual(endpoint['port'], 'metrics')
        self.assertIn('basicAuth', endpoint)
        self.assertIn('ca', endpoint['tlsConfig'])


if __name__ == '__main__':
    unittest.main()
