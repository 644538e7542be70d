"""Helpers for tests of the web configuration file: bcrypt hashes (with
libxcrypt, through Python's crypt module), the file itself, and
certificates made at test time with the openssl command."""
import os
import subprocess
import warnings

with warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)  # crypt: deprecated in 3.11, fine here
    import crypt


def bcrypt_hash(password, cost=10, prefix='$2y$'):
    """A bcrypt hash of `password` ($2y$ as htpasswd writes, or $2b$/$2a$)."""
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2 ** cost))
    assert hashed.startswith('$2b$'), hashed
    return prefix + hashed[4:]


def write_file(path, text):
    """Rewrites `path` in place (same inode), as an editor would."""
    with open(path, 'w') as f:
        f.write(text)


def users_yaml(users):
    return 'basic_auth_users:\n' + ''.join(
        '  %s: %s\n' % (user, hashed) for user, hashed in users.items())


def openssl(*args, cwd=None):
    subprocess.run(('openssl',) + args, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


class Certificates:
    """A CA, a server certificate for 127.0.0.1/localhost, a client
    certificate signed by the CA, and a client certificate signed by
    another CA, as PEM files in `directory`."""

    def __init__(self, directory, key='rsa:2048'):
        self.dir = directory
        self.key = key
        self.ca = self.make_ca('ca')
        self.other_ca = self.make_ca('other-ca')
        self.server = self.make_leaf('server', 'ca', 'serverAuth',
                                     'subjectAltName=IP:127.0.0.1,DNS:localhost')
        self.client = self.make_leaf('client', 'ca', 'clientAuth')
        self.stranger = self.make_leaf('stranger', 'other-ca', 'clientAuth')

    def path(self, name):
        return os.path.join(self.dir, name)

    def _key_args(self):
        if self.key.startswith('ec:'):
            return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:' + self.key[3:]]
        return ['-newkey', self.key]

    def make_ca(self, name):
        openssl('req', '-x509', *self._key_args(), '-nodes', '-days', '2',
                '-subj', '/CN=test %s' % name, '-keyout', self.path(name + '.key'),
                '-out', self.path(name + '.pem'),
                '-addext', 'basicConstraints=critical,CA:TRUE',
                '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
        return self.path(name + '.pem')

    def make_leaf(self, name, ca, usage, san=None, days=2):
        """A key and certificate `name`.pem/.key signed by `ca`; returns
        (cert, key)."""
        ext = self.path(name + '.ext')
        with open(ext, 'w') as f:
            f.write('basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n' % usage)
            if san:
                f.write(san + '\n')
        openssl('req', *self._key_args(), '-nodes', '-subj', '/CN=test %s' % name,
                '-keyout', self.path(name + '.key'), '-out', self.path(name + '.csr'))
        openssl('x509', '-req', '-in', self.path(name + '.csr'), '-CA', self.path(ca + '.pem'),
                '-CAkey', self.path(ca + '.key'), '-CAcreateserial', '-days', str(days),
                '-extfile', ext, '-out', self.path(name + '.pem'))
        return self.path(name + '.pem'), self.path(name + '.key')
