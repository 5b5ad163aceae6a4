"""Test harness: real Dovecot backends and a real usher, on 127.0.0.1 and
free ports, in a temporary directory that is removed afterwards.

Only the Python standard library is used. Everything started here is
stopped here, also when a test fails.

    env = Env()                         # temp dir, TLS certificate, users
    b1 = env.dovecot('backend1')        # a real Dovecot, shared mail store
    u = env.usher(backends=[b1, b2])    # usher in front, started and ready
    ...
    env.close()                         # stops everything, checks usher's log
"""
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
USHER_BIN = os.environ.get('USHER_BIN', os.path.join(ROOT, 'build', 'usher'))


def sanitized_build():
    """True for an ASan build of usher, whose memory figures (quarantine,
    shadow memory) say nothing about usher's own."""
    with open(USHER_BIN, 'rb') as f:
        return b'__asan_init' in f.read()

SANITIZER_MARKS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:',
                   'WARNING: ThreadSanitizer')

# Demo and test users: name -> password. user01..user40 spread over backends.
USERS = {'alice': 'alice-pw', 'bob': 'bob-pw', 'carol': 'carol-pw'}
USERS.update({'user%02d' % i: 'pw-%02d' % i for i in range(1, 41)})
# The backends' master user, for re-homing live sessions.
MASTER_USER, MASTER_PASSWORD = 'usher-master', 'master-pw-6f1c'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15.0, proc=None, host='127.0.0.1'):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError('process exited with %s while starting' % proc.returncode)
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(200).startswith(b'* OK'):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError('nothing answers on port %d' % port)


def terminate(proc, timeout=10):
    """SIGTERM, then SIGKILL if the process is still there after timeout."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def descendants(pid):
    """Every process below pid, from /proc (children lists of each task)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir('/proc/%d/task' % p)
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                with open('/proc/%d/task/%s/children' % (p, task)) as f:
                    kids = [int(k) for k in f.read().split()]
            except FileNotFoundError:
                continue
            found += kids
            todo += kids
    return found


def wait_until(predicate, timeout, step=0.02):
    """True once predicate() holds, False after timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(step)
    return False


def deliver(env, user, subject):
    """One new message in user's INBOX, as a delivery agent would leave it."""
    box = os.path.join(env.mail, user)
    for sub in ('new', 'cur', 'tmp'):
        os.makedirs(os.path.join(box, sub), exist_ok=True)
    name = '%d.%d.usher-test' % (time.time_ns(), os.getpid())
    tmp = os.path.join(box, 'tmp', name)
    with open(tmp, 'w') as f:
        f.write('From: a@example.org\r\nTo: %s@example.org\r\nSubject: %s\r\n\r\nbody\r\n'
                % (user, subject))
    for path in (box, os.path.join(box, 'new'), os.path.join(box, 'cur'),
                 os.path.join(box, 'tmp'), tmp):
        shutil.chown(path, 'mail', 'mail')
    os.rename(tmp, os.path.join(box, 'new', name))


def admin_command(path, command):
    """One command on usher's admin socket at path; the JSON answer as text."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(command.encode() + b'\n')
        buf = b''
        while not buf.endswith(b'\n'):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf.decode()


def crypt_sha512(password):
    """A sha512-crypt hash made by openssl (no PyPI, no deprecated crypt)."""
    return subprocess.run(['openssl', 'passwd', '-6', password], check=True,
                          capture_output=True, text=True).stdout.strip()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Dovecot:
    """One real Dovecot instance. All instances of an Env share the mail store."""

    def __init__(self, env, name, tls=False, trust_proxy=False, host='127.0.0.1',
                 trusted_networks='127.0.0.0/8', extra_conf=''):
        self.env, self.name = env, name
        self.extra_conf = extra_conf   # appended to dovecot.conf (benchmarks: bigger limits)
        # host: the address to listen on; trusted_networks: Dovecot's
        # login_trusted_networks (the proxies whose ID it believes).
        self.host, self.trusted_networks = host, trusted_networks
        # trust_proxy: accept any password (the backend trusts usher, which
        # authenticated the user): for users who live in LDAP only.
        self.trust_proxy = trust_proxy
        self.dir = os.path.join(env.dir, name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        self.conf = os.path.join(self.dir, 'dovecot.conf')
        self.log = os.path.join(self.dir, 'dovecot.log')
        self.proc = None
        with open(self.conf, 'w') as f:
            f.write(self._config())
        self.start()

    def _config(self):
        e = self.env
        ssl_part = 'ssl = no\n'
        if self.tls_port:
            ssl_part = 'ssl = yes\nssl_cert = <%s\nssl_key = <%s\n' % (e.cert, e.key)
        return f"""# Written by the usher test harness.
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.log}
instance_name = usher-{os.path.basename(e.dir)}-{self.name}
protocols = imap
listen = {self.host}
{ssl_part}disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{e.mail}/%u
first_valid_uid = 1
{self._passdb()}
userdb {{
  driver = static
  args = uid=mail gid=mail home={e.mail}/%u
}}
default_process_limit = 1000
default_client_limit = 4000
service imap-login {{
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
  }}
  service_count = 0
  process_min_avail = 2
  client_limit = 1000
}}
login_trusted_networks = {self.trusted_networks}
imap_id_send = name {self.name}
protocol imap {{
  mail_max_userip_connections = 1000
}}
imap_idle_notify_interval = 1 secs
verbose_proctitle = yes
{self.extra_conf}
"""

    def _passdb(self):
        # The master user usher re-homes sessions with (SASL PLAIN, the user
        # as authorization identity): Dovecot's master passdb comes first.
        master = ('passdb {\n  driver = passwd-file\n  args = %s\n  master = yes\n'
                  '  pass = yes\n}\n' % self.env.master_users_file)
        if self.trust_proxy:
            return master + 'passdb {\n  driver = static\n  args = nopassword=y\n}'
        return master + 'passdb {\n  driver = passwd-file\n  args = %s\n}' % self.env.users_file

    def start(self):
        self.proc = subprocess.Popen(['dovecot', '-F', '-c', self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc, host=self.host)

    def stop(self):
        terminate(self.proc)
        self.proc = None

    def kill(self):
        """The backend dies as a crashed machine would: every process of
        this Dovecot gets SIGKILL at once (frozen first, so that none sees
        another go and says goodbye): its sessions end without a BYE."""
        if not self.proc:
            return
        pids = descendants(self.proc.pid) + [self.proc.pid]
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        self.proc.wait()
        self.proc = None
        wait_until(lambda: all(not os.path.exists('/proc/%d' % p) or
                               open('/proc/%d/stat' % p).read().split()[2] == 'Z'
                               for p in pids), 5)

    def process_users(self):
        """Users with an imap process on this backend now, from /proc (the
        process titles, verbose_proctitle): cheap enough to sample every few
        milliseconds, unlike doveadm who. An imap process that is ending
        still counts: it may still be writing the user's indexes."""
        users = set()
        if not self.proc:
            return users
        try:
            tasks = os.listdir('/proc/%d/task' % self.proc.pid)
        except FileNotFoundError:
            return users
        for task in tasks:
            try:
                with open('/proc/%d/task/%s/children' % (self.proc.pid, task)) as f:
                    children = f.read().split()
            except FileNotFoundError:
                continue
            for pid in children:
                try:
                    with open('/proc/%s/cmdline' % pid, 'rb') as f:
                        title = f.read().replace(b'\0', b' ').decode(errors='replace')
                except (FileNotFoundError, ProcessLookupError):
                    continue
                m = re.search(r'/imap \[(\S+)', title)   # "<instance>/imap [user ip ...]"
                if m:
                    users.add(m.group(1))
        return users

    def who(self):
        """Users connected to this backend, from Dovecot itself."""
        out = subprocess.run(['doveadm', '-c', self.conf, 'who', '-1'], capture_output=True,
                             text=True).stdout
        return {line.split()[0] for line in out.splitlines()[1:] if line.strip()}


CHILD_EXIT = re.compile(r'event=child_exit role=(\w+) id=(\d+) (signal|status)=(\d+)')
CHILD_START = re.compile(r'event=child_start role=(\w+) id=(\d+) ')
REPORT_CONTEXT = 20   # lines kept after a sanitizer's ERROR line: its stack


def crash_reports(log_text, expected=()):
    """The lines of an usher log that show something went wrong:

    - a sanitizer report, with REPORT_CONTEXT lines after each ERROR line;
    - a child_exit while usher ran (the master restarts the child silently,
      so a crashed worker would go unnoticed otherwise);
    - a child_exit during a graceful stop by a signal or a non-zero status
      (a clean stop ends every child with status 0);
    - a restart (child_start again for the same role and id).

    expected: (role, count, signals) tuples as Usher.expect_child_exits()
    makes them; that many exits of that role by one of those signals while
    usher ran, and the restarts after them, are no report. A declared exit
    that did not happen is one, so that the declaration stays true."""
    left = {}   # (role, signals) -> exits still tolerated
    for role, count, signals in expected:
        left[(role, signals)] = left.get((role, signals), 0) + count
    reports, after_error = [], 0
    started, stopping, forgiven = set(), False, set()
    for line in log_text.splitlines():
        # Every line counts for the state (a start or stop may fall in a
        # report's context); a line is reported once.
        bad = False
        if any(mark in line for mark in SANITIZER_MARKS):
            bad = True
            if 'ERROR: ' in line:
                after_error = REPORT_CONTEXT + 1
        if 'proc=master event=start ' in line:   # usher (re)started by the test
            started, stopping = set(), False
        elif 'proc=master event=stopping ' in line:
            stopping = True
        exit_, start = CHILD_EXIT.search(line), CHILD_START.search(line)
        if exit_:
            role, child, how, value = exit_.groups()
            value = int(value)
            key = next((k for k, n in left.items()
                        if n and k[0] == role and how == 'signal' and value in k[1]), None)
            if stopping:
                bad = bad or how == 'signal' or value != 0
            elif key:
                left[key] -= 1
                forgiven.add((role, child))   # its restart is expected too
            else:
                bad = True
        elif start:
            child = start.groups()
            if child in forgiven:
                forgiven.discard(child)
            elif child in started:
                bad = True
            started.add(child)
        if bad or after_error:
            reports.append(line)
        after_error = max(0, after_error - 1)
    for (role, signals), n in left.items():
        if n:
            reports.append('(harness) %d expected exit(s) of %s by signal %s did not happen'
                           % (n, role, '/'.join(map(str, signals))))
    return reports


class Usher:
    """usher, started from USHER_BIN with a generated configuration."""

    def __init__(self, env, backends, workers=2, extra=None, users_file=None, port=0,
                 tls_port=0):
        self.env = env
        self.dir = tempfile.mkdtemp(prefix='usher-', dir=env.dir)
        os.chmod(self.dir, 0o755)   # workers may run as another user ([usher] user)
        self.port = port or free_port()
        self.tls_port = tls_port or free_port()
        self.workers = workers
        self.conf = os.path.join(self.dir, 'usher.conf')
        self.log_path = os.path.join(self.dir, 'usher.log')
        self.admin_path = os.path.join(self.dir, 'run', 'admin.sock')
        sections = {
            'usher': {'workers': workers, 'runtime_dir': os.path.join(self.dir, 'run'),
                      'log_level': 'info', 'name': 'usher-%d' % self.port,
                      'drain_time': '1s'},
            'listener plain': {'address': '127.0.0.1:%d' % self.port, 'tls': 'starttls'},
            'listener tls': {'address': '127.0.0.1:%d' % self.tls_port, 'tls': 'implicit'},
            'tls': {'cert': env.cert, 'key': env.key},
            'auth': {'failure_delay': '200ms'},
            'routing': {'backend_retry': '30s'},
            'limits': {'max_connections_per_ip': 0},
        }
        if users_file != '':   # '': no users file (LDAP is the database)
            sections['auth']['users_file'] = users_file or env.users_file
        for b in backends:
            sections['backend ' + b.name] = {'address': '127.0.0.1:%d' % b.port,
                                             'send_id': 'yes'}
        for section, keys in (extra or {}).items():
            sections.setdefault(section, {}).update(keys)
        with open(self.conf, 'w') as f:
            for section, keys in sections.items():
                f.write('[%s]\n' % section)
                for k, v in keys.items():
                    f.write('%s = %s\n' % (k, v))
        self.proc = None
        self.expected_exits = []   # see expect_child_exits()
        self.start()

    def start(self):
        self.logf = open(self.log_path, 'ab')
        self.proc = subprocess.Popen([USHER_BIN, '-c', self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        wait_port(self.port, proc=self.proc)
        # Ready when every worker has its link to sessiond.
        deadline = time.time() + 15
        while self.log().count('event=sessiond_up') < self.workers:
            if time.time() > deadline:
                raise RuntimeError('usher workers did not reach sessiond:\n' + self.log())
            time.sleep(0.05)

    def log(self):
        with open(self.log_path, errors='replace') as f:
            return f.read()

    def stop(self):
        """SIGTERM; usher must exit 0 within a few seconds."""
        if not self.proc:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = 'timeout'
        self.proc = None
        self.logf.close()
        return rc

    def admin(self, command):
        """One admin-socket command; the JSON answer as text."""
        return admin_command(self.admin_path, command)

    def sanitizer_reports(self):
        return [line for line in self.log().splitlines()
                if any(mark in line for mark in SANITIZER_MARKS)]

    def child_pids(self, role):
        """pids of the master's live children of `role` ('worker', 'sessiond'),
        from /proc: what the kernel says now, not what the log said once."""
        pids = []
        for task in os.listdir('/proc/%d/task' % self.proc.pid):
            with open('/proc/%d/task/%s/children' % (self.proc.pid, task)) as f:
                for pid in f.read().split():
                    try:
                        with open('/proc/%s/cmdline' % pid, 'rb') as c:
                            argv = c.read().split(b'\0')
                    except FileNotFoundError:   # gone since
                        continue
                    if b'--role' in argv and argv[argv.index(b'--role') + 1] == role.encode():
                        pids.append(int(pid))
        return pids

    def expect_child_exits(self, role, count=1, signals=(signal.SIGKILL, signal.SIGTERM)):
        """Declares that the test itself ends `count` children of `role`
        ('worker' or 'sessiond') with one of `signals`: crash_reports()
        then tolerates exactly those exits and the restarts after them."""
        self.expected_exits.append((role, count, tuple(int(s) for s in signals)))

    def crash_reports(self):
        """The log lines that show usher went wrong (see crash_reports())."""
        return crash_reports(self.log(), self.expected_exits)


class Env:
    """A temporary world: directory, certificate, users file, mail store."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='usher-test-')
        os.chmod(self.dir, 0o755)   # Dovecot's mail processes run as 'mail'
        self.mail = os.path.join(self.dir, 'mail')
        os.makedirs(self.mail)
        shutil.chown(self.mail, 'mail', 'mail')
        self.cert, self.key = self._make_cert()
        self.users_file = os.path.join(self.dir, 'users')
        self.write_users(USERS)
        # Dovecot's master users (see Dovecot._passdb) and the password
        # file usher's sessiond reads ([routing] master_password_file).
        self.master_user, self.master_password = MASTER_USER, MASTER_PASSWORD
        self.master_users_file = os.path.join(self.dir, 'master-users')
        with open(self.master_users_file, 'w') as f:
            f.write('%s:{PLAIN}%s\n' % (MASTER_USER, MASTER_PASSWORD))
        self.master_password_file = os.path.join(self.dir, 'master-password')
        with open(self.master_password_file, 'w') as f:
            f.write(MASTER_PASSWORD + '\n')
        os.chmod(self.master_password_file, 0o600)
        self.backends, self.ushers, self.others = [], [], []
        self.watched = []   # see watch_log()

    def _make_cert(self):
        cert, key = os.path.join(self.dir, 'cert.pem'), os.path.join(self.dir, 'key.pem')
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                        'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
                        '-days', '30', '-subj', '/CN=localhost', '-addext',
                        'subjectAltName=DNS:localhost,IP:127.0.0.1'],
                       check=True, capture_output=True)
        os.chmod(key, 0o644)   # Dovecot reads it after dropping privileges
        return cert, key

    def write_users(self, users, extra=None):
        """users file in the format usher and Dovecot's passwd-file share."""
        extra = extra or {}
        hashes = _hash_cache()
        with open(self.users_file + '.new', 'w') as f:
            for name, pw in users.items():
                if pw not in hashes:
                    hashes[pw] = crypt_sha512(pw)
                line = '%s:{SHA512-CRYPT}%s' % (name, hashes[pw])
                if name in extra:
                    line += ':' + extra[name]
                f.write(line + '\n')
        os.replace(self.users_file + '.new', self.users_file)

    def dovecot(self, name, tls=False, trust_proxy=False, **kw):
        b = Dovecot(self, name, tls=tls, trust_proxy=trust_proxy, **kw)
        self.backends.append(b)
        return b

    def slapd(self, **kw):
        s = Slapd(self, **kw)
        self.others.append(s)
        return s

    def redis(self, **kw):
        r = Redis(self, **kw)
        self.others.append(r)
        return r

    def secret_file(self, name, content):
        """A file only its owner may read, as usher wants for secrets."""
        path = os.path.join(self.dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(content + '\n')
        return path

    def usher(self, backends=None, **kw):
        u = Usher(self, backends if backends is not None else self.backends, **kw)
        self.ushers.append(u)
        return u

    def tls_context(self):
        return ssl.create_default_context(cafile=self.cert)

    def watch_log(self, name, read, expected=()):
        """close() checks this log too: for an usher the test started itself,
        outside env.usher(). read() gives its text (called before the test
        directory is removed); expected as Usher.expected_exits."""
        self.watched.append((name, read, expected))

    def stop_all(self, secrets=()):
        """Stops every usher this Env started (each must exit 0), then
        close()'s checks; and no secret may appear in any usher's log."""
        rcs = [u.stop() for u in self.ushers]
        logs = ''.join(u.log() for u in self.ushers)   # up to the last line
        self.close()   # raises with the log lines of any crash
        assert rcs == [0] * len(rcs), 'usher exit codes %r' % rcs
        for secret in tuple(secrets) + (MASTER_PASSWORD,):
            assert secret not in logs, 'a password appears in a log'

    def close(self):
        """Stops everything and checks usher's logs: raises AssertionError
        with the lines of each crash report (see crash_reports()), so that no
        test can forget to look; returns [] otherwise (callers that compare
        the result with [] keep working)."""
        found = []
        for u in self.ushers:
            u.stop()
            found.append((u.log_path, u.crash_reports()))
        for name, read, expected in self.watched:
            found.append((name, crash_reports(read(), expected)))
        for b in self.backends + self.others:
            b.stop()
        # Closed once: a cleanup that closes again has nothing left to do.
        self.ushers, self.backends, self.others, self.watched = [], [], [], []
        if os.environ.get('USHER_KEEP_TEST_DIR'):
            print('kept', self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        message = ['%s:\n  %s' % (name, '\n  '.join(lines)) for name, lines in found if lines]
        if message:
            raise AssertionError('usher crashed or was restarted:\n' + '\n'.join(message))
        return []


class Slapd:
    """A real OpenLDAP server with its own configuration and database.

    Directory: dc=example,dc=org; people under ou=people with uid, mail
    (aliases), mailHost (a pinned backend) and userPassword; a service
    account cn=usher,dc=example,dc=org. The stats log (-d 256) records every
    operation, so tests can count binds at the server."""

    SUFFIX = 'dc=example,dc=org'
    ADMIN = 'cn=admin,dc=example,dc=org'
    ADMIN_PW = 'admin-secret'
    SERVICE = 'cn=usher,dc=example,dc=org'
    SERVICE_PW = 'service-secret'

    def __init__(self, env, host='127.0.0.1'):
        self.env = env
        self.dir = os.path.join(env.dir, 'slapd-%d' % len(env.others))
        os.makedirs(os.path.join(self.dir, 'db'))
        self.port = free_port()
        self.tls_port = free_port()
        self.uri = 'ldap://%s:%d' % (host, self.port)
        self.tls_uri = 'ldaps://%s:%d' % (host, self.tls_port)
        self.conf = os.path.join(self.dir, 'slapd.conf')
        self.log = os.path.join(self.dir, 'slapd.log')
        with open(self.conf, 'w') as f:
            f.write(f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/misc.schema
pidfile {self.dir}/slapd.pid
TLSCertificateFile {env.cert}
TLSCertificateKeyFile {env.key}
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 104857600
suffix "{self.SUFFIX}"
rootdn "{self.ADMIN}"
rootpw {self.ADMIN_PW}
directory {self.dir}/db
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
""")
        self.proc = None
        self.start()
        self.add(f"""dn: {self.SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{self.SUFFIX}
objectClass: organizationalUnit
ou: people

dn: {self.SERVICE}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: usher
userPassword: {self.SERVICE_PW}
""")

    def start(self):
        self.logf = open(self.log, 'ab')
        self.proc = subprocess.Popen(['slapd', '-f', self.conf, '-h',
                                      '%s/ %s/' % (self.uri, self.tls_uri), '-d', '256'],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('slapd exited: ' + open(self.log).read()[-2000:])
            r = subprocess.run(['ldapsearch', '-x', '-H', self.uri, '-b', '', '-s', 'base',
                                '-LLL', '1.1'], capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError('slapd did not start')

    def stop(self):
        terminate(self.proc)
        if self.proc:
            self.logf.close()
        self.proc = None

    def _ldap(self, tool, ldif):
        r = subprocess.run([tool, '-x', '-H', self.uri, '-D', self.ADMIN, '-w', self.ADMIN_PW],
                           input=ldif, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError('%s failed: %s' % (tool, r.stderr))

    def add(self, ldif):
        self._ldap('ldapadd', ldif)

    def add_user(self, uid, password, mail=None, pinned=None):
        extra = ''
        if mail:
            extra += 'mail: %s\n' % mail
        if pinned:
            extra += 'objectClass: inetLocalMailRecipient\nmailHost: %s\n' % pinned
        self.add(f"""dn: uid={uid},ou=people,{self.SUFFIX}
objectClass: inetOrgPerson
uid: {uid}
cn: {uid}
sn: {uid}
userPassword: {password}
{extra}""")

    def set_password(self, uid, password):
        self._ldap('ldapmodify', f"""dn: uid={uid},ou=people,{self.SUFFIX}
changetype: modify
replace: userPassword
userPassword: {password}
""")

    def binds(self, dn_part=''):
        """BIND operations slapd logged, optionally only those naming dn_part."""
        with open(self.log, errors='replace') as f:
            return [line for line in f
                    if ' BIND dn="' in line and ' method=' in line and dn_part in line]

    def log_text(self):
        with open(self.log, errors='replace') as f:
            return f.read()


class Redis:
    """A real redis-server on a free port, without persistence; a replica
    of another when replica_of is given; a Sentinel watching `monitor`
    (a Redis, as master "usher") when that is given."""

    def __init__(self, env, replica_of=None, monitor=None, host='127.0.0.1'):
        self.env, self.host = env, host
        self.dir = os.path.join(env.dir, 'redis-%d' % len(env.others))
        os.makedirs(self.dir)
        self.port = free_port()
        self.replica_of, self.monitor = replica_of, monitor
        self.proc = None
        self.start()

    def _args(self):
        if self.monitor:   # Sentinel rewrites its configuration file: give it one
            conf = os.path.join(self.dir, 'sentinel.conf')
            with open(conf, 'w') as f:
                f.write('port %d\nbind 127.0.0.1\ndir %s\n'
                        'sentinel monitor usher 127.0.0.1 %d 2\n'
                        'sentinel down-after-milliseconds usher 1000\n'
                        'sentinel failover-timeout usher 4000\n'
                        'sentinel parallel-syncs usher 1\n'
                        % (self.port, self.dir, self.monitor.port))
            return ['redis-server', conf, '--sentinel']
        args = ['redis-server', '--port', str(self.port), '--bind', self.host, '--save', '',
                '--appendonly', 'no', '--dir', self.dir, '--daemonize', 'no']
        if self.host != '127.0.0.1':   # reached from other hosts (or namespaces)
            args += ['--protected-mode', 'no']
        if self.replica_of:
            args += ['--replicaof', '127.0.0.1', str(self.replica_of.port)]
        return args

    def start(self):
        with open(os.path.join(self.dir, 'redis.log'), 'ab') as log:
            self.proc = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.command('PING') == 'PONG':
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError('redis-server did not start')

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def command(self, *args):
        """One command through redis-cli; its output as text."""
        r = subprocess.run(['redis-cli', '-h', self.host, '-p', str(self.port), '--raw']
                           + list(args), capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise OSError(r.stderr)
        return r.stdout.strip()

    def dump(self):
        """Every key and its value (strings only) as one text."""
        out = []
        for key in self.command('KEYS', '*').splitlines():
            out.append(key)
            if self.command('TYPE', key) == 'string':
                out.append(self.command('GET', key))
        return '\n'.join(out)


_HASHES = {}


def _hash_cache():
    return _HASHES


def backend_name(imap):
    """Which backend serves an imaplib session: its ID name."""
    import imaplib
    imaplib.Commands.setdefault('ID', ('NONAUTH', 'AUTH', 'SELECTED', 'LOGOUT'))
    typ, _ = imap._simple_command('ID', 'NIL')
    assert typ == 'OK', typ
    data = imap.untagged_responses.pop('ID', [b''])[0]
    m = re.search(rb'"name" "([^"]+)"', data)
    return m.group(1).decode() if m else None


class RawClient:
    """A byte-level IMAP client for tests of malformed input."""

    def __init__(self, port, tls_ctx=None, timeout=10):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=timeout)
        if tls_ctx:
            self.sock = tls_ctx.wrap_socket(self.sock, server_hostname='localhost')
        self.buf = b''
        self.greeting = self.line()

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b'\r\n' not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError('connection closed; have %r' % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line

    def until_tagged(self, tag):
        """Lines up to and including the one tagged `tag`."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag + b' '):
                return lines

    def closed(self, timeout=5):
        """True once the server has closed the connection."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def tcp_sockets(state=None):
    """(local port, remote port, state) of each IPv4 TCP socket in this
    network namespace, from /proc/net/tcp; state is the kernel's hex code
    ('01' established, '06' TIME_WAIT)."""
    found = []
    with open('/proc/net/tcp') as f:
        next(f)
        for row in f:
            fields = row.split()
            local, remote, st = fields[1], fields[2], fields[3]
            if state is None or st == state:
                found.append((int(local.split(':')[1], 16), int(remote.split(':')[1], 16), st))
    return found


def random_bytes(n, seed=1):
    rnd = random.Random(seed)
    return bytes(rnd.getrandbits(8) for _ in range(n))


def mbsync_rc(env, port, user, local, name='mbsyncrc'):
    """An mbsync (isync) configuration that pulls every folder of user
    through usher (STARTTLS, PLAIN) into the maildir local; its path."""
    rc = os.path.join(env.dir, name)
    with open(rc, 'w') as f:
        f.write(f"""IMAPAccount usher
Host localhost
Port {port}
User {user}
Pass {USERS[user]}
TLSType STARTTLS
CertificateFile {env.cert}
AuthMechs PLAIN

IMAPStore remote
Account usher

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel {user}
Far :remote:
Near :local:
Patterns *
Create Near
Sync Pull
SyncState *
""")
    return rc


def run_mbsync(rc, timeout=120):
    """One mbsync run of every channel in rc; the CompletedProcess. isync
    before 1.5 calls TLSType SSLType: the configuration is fixed once."""
    out = subprocess.run(['mbsync', '-c', rc, '-a'], capture_output=True, text=True,
                         timeout=timeout)
    if 'TLSType' in out.stderr:
        with open(rc) as f:
            text = f.read().replace('TLSType STARTTLS', 'SSLType STARTTLS')
        with open(rc, 'w') as f:
            f.write(text)
        out = subprocess.run(['mbsync', '-c', rc, '-a'], capture_output=True, text=True,
                             timeout=timeout)
    return out
