"""Day-two operations against a running usher: reload under load (SIGHUP)
and a graceful stop (SIGTERM with a drain time)."""
import imaplib
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest

import harness
from harness import USERS, RawClient, sha256


def make_cert(directory, cn):
    cert, key = os.path.join(directory, cn + '.pem'), os.path.join(directory, cn + '.key')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
                    '-days', '30', '-subj', '/CN=' + cn], check=True, capture_output=True)
    return cert, key


def server_cert_der(port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(('127.0.0.1', port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as s:
            return s.getpeercert(binary_form=True)


def rewrite_conf(u, drop_section=None, append=''):
    """Rewrites usher's configuration file in place (a new inode, as editors do)."""
    with open(u.conf) as f:
        text = f.read()
    if drop_section:
        text = re.sub(r'\[%s\]\n(?:[^\[].*\n)*' % re.escape(drop_section), '', text)
    with open(u.conf + '.new', 'w') as f:
        f.write(text + append)
    os.replace(u.conf + '.new', u.conf)


def wait_log_count(u, needle, count, timeout=10):
    deadline = time.time() + timeout
    while u.log().count(needle) < count:
        if time.time() > deadline:
            raise AssertionError('%r seen %d times, wanted %d' % (needle, u.log().count(needle),
                                                                   count))
        time.sleep(0.05)


class ReloadUnderLoadTest(unittest.TestCase):
    """SIGHUP while a large FETCH is in flight and a session sits in IDLE:
    both carry on; a backend removed from the file gets no new seats; TLS
    certificates are read again; an invalid file is refused and the old
    configuration keeps serving."""

    def setUp(self):
        self.env = harness.Env()
        self.b1 = self.env.dovecot('backend1')
        self.b2 = self.env.dovecot('backend2')
        udir = os.path.join(self.env.dir, 'certs')
        os.makedirs(udir)
        self.cert, self.key = make_cert(udir, 'first-cert')
        self.u = self.env.usher(extra={'tls': {'cert': self.cert, 'key': self.key}})

    def tearDown(self):
        rc = self.u.stop()
        self.env.close()   # raises with the log lines of any crash
        self.assertEqual(rc, 0)

    def login(self, user):
        m = imaplib.IMAP4('127.0.0.1', self.u.port)
        m.login(user, USERS[user])
        return m

    def reload(self, expect_event, processes):
        before = self.u.log().count(expect_event)
        self.u.proc.send_signal(signal.SIGHUP)
        wait_log_count(self.u, expect_event, before + processes)

    def test_reload_under_load(self):
        # A 24 MiB message for alice, appended through usher.
        text = harness.random_bytes(12 * 1024 * 1024, seed=7).hex().encode()
        body = (b'From: big@example.org\r\nSubject: reload\r\n\r\n' +
                b'\r\n'.join(text[i:i + 998] for i in range(0, len(text), 998)) + b'\r\n')
        m = self.login('alice')
        self.assertEqual(m.append('INBOX', None, None, body)[0], 'OK')
        m.logout()

        # bob waits in IDLE; someone is seated on each backend beforehand.
        idler = self.login('bob')
        idler.select('INBOX')
        idler.send(b'i1 IDLE\r\n')
        self.assertTrue(idler.readline().startswith(b'+'))
        held = {}
        for user in ('user%02d' % i for i in range(1, 41)):
            s = self.login(user)
            held.setdefault(harness.backend_name(s), s)
            if len(held) == 2:
                break
        self.assertEqual(set(held), {'backend1', 'backend2'})

        # alice's FETCH: read slowly so that it is still in flight at reload.
        fetcher = RawClient(self.u.port)
        fetcher.send(b'a LOGIN alice ' + USERS['alice'].encode() + b'\r\n')
        fetcher.until_tagged(b'a')
        fetcher.send(b's SELECT INBOX\r\n')
        fetcher.until_tagged(b's')
        fetcher.send(b'f FETCH 1 BODY.PEEK[]\r\n')
        head = fetcher.line()
        size = int(re.search(rb'\{(\d+)\}$', head).group(1))
        self.assertEqual(size, len(body))
        got = bytearray(fetcher.buf)
        fetcher.buf = b''
        while len(got) < 1024 * 1024:
            got += fetcher.sock.recv(65536)

        # Reload: backend2 removed, a new certificate in place of the old.
        self.assertIn(b'first-cert', server_cert_der(self.u.tls_port))
        make_cert(os.path.dirname(self.cert), 'second-cert')
        os.replace(os.path.join(os.path.dirname(self.cert), 'second-cert.pem'), self.cert)
        os.replace(os.path.join(os.path.dirname(self.cert), 'second-cert.key'), self.key)
        rewrite_conf(self.u, drop_section='backend backend2')
        # The master, sessiond and each worker log their own reload.
        self.reload('event=reload ', 2 + self.u.workers)
        self.assertLess(len(got), size, 'the FETCH finished before the reload; test is void')
        # Still serving bob and the others seated there: retired, not gone.
        self.assertRegex(self.u.admin('backends'), r'"backend2"[^}]*"state":"retired"')

        # The FETCH completes byte for byte.
        while len(got) < size + 3:
            chunk = fetcher.sock.recv(1 << 20)
            self.assertTrue(chunk, 'FETCH cut short at %d of %d bytes' % (len(got), size))
            got += chunk
        self.assertEqual(sha256(bytes(got[:size])), sha256(body))
        fetcher.buf = bytes(got[size:])
        self.assertTrue(fetcher.until_tagged(b'f')[-1].startswith(b'f OK'))
        fetcher.close()

        # The IDLE hears about a new message, and ends normally.
        w = self.login('bob')
        w.append('INBOX', None, None, b'Subject: after reload\r\n\r\nhi\r\n')
        w.logout()
        idler.sock.settimeout(15)
        line = idler.readline()
        while b'EXISTS' not in line:
            line = idler.readline()
        idler.send(b'DONE\r\n')
        while not idler.readline().startswith(b'i1 '):
            pass
        self.assertEqual(idler.noop()[0], 'OK')
        idler.logout()

        # Sessions on both backends kept running, also the removed one's.
        for s in held.values():
            self.assertEqual(s.noop()[0], 'OK')
            s.logout()

        # New certificate for new connections.
        self.assertIn(b'second-cert', server_cert_der(self.u.tls_port))

        # Users without a seat now all land on backend1.
        seated = {}
        for user in ('user%02d' % i for i in range(1, 41)):
            if len(seated) == 12:
                break
            if not self._seated(user):
                s = self.login(user)
                seated[user] = harness.backend_name(s)
                s.logout()
        self.assertEqual(len(seated), 12)
        self.assertEqual(set(seated.values()), {'backend1'}, seated)

        # An invalid file is refused everywhere; the old configuration serves.
        rewrite_conf(self.u, append='[limits]\nmax_line = a-lot\n')
        # The master checks the file first and refuses it; nobody else reloads.
        reloads = self.u.log().count('event=reload ')
        self.reload('event=reload_refused', 1)
        time.sleep(0.5)
        self.assertEqual(self.u.log().count('event=reload '), reloads)
        self.assertIn('max_line', self.u.log().split('event=reload_refused')[-1].split('\n')[0])
        s = self.login('carol')
        self.assertEqual(harness.backend_name(s), 'backend1')
        self.assertEqual(s.select('INBOX')[0], 'OK')
        s.logout()

    def _seated(self, user):
        out = self.u.admin('who ' + user)
        return '"seat":null' not in out


class DrainTest(unittest.TestCase):
    """SIGTERM: no new connections; clients before login hear BYE at once;
    relayed sessions run on for the drain time, then hear BYE."""

    def setUp(self):
        self.env = harness.Env()
        self.b1 = self.env.dovecot('backend1')

    def tearDown(self):
        self.env.close()   # raises with the log lines of any crash

    def test_sessions_run_for_the_drain_time_then_bye(self):
        u = self.env.usher(workers=1, extra={'usher': {'drain_time': '3s'}})
        m = imaplib.IMAP4('127.0.0.1', u.port)
        m.login('alice', USERS['alice'])
        m.select('INBOX')
        waiting = RawClient(u.port)   # greeted, never logs in
        t0 = time.time()
        u.proc.send_signal(signal.SIGTERM)
        self.assertTrue(waiting.closed(timeout=2))
        self.assertIn(b'* BYE [UNAVAILABLE]', waiting.buf)
        waiting.close()
        time.sleep(0.3)
        with self.assertRaises(ConnectionRefusedError):   # nobody listens any more
            socket.create_connection(('127.0.0.1', u.port), timeout=2)
        time.sleep(1)
        self.assertEqual(m.noop()[0], 'OK')          # still relayed, 1 s into the drain
        self.assertEqual(m.select('INBOX')[0], 'OK')
        m.sock.settimeout(6)
        bye = m.readline()
        waited = time.time() - t0
        self.assertTrue(bye.startswith(b'* BYE [UNAVAILABLE]'), bye)
        self.assertGreaterEqual(waited, 2.8)
        self.assertLess(waited, 5.5)
        self.assertEqual(u.proc.wait(10), 0)
        u.proc = None
        u.logf.close()

    def test_stop_ends_early_when_the_last_session_leaves(self):
        u = self.env.usher(workers=2, extra={'usher': {'drain_time': '60s'}})
        m = imaplib.IMAP4('127.0.0.1', u.port)
        m.login('bob', USERS['bob'])
        t0 = time.time()
        u.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        self.assertEqual(m.noop()[0], 'OK')
        threading.Timer(0.5, m.logout).start()
        self.assertEqual(u.proc.wait(10), 0)
        self.assertLess(time.time() - t0, 4)
        # sessiond stopped last, after the workers had reported their sessions.
        exits = re.findall(r'event=child_exit role=(\w+) id=\d+ status=(\d+)', u.log())
        self.assertEqual(exits, [('worker', '0'), ('worker', '0'), ('sessiond', '0')])
        u.proc = None
        u.logf.close()


def policies(u):
    """{role: [scheduling policy of each such process]} under usher's master
    (/proc/PID/stat field 41: 0 normal, 3 batch)."""
    out = {'master': [], 'sessiond': [], 'worker': []}
    for pid in [u.proc.pid] + [int(p) for p in subprocess.run(
            ['pgrep', '-P', str(u.proc.pid)], capture_output=True, text=True).stdout.split()]:
        with open('/proc/%d/cmdline' % pid) as f:
            argv = f.read().split('\0')
        role = argv[argv.index('--role') + 1] if '--role' in argv else 'master'
        with open('/proc/%d/stat' % pid) as f:
            out[role].append(int(f.read().rsplit(')', 1)[1].split()[38]))
    return out


class SchedulingTest(unittest.TestCase):
    """Workers run as SCHED_BATCH by default; the master and sessiond stay
    normal; worker_scheduling = normal, given at a reload, takes effect."""

    def test_batch_workers_and_a_reload_to_normal(self):
        env = harness.Env()
        env.dovecot('backend1')
        u = env.usher(workers=2)
        try:
            self.assertEqual(policies(u), {'master': [0], 'sessiond': [0], 'worker': [3, 3]})
            m = imaplib.IMAP4('127.0.0.1', u.port)
            self.assertEqual(m.login('carol', USERS['carol'])[0], 'OK')
            with open(u.conf) as f:
                text = f.read()
            with open(u.conf + '.new', 'w') as f:
                f.write(text.replace('[usher]\n', '[usher]\nworker_scheduling = normal\n', 1))
            os.replace(u.conf + '.new', u.conf)
            before = u.log().count('event=reload ')
            u.proc.send_signal(signal.SIGHUP)
            wait_log_count(u, 'event=reload ', before + 2 + u.workers)
            self.assertEqual(policies(u)['worker'], [0, 0])
            self.assertEqual(m.select('INBOX')[0], 'OK')   # the session went on
            m.logout()
        finally:
            rc = u.stop()
            env.close()   # raises with the log lines of any crash
        self.assertEqual(rc, 0)


if __name__ == '__main__':
    unittest.main()
