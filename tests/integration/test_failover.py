"""The failover pair for real: two usher nodes, each with keepalived, in
their own network namespaces on one bridge, sharing a VIP; one Redis, one
slapd and two Dovecot backends behind them in the root namespace.

    root namespace: bridge 10.213.X.1/24 -- Dovecot x2, slapd, Redis, the clients
      ns A: eth0 10.213.X.2  usher + keepalived (MASTER, priority 150)
      ns B: eth0 10.213.X.3  usher + keepalived (BACKUP, priority 100)
      VIP 10.213.X.100/24, port 143, held by whichever node is master

keepalived runs the shipped configs/keepalived.conf, changed only where a
test must (the VIP, usherctl's path, the script user, and state and
priority on B); its tracked check is `usherctl -c CONF health`.

Twenty LDAP users log in through the VIP (node A), SELECT INBOX and stay.
Node A is then killed: SIGKILL to every process in its namespace (keepalived
and its VRRP child, usher's master, sessiond and workers), and its link
goes down, as a dead machine's would (a SIGKILLed keepalived leaves the VIP
on the interface). Measured from the kill: when the VIP is up on B, when
every held session has seen its connection drop, and when every client has
reconnected through the VIP, logged in and SELECTed again. Asserted: all of
them are back, through B, each on the backend it had before, slapd saw no
new bind of any of these users (B found their verified passwords in the
Redis auth cache), and all within FAILOVER_BOUND seconds.

Needs root (CAP_NET_ADMIN) for ip netns, and keepalived; without them the
test is skipped and says why."""
import concurrent.futures
import imaplib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import backend_name

USHERCTL_BIN = os.environ.get('USHERCTL_BIN', os.path.join(harness.ROOT, 'build', 'usherctl'))
KEEPALIVED_CONF = os.path.join(harness.ROOT, 'configs', 'keepalived.conf')
PEOPLE = 'ou=people,dc=example,dc=org'
USERS = {'fo%02d' % i: 'failover-pw-%02d' % i for i in range(1, 21)}
PORT = 143          # the same on both nodes; each namespace has its own ports
WORKERS = 2
# keepalived on B declares the master dead after 3 missed adverts plus its
# skew: 3 * advert_int + (256 - 100) / 256 * advert_int = 3.6 s with the
# shipped advert_int 1. The clients then need the gratuitous ARP, a TCP
# connect (retried every 0.1 s, 1 s timeout) and a login served from the
# Redis cache: a few seconds more on an idle machine (measured: see the
# printed line). 20 s leaves room for a loaded CI machine while still
# failing a failover that needs the health check's fall counts, an LDAP
# timeout per user or a TCP retransmission back-off to finish.
FAILOVER_BOUND = 20.0
VIP_BOUND = 10.0


def run(*cmd, check=True):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError('%s: exit %d: %s' % (' '.join(cmd), r.returncode, r.stderr.strip()))
    return r


def netns_pids(ns):
    r = run('ip', 'netns', 'pids', ns, check=False)
    return [int(p) for p in r.stdout.split()]


def has_address(ns, address):
    r = run('ip', '-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'eth0', check=False)
    return (' %s/' % address) in r.stdout


class Network:
    """A bridge in the root namespace and one namespace per node, each with
    a veth into the bridge (named eth0 inside, as in the shipped keepalived
    configuration). Names carry a random suffix, the subnet a random third
    octet, so that parallel runs do not meet."""

    def __init__(self):
        self.suffix = '%06x' % random.getrandbits(24)
        self.bridge = 'fobr' + self.suffix          # interface names: 15 chars at most
        self.namespaces, self.veths = [], []
        used = run('ip', '-4', '-o', 'addr').stdout + run('ip', '-4', 'route').stdout
        free = [x for x in range(16, 250) if '10.213.%d.' % x not in used]
        self.net = '10.213.%d' % random.choice(free)
        self.host = self.net + '.1'
        self.vip = self.net + '.100'

    def create_namespace(self, tag):
        """Fails (RuntimeError) when namespaces cannot be made here."""
        ns = 'usher-fo-%s-%s' % (self.suffix, tag)
        run('ip', 'netns', 'add', ns)
        self.namespaces.append(ns)
        return ns

    def create_bridge(self):
        run('ip', 'link', 'add', self.bridge, 'type', 'bridge')
        self.veths.append(self.bridge)
        run('ip', 'link', 'set', self.bridge, 'up')
        run('ip', 'addr', 'add', self.host + '/24', 'dev', self.bridge)

    def attach(self, ns, tag, address):
        veth = 'fo%s%s' % (tag, self.suffix)
        run('ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
        self.veths.append(veth)
        run('ip', 'link', 'set', veth, 'master', self.bridge, 'up')
        run('ip', '-n', ns, 'link', 'set', 'lo', 'up')
        run('ip', '-n', ns, 'addr', 'add', address + '/24', 'dev', 'eth0')
        run('ip', '-n', ns, 'link', 'set', 'eth0', 'up')

    def destroy(self):
        for ns in self.namespaces:
            for pid in netns_pids(ns):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            run('ip', 'netns', 'del', ns, check=False)
        for link in reversed(self.veths):
            run('ip', 'link', 'del', link, check=False)


def kill_group(proc):
    """SIGKILL to a process started with its own session, and its children."""
    if proc and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


class Node:
    """usher and keepalived in one namespace; both in their own process
    groups, so that the test can kill the node and nothing else."""

    def __init__(self, env, ns, address, tag, sections, master):
        self.ns, self.address, self.tag, self.master = ns, address, tag, master
        self.dir = tempfile.mkdtemp(prefix='node-%s-' % tag, dir=env.dir)
        self.conf = os.path.join(self.dir, 'usher.conf')
        self.log_path = os.path.join(self.dir, 'usher.log')
        self.ka_conf = os.path.join(self.dir, 'keepalived.conf')
        self.ka_log_path = os.path.join(self.dir, 'keepalived.log')
        self.admin_path = os.path.join(self.dir, 'run', 'admin.sock')
        self.usher = self.keepalived = None
        self.killed_at = None   # the log's length when kill() began
        env.watch_log('node %s: %s' % (tag, self.log_path), self.log_before_kill)
        all_sections = {
            'usher': {'workers': WORKERS, 'runtime_dir': os.path.join(self.dir, 'run'),
                      'log_level': 'info', 'name': 'usher-%s' % tag, 'drain_time': '1s'},
            'listener imap': {'address': '0.0.0.0:%d' % PORT, 'tls': 'starttls'},
            'tls': {'cert': env.cert, 'key': env.key},
        }
        all_sections.update(sections)
        with open(self.conf, 'w') as f:
            for section, keys in all_sections.items():
                f.write('[%s]\n' % section)
                for k, v in keys.items():
                    f.write('%s = %s\n' % (k, v))

    def start_usher(self):
        self.logf = open(self.log_path, 'ab')
        self.usher = subprocess.Popen(['ip', 'netns', 'exec', self.ns, harness.USHER_BIN,
                                       '-c', self.conf], stdout=self.logf,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        harness.wait_port(PORT, proc=self.usher, host=self.address)
        deadline = time.time() + 15
        while self.log().count('event=sessiond_up') < WORKERS:
            if time.time() > deadline:
                raise RuntimeError('usher %s: workers did not reach sessiond:\n%s'
                                   % (self.tag, self.log()))
            time.sleep(0.05)

    def start_keepalived(self, vip):
        with open(KEEPALIVED_CONF) as f:
            conf = f.read()
        # The shipped file, changed only where this machine differs: no user
        # 'usher' here, and keepalived's script security refuses scripts
        # under /tmp (world-writable), where this test's usherctl may be.
        changes = [
            ('enable_script_security\n', ''),
            ('script_user usher', 'script_user root'),
            ('"/usr/local/bin/usherctl -c /etc/usher/usher.conf health"',
             '"%s -c %s health"' % (os.path.abspath(USHERCTL_BIN), self.conf)),
            ('192.0.2.10/24', vip + '/24'),
        ]
        if not self.master:
            changes += [('state MASTER', 'state BACKUP'), ('priority 150', 'priority 100')]
        for old, new in changes:
            if old not in conf:
                raise RuntimeError('configs/keepalived.conf has no %r any more' % old)
            conf = conf.replace(old, new)
        with open(self.ka_conf, 'w') as f:
            f.write(conf)
        pid = lambda name: os.path.join(self.dir, name + '.pid')   # noqa: E731
        self.ka_logf = open(self.ka_log_path, 'ab')
        self.keepalived = subprocess.Popen(
            ['ip', 'netns', 'exec', self.ns, shutil.which('keepalived') or '/usr/sbin/keepalived',
             '--dont-fork', '--log-console', '--log-detail', '--no-syslog', '--vrrp',
             '--use-file', self.ka_conf, '--pid', pid('keepalived'), '--vrrp_pid', pid('vrrp'),
             '--checkers_pid', pid('checkers'), '--bfd_pid', pid('bfd')],
            stdout=self.ka_logf, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self):
        with open(self.log_path, errors='replace') as f:
            return f.read()

    def ka_log(self):
        with open(self.ka_log_path, errors='replace') as f:
            return f.read()

    def admin(self, command):
        """One command on the admin socket (a path: reachable from any namespace)."""
        return json.loads(harness.admin_command(self.admin_path, command))

    def log_before_kill(self):
        """What env.close() checks for crashes: the log up to kill(), after
        which the exits of children (SIGKILLed by the test, in any order
        with their master) are no crash."""
        if not os.path.exists(self.log_path):
            return ''
        return self.log()[:self.killed_at]

    def kill(self):
        """The node dies: SIGKILL to everything running in its namespace.
        Everything is frozen first: keepalived's VRRP child gets SIGTERM
        when its parent dies (PR_SET_PDEATHSIG), and a child that runs its
        graceful stop removes the VIP and hands it over with a priority-0
        advert before usher's sockets are closed, so their FINs leave from
        an address the node no longer has and never reach the clients. A
        node that dies does none of that."""
        self.killed_at = len(self.log())
        for _ in range(5):
            for p in netns_pids(self.ns):
                try:
                    os.kill(p, signal.SIGSTOP)
                except ProcessLookupError:
                    pass
        for _ in range(50):
            pids = netns_pids(self.ns)
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        for proc in (self.usher, self.keepalived):
            kill_group(proc)
        return not netns_pids(self.ns)

    def stop(self):
        """A clean stop: usher's exit status (0 expected), keepalived ended."""
        rc = None
        if self.keepalived and self.keepalived.poll() is None:
            harness.terminate(self.keepalived)
        if self.usher and self.usher.poll() is None:
            self.usher.send_signal(signal.SIGTERM)
            try:
                rc = self.usher.wait(15)
            except subprocess.TimeoutExpired:
                rc = 'timeout'
        for proc in (self.usher, self.keepalived):
            kill_group(proc)
        for f in ('logf', 'ka_logf'):
            if hasattr(self, f):
                getattr(self, f).close()
        return rc


def logged_in_users(log):
    return set(re.findall(r'event=login .*?user="([^"]+)" .*?result=ok', log))


class FailoverTest(unittest.TestCase):

    def setUp(self):
        if shutil.which('ip') is None:
            self.skipTest('no ip(8) here: network namespaces cannot be made')
        if not (shutil.which('keepalived') or os.path.exists('/usr/sbin/keepalived')):
            self.skipTest('keepalived is not installed')
        net = self.net = Network()
        self.addCleanup(net.destroy)
        try:
            self.ns_a = net.create_namespace('a')
        except RuntimeError as e:
            self.skipTest('network namespaces cannot be created here (root with '
                          'CAP_NET_ADMIN needed): %s' % e)
        self.ns_b = net.create_namespace('b')
        net.create_bridge()
        self.addr_a, self.addr_b = net.net + '.2', net.net + '.3'
        net.attach(self.ns_a, 'a', self.addr_a)
        net.attach(self.ns_b, 'b', self.addr_b)

        env = self.env = harness.Env()
        self.addCleanup(env.close)
        trusted = '127.0.0.0/8 %s.0/24' % net.net
        self.backends = [env.dovecot('backend%d' % i, trust_proxy=True, host=net.host,
                                     trusted_networks=trusted) for i in (1, 2)]
        self.slapd = env.slapd(host=net.host)
        for uid, pw in USERS.items():
            self.slapd.add_user(uid, pw)
        self.redis = env.redis(host=net.host)
        pw_file = env.secret_file('ldap.pw', self.slapd.SERVICE_PW)
        secret = env.secret_file('cluster.secret', 'failover-pair-secret-of-enough-length')
        sections = {
            'auth': {'failure_delay': '200ms'},
            'ldap': {'uri': self.slapd.uri, 'base': PEOPLE,
                     'filter': '(&(objectClass=inetOrgPerson)(uid=%u))',
                     'bind_dn': self.slapd.SERVICE, 'bind_password_file': pw_file,
                     'login_attribute': 'uid', 'timeout': '2s', 'reconnect_max': '500ms',
                     'pool_size': 2},
            'cache': {'secret_file': secret},
            'redis': {'address': '%s:%d' % (net.host, self.redis.port), 'timeout': '300ms'},
            'routing': {'backend_retry': '30s', 'health_interval': '1s'},
            'limits': {'plaintext_auth': 'yes', 'max_connections_per_ip': 0},
        }
        for b in self.backends:
            sections['backend ' + b.name] = {'address': '%s:%d' % (net.host, b.port),
                                             'send_id': 'yes'}
        self.node_a = Node(env, self.ns_a, self.addr_a, 'a', sections, master=True)
        self.node_b = Node(env, self.ns_b, self.addr_b, 'b', sections, master=False)
        for node in (self.node_a, self.node_b):
            self.addCleanup(node.stop)
            node.start_usher()
        self.node_a.start_keepalived(net.vip)
        self.wait_for(lambda: has_address(self.ns_a, net.vip), 15,
                      lambda: 'node A never took the VIP:\n' + self.node_a.ka_log())
        self.node_b.start_keepalived(net.vip)
        self.wait_for(lambda: 'Entering BACKUP STATE' in self.node_b.ka_log()
                      and 'usher_health) succeeded' in self.node_b.ka_log(), 15,
                      lambda: 'node B never became a healthy backup:\n' + self.node_b.ka_log())
        self.wait_for(self.vip_greets, 10, lambda: 'nothing greets on the VIP')

    def wait_for(self, condition, timeout, message):
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.fail(message())
            time.sleep(0.05)

    @staticmethod
    def settled(value, expected, timeout=3):
        """value() once it equals expected, else its last value after timeout
        (log lines may be written just after the client got its answer)."""
        deadline = time.monotonic() + timeout
        got = value()
        while got != expected and time.monotonic() < deadline:
            time.sleep(0.05)
            got = value()
        return got

    def vip_greets(self):
        try:
            with socket.create_connection((self.net.vip, PORT), timeout=1) as s:
                s.settimeout(2)
                return s.recv(200).startswith(b'* OK')
        except OSError:
            return False

    def login(self, user, timeout):
        m = imaplib.IMAP4(self.net.vip, PORT, timeout=timeout)
        try:
            m.sock.settimeout(10)
            typ, data = m.login(user, USERS[user])
            if typ != 'OK':
                raise imaplib.IMAP4.error(data)
            typ, data = m.select('INBOX')
            if typ != 'OK':
                raise imaplib.IMAP4.error(data)
            return m, backend_name(m)
        except BaseException:
            m.shutdown()
            raise

    @staticmethod
    def wait_dropped(m, deadline):
        """True once the held session's connection is closed or reset."""
        sock = m.sock
        while time.monotonic() < deadline:
            try:
                ready, _, _ = select.select([sock], [], [], max(0, deadline - time.monotonic()))
                if not ready:
                    return False
                if not sock.recv(4096):
                    return True
            except OSError:
                return True
        return False

    def test_master_dies_clients_come_back_on_the_same_backends(self):
        a, b, vip = self.node_a, self.node_b, self.net.vip
        self.assertFalse(has_address(self.ns_b, vip), 'both nodes hold the VIP')

        # 1. Every user logs in through the VIP (node A), selects INBOX, stays.
        before, held = {}, {}
        try:
            for user in USERS:
                held[user], before[user] = self.login(user, timeout=5)
            self.assertEqual(set(before.values()), {'backend1', 'backend2'},
                             'the users are not spread over both backends: %r' % before)
            self.assertEqual(self.settled(lambda: logged_in_users(a.log()), set(USERS)),
                             set(USERS), 'not all logged in via A')
            self.assertEqual(logged_in_users(b.log()), set(), 'B served logins before failover')
            self.assertEqual(a.admin('status')['logins_ok'], len(USERS))

            # 2. slapd saw each user bind (the first login verified the password).
            binds = {u: len(self.slapd.binds('uid=%s,' % u)) for u in USERS}
            self.assertTrue(all(n >= 1 for n in binds.values()), binds)

            # 3. Node A dies.
            t0 = time.monotonic()
            self.assertTrue(a.kill(), 'processes survived in node A: %r' % netns_pids(self.ns_a))
            t_killed = time.monotonic() - t0
            run('ip', '-n', self.ns_a, 'link', 'set', 'eth0', 'down')

            # 4. The VIP moves; clients notice the drop and come back via the VIP.
            deadline = t0 + FAILOVER_BOUND + 10
            vip_at = []

            def watch_vip():
                while time.monotonic() < deadline:
                    if has_address(self.ns_b, vip):
                        vip_at.append(time.monotonic() - t0)
                        return
                    time.sleep(0.05)

            def come_back(user):
                dropped = self.wait_dropped(held[user], t0 + 15)
                dropped_at = time.monotonic() - t0
                held[user].shutdown()
                attempts, refusals = 0, []
                while time.monotonic() < deadline:
                    attempts += 1
                    try:
                        m, backend = self.login(user, timeout=1)
                        return {'user': user, 'dropped': dropped, 'dropped_at': dropped_at,
                                'back_at': time.monotonic() - t0, 'backend': backend,
                                'session': m, 'attempts': attempts, 'refusals': refusals}
                    except imaplib.IMAP4.error as e:   # an IMAP NO/BAD: kept, retried
                        refusals.append(str(e))
                    except (OSError, EOFError, imaplib.IMAP4.abort):
                        pass                            # no VIP yet, or a refused connect
                    time.sleep(0.1)
                return {'user': user, 'dropped': dropped, 'dropped_at': dropped_at,
                        'back_at': None, 'backend': None, 'session': None,
                        'attempts': attempts, 'refusals': refusals}

            watcher = threading.Thread(target=watch_vip)
            watcher.start()
            with concurrent.futures.ThreadPoolExecutor(len(USERS)) as ex:
                results = list(ex.map(come_back, USERS))
            watcher.join()
            after = {r['user']: r['backend'] for r in results}
            for r in results:
                if r['session']:
                    held[r['user']] = r['session']

            missing = [r['user'] for r in results if r['back_at'] is None]
            back_all = max((r['back_at'] for r in results if r['back_at'] is not None),
                           default=None)
            drop_all = max(r['dropped_at'] for r in results)
            print('\nfailover: node A killed in %.2f s; VIP on B after %s s; all %d held '
                  'sessions dropped after %.2f s; all back, logged in and SELECTed after '
                  '%s s (first back %.2f s, %d connection attempts in all)'
                  % (t_killed, '%.2f' % vip_at[0] if vip_at else 'never', len(USERS),
                     drop_all, '%.2f' % back_all if back_all is not None else 'never',
                     min((r['back_at'] for r in results if r['back_at'] is not None),
                         default=float('nan')),
                     sum(r['attempts'] for r in results)), flush=True)

            # 5. What the pair promises.
            self.assertTrue(vip_at, 'the VIP never appeared on node B')
            self.assertLess(vip_at[0], VIP_BOUND, 'the VIP took too long to move')
            self.assertEqual([r['user'] for r in results if not r['dropped']], [],
                             'held sessions that never saw their connection drop')
            self.assertEqual(missing, [], 'clients that did not come back through the VIP')
            refused = {r['user']: r['refusals'] for r in results if r['refusals']}
            self.assertFalse([u for u, texts in refused.items()
                              if any('AUTHENTICATIONFAILED' in t for t in texts)],
                             'the twin refused a right password: %r' % refused)
            moved = {u: (before[u], after[u]) for u in USERS if after[u] != before[u]}
            self.assertEqual(moved, {}, 'users on another backend after the failover')
            self.assertEqual(self.settled(lambda: logged_in_users(b.log()), set(USERS)),
                             set(USERS), 'not all came back via B')
            new_binds = {u: len(self.slapd.binds('uid=%s,' % u)) - binds[u] for u in USERS}
            self.assertEqual({u: n for u, n in new_binds.items() if n}, {},
                             'slapd saw binds of users who had logged in before')
            self.assertGreaterEqual(b.admin('auth stats')['cache']['redis_hits'], len(USERS))
            self.assertLess(back_all, FAILOVER_BOUND,
                            'sessions took too long to come back after the failover')
            for user, m in held.items():   # the new sessions work
                self.assertEqual(m.noop()[0], 'OK', user)
        finally:
            for m in held.values():
                try:
                    m.shutdown()
                except OSError:
                    pass
        self.assertEqual(b.stop(), 0, 'node B did not stop cleanly')


if __name__ == '__main__':
    unittest.main()
