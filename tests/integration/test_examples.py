"""The deployment examples: Prometheus rules (promtool check and unit tests),
the demo's Prometheus config, and the Kubernetes manifests (built offline
with `kubectl kustomize`, then checked for what the migration relies on)."""
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


if __name__ == '__main__':
    unittest.main()
