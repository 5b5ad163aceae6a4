"""usher end to end in front of two real Dovecot backends."""
import base64
import concurrent.futures
import imaplib
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import unittest

import harness
from harness import USERS, RawClient, backend_name, sha256


def plain_b64(user, password):
    return base64.b64encode(b'\0' + user.encode() + b'\0' + password.encode())


class ProxyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = harness.Env()
        cls.b1 = cls.env.dovecot('backend1')
        cls.b2 = cls.env.dovecot('backend2')
        cls.u = cls.env.usher()

    @classmethod
    def tearDownClass(cls):
        log = cls.u.log()
        rc = cls.u.stop()
        cls.env.close()   # raises with the log lines of any crash
        assert rc == 0, 'usher exited with %r' % rc
        for pw in USERS.values():
            assert pw not in log, 'a password appears in the log'

    def imap(self):
        return imaplib.IMAP4('127.0.0.1', self.u.port, timeout=30)

    def login(self, user):
        m = self.imap()
        typ, data = m.login(user, USERS[user])
        self.assertEqual(typ, 'OK')
        return m

    # ---- pre-auth dialogue ------------------------------------------------

    def test_greeting_and_capability(self):
        c = RawClient(self.u.port)
        for cap in (b'IMAP4rev1', b'LITERAL+', b'SASL-IR', b'ID', b'STARTTLS', b'AUTH=PLAIN'):
            self.assertIn(cap, c.greeting)
        c.send(b'a1 capability\r\n')
        lines = c.until_tagged(b'a1')
        self.assertTrue(lines[0].startswith(b'* CAPABILITY IMAP4rev1'))
        self.assertIn(b'STARTTLS', lines[0])
        self.assertTrue(lines[-1].startswith(b'a1 OK'))
        c.send(b'a2 NOOP\r\na3 ID ("name" "test" "version" NIL)\r\n')
        self.assertTrue(c.until_tagged(b'a2')[-1].startswith(b'a2 OK'))
        lines = c.until_tagged(b'a3')
        self.assertEqual(lines[0], b'* ID ("name" "usher")')
        c.send(b'a4 LOGOUT\r\n')
        lines = c.until_tagged(b'a4')
        self.assertTrue(lines[0].startswith(b'* BYE'))
        self.assertTrue(lines[-1].startswith(b'a4 OK'))
        self.assertTrue(c.closed())

    def test_unknown_command_and_bad_command_limit(self):
        c = RawClient(self.u.port)
        c.send(b'x1 SELECT INBOX\r\n')
        self.assertTrue(c.line().startswith(b'x1 BAD'))
        c.send(b'x2 FROBNICATE\r\n')
        self.assertTrue(c.line().startswith(b'x2 BAD'))
        # One write: usher closes after the limit, and further writes would
        # only race its close (EPIPE).
        c.send(b''.join(b'x%d BOGUS\r\n' % i for i in range(3, 20)))
        lines = []
        while not c.closed(timeout=5) or c.buf:
            if not c.buf:
                break
            lines.append(c.line())
        self.assertTrue(any(l.startswith(b'* BYE') for l in lines), lines)

    def test_literals(self):
        c = RawClient(self.u.port)
        c.send(b'l1 LOGIN {5}\r\n')
        self.assertTrue(c.line().startswith(b'+'))
        c.send(b'alice {8+}\r\nalice-pw\r\n')
        line = c.until_tagged(b'l1')[-1]
        self.assertTrue(line.startswith(b'l1 OK [CAPABILITY '), line)
        c.close()

    def test_quoted_with_escapes_and_wrong_password(self):
        c = RawClient(self.u.port)
        c.send(b'q1 LOGIN "alice" "wrong\\"pw"\r\n')
        line = c.until_tagged(b'q1')[-1]
        self.assertEqual(line, b'q1 NO [AUTHENTICATIONFAILED] Authentication failed.')
        c.close()

    # ---- logins -------------------------------------------------------------

    def test_login_plaintext_carries_backend_capabilities(self):
        m = self.imap()
        typ, data = m.login('alice', USERS['alice'])
        self.assertEqual(typ, 'OK')
        self.assertIn(b'[CAPABILITY IMAP4rev1', data[0])
        self.assertIn(b'IDLE', data[0])           # a post-login capability of Dovecot
        self.assertIn(backend_name(m), ('backend1', 'backend2'))
        m.logout()

    def test_authenticate_plain_sasl_ir(self):
        c = RawClient(self.u.port)
        c.send(b'p1 AUTHENTICATE PLAIN ' + plain_b64('bob', USERS['bob']) + b'\r\n')
        line = c.until_tagged(b'p1')[-1]
        self.assertTrue(line.startswith(b'p1 OK [CAPABILITY '), line)
        c.close()

    def test_authenticate_plain_continuation_and_cancel(self):
        c = RawClient(self.u.port)
        c.send(b'p1 AUTHENTICATE PLAIN\r\n')
        self.assertTrue(c.line().startswith(b'+'))
        c.send(b'*\r\n')
        self.assertTrue(c.line().startswith(b'p1 BAD'))
        c.send(b'p2 AUTHENTICATE plain\r\n')
        self.assertTrue(c.line().startswith(b'+'))
        c.send(plain_b64('carol', USERS['carol']) + b'\r\n')
        line = c.until_tagged(b'p2')[-1]
        self.assertTrue(line.startswith(b'p2 OK [CAPABILITY '), line)
        c.close()

    def test_starttls_login(self):
        m = self.imap()
        m.starttls(self.env.tls_context())
        self.assertEqual(m.login('alice', USERS['alice'])[0], 'OK')
        self.assertEqual(m.select('INBOX')[0], 'OK')
        m.logout()

    def test_implicit_tls_login_and_authenticate(self):
        m = imaplib.IMAP4_SSL('127.0.0.1', self.u.tls_port, ssl_context=self.env.tls_context())
        typ, _ = m.authenticate('PLAIN', lambda _: b'\0bob\0' + USERS['bob'].encode())
        self.assertEqual(typ, 'OK')
        self.assertEqual(m.select('INBOX')[0], 'OK')
        m.logout()

    def test_tls_session_resumption_across_workers(self):
        """The workers share ticket keys: a reconnection resumes its TLS
        session whichever of the two workers accepts it."""
        ctx = self.env.tls_context()
        session, reused = None, []
        for _ in range(12):
            raw = socket.create_connection(('127.0.0.1', self.u.tls_port), timeout=10)
            s = ctx.wrap_socket(raw, server_hostname='localhost', session=session)
            self.assertTrue(s.recv(1024).startswith(b'* OK'))   # the ticket arrives with it
            reused.append(s.session_reused)
            session = s.session
            s.close()
        self.assertFalse(reused[0])
        self.assertTrue(all(reused[1:]), reused)

    def test_wrong_password_and_unknown_user_get_the_same_answer(self):
        answers = []
        for user, pw in (('alice', 'not-her-password'), ('nosuchuser', 'whatever')):
            c = RawClient(self.u.port)
            t0 = time.time()
            c.send(b'w LOGIN ' + user.encode() + b' ' + pw.encode() + b'\r\n')
            answers.append(c.until_tagged(b'w')[-1])
            self.assertGreaterEqual(time.time() - t0, 0.18)   # failure_delay = 200ms
            c.close()
        self.assertEqual(answers[0], answers[1])
        self.assertEqual(answers[0], b'w NO [AUTHENTICATIONFAILED] Authentication failed.')

    # ---- data path --------------------------------------------------------

    def test_append_and_fetch_5mib_byte_exact(self):
        text = harness.random_bytes(5 * 1024 * 1024 // 2, seed=5).hex().encode()   # 5 MiB
        body = (b'From: test@example.org\r\nSubject: big\r\n\r\n' +
                b'\r\n'.join(text[i:i + 998] for i in range(0, len(text), 998)) + b'\r\n')
        m = self.login('user40')
        m.create('Big')
        typ, data = m.append('Big', None, None, body)
        self.assertEqual(typ, 'OK', data)
        typ, data = m.select('Big')
        n = data[0].decode()
        typ, data = m.fetch(n, '(BODY.PEEK[])')
        self.assertEqual(typ, 'OK')
        got = data[0][1]
        self.assertEqual(len(got), len(body))
        self.assertEqual(sha256(got), sha256(body))
        m.logout()

    def test_idle_receives_exists(self):
        watcher = self.login('user39')
        watcher.select('INBOX')
        tag = watcher._new_tag()
        watcher.send(tag + b' IDLE\r\n')
        self.assertTrue(watcher.readline().startswith(b'+'))
        writer = self.login('user39')
        writer.append('INBOX', None, None, b'Subject: ping\r\n\r\nhello\r\n')
        writer.logout()
        watcher.sock.settimeout(15)
        line = watcher.readline()
        while b'EXISTS' not in line:
            line = watcher.readline()
        self.assertRegex(line, rb'^\* \d+ EXISTS')
        watcher.send(b'DONE\r\n')
        while not watcher.readline().startswith(tag):
            pass
        watcher.logout()

    def test_logout_ends_cleanly_and_leaves_the_backend_no_time_wait(self):
        """After LOGOUT the backend closes first. usher has then read all it
        sent and resets its own side: the backend keeps no TIME_WAIT per
        logout (a reconnect storm would leave thousands), while the client
        gets every byte and a plain end of stream."""
        ports = {self.b1.port, self.b2.port}
        before = {s[0] for s in harness.tcp_sockets('01') if s[1] in ports}
        c = RawClient(self.u.port)
        c.send(b'a1 LOGIN user11 "%s"\r\n' % USERS['user11'].encode())
        self.assertTrue(c.until_tagged(b'a1')[-1].startswith(b'a1 OK'))
        ours = [s for s in harness.tcp_sockets('01') if s[1] in ports and s[0] not in before]
        self.assertEqual(len(ours), 1, ours)
        proxy_port, backend_port = ours[0][0], ours[0][1]
        c.send(b'a2 LOGOUT\r\n')
        lines = c.until_tagged(b'a2')
        self.assertTrue(lines[0].startswith(b'* BYE'), lines)
        self.assertTrue(lines[-1].startswith(b'a2 OK'), lines)
        c.sock.settimeout(5)
        self.assertEqual(c.sock.recv(100), b'')   # an end of stream, not a reset
        c.close()
        deadline = time.time() + 5
        while time.time() < deadline and any(s[0] == proxy_port for s in harness.tcp_sockets()):
            time.sleep(0.05)
        left = [s for s in harness.tcp_sockets() if s[:2] == (backend_port, proxy_port)]
        self.assertEqual(left, [], 'the backend still holds the connection')

    # ---- seating ----------------------------------------------------------------

    def test_sessions_of_one_user_share_a_backend(self):
        def session(_):
            m = self.login('user38')
            name = backend_name(m)
            m.select('INBOX')
            time.sleep(0.2)
            m.logout()
            return name
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            first = list(pool.map(session, range(10)))     # 10 at once
        rest = [session(i) for i in range(10)]              # then 10 one by one
        self.assertEqual(len(set(first + rest)), 1, first + rest)
        who = json.loads(self.u.admin('who user38'))
        self.assertEqual(who['seat'], first[0])

    def test_users_spread_over_both_backends(self):
        seen = {}
        for i in range(1, 31):
            m = self.login('user%02d' % i)
            seen['user%02d' % i] = backend_name(m)
            m.logout()
        counts = {b: list(seen.values()).count(b) for b in ('backend1', 'backend2')}
        self.assertGreaterEqual(counts['backend1'], 5, counts)
        self.assertGreaterEqual(counts['backend2'], 5, counts)
        # The same users land on the same backends again (their seats).
        for user in list(seen)[:5]:
            m = self.login(user)
            self.assertEqual(backend_name(m), seen[user])
            m.logout()

    def test_300_concurrent_sessions(self):
        def session(i):
            user = 'user%02d' % (i % 40 + 1)
            m = self.login(user)
            ok = m.select('INBOX')[0] == 'OK'
            m.logout()
            return ok
        with concurrent.futures.ThreadPoolExecutor(300) as pool:
            results = list(pool.map(session, range(300)))
        self.assertEqual(results.count(True), 300)

    # ---- hostile input ------------------------------------------------------------

    def test_garbage_and_long_line_then_next_client_is_served(self):
        c = RawClient(self.u.port)
        c.send(harness.random_bytes(4096, seed=7).replace(b'\n', b'.') + b'\r\n')
        self.assertIn(b'BAD', c.line())
        c.close()
        c = RawClient(self.u.port)
        c.send(b'big ' + b'A' * (100 * 1024) + b'\r\n')
        line = c.line()
        self.assertTrue(line.startswith(b'big BAD [TOOBIG]'), line)
        c.send(b'n1 NOOP\r\n')
        self.assertTrue(c.until_tagged(b'n1')[-1].startswith(b'n1 OK'))
        c.close()
        m = self.login('carol')
        self.assertEqual(m.select('INBOX')[0], 'OK')
        m.logout()

    def test_starttls_command_injection_is_discarded(self):
        c = RawClient(self.u.port)
        c.send(b's1 STARTTLS\r\ns2 LOGIN alice alice-pw\r\n')
        self.assertTrue(c.line().startswith(b's1 OK'))
        tls = self.env.tls_context().wrap_socket(c.sock, server_hostname='localhost')
        tls.settimeout(1.5)
        try:
            data = tls.recv(4096)
        except socket.timeout:
            data = b''
        self.assertNotIn(b's2 ', data)          # the injected LOGIN never ran
        tls.sendall(b's3 NOOP\r\n')
        tls.settimeout(5)
        self.assertTrue(tls.recv(4096).startswith(b's3 OK'))
        tls.close()

    def test_config_check(self):
        ok = subprocess.run([harness.USHER_BIN, '-t', '-c', self.u.conf], capture_output=True)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        broken = os.path.join(self.env.dir, 'broken.conf')
        with open(broken, 'w') as f:
            f.write('[usher]\nworkers = 2\n[limits]\nmax_line = huge\n')
        bad = subprocess.run([harness.USHER_BIN, '-t', '-c', broken], capture_output=True, text=True)
        self.assertEqual(bad.returncode, 1)
        self.assertIn(broken + ':4:', bad.stderr)
        self.assertIn('max_line', bad.stderr)


class LoginDisabledTest(unittest.TestCase):
    """No TLS and not a trusted network: no plaintext passwords."""

    @classmethod
    def setUpClass(cls):
        cls.env = harness.Env()
        b = cls.env.dovecot('backend1')
        cls.u = cls.env.usher(backends=[b], workers=1, extra={
            'limits': {'trusted_networks': '10.9.9.0/24', 'plaintext_auth': 'no',
                       'max_connections_per_ip': 0}})

    @classmethod
    def tearDownClass(cls):
        cls.env.close()   # raises with the log lines of any crash

    def test_logindisabled_until_starttls(self):
        c = RawClient(self.u.port)
        self.assertIn(b'LOGINDISABLED', c.greeting)
        self.assertNotIn(b'AUTH=PLAIN', c.greeting)
        c.send(b'a LOGIN alice alice-pw\r\n')
        self.assertTrue(c.line().startswith(b'a NO [PRIVACYREQUIRED]'))
        c.close()
        m = imaplib.IMAP4('127.0.0.1', self.u.port)
        m.starttls(self.env.tls_context())
        typ, data = m.capability()
        self.assertIn(b'AUTH=PLAIN', data[0])
        self.assertEqual(m.login('alice', USERS['alice'])[0], 'OK')
        m.logout()

    def assert_refused_for_privacy(self, c, command):
        """command is answered NO [PRIVACYREQUIRED] at once, with no "+"
        before it, and the connection still parses commands after it."""
        c.send(command)
        first = c.line()
        self.assertTrue(first.startswith(b'a NO [PRIVACYREQUIRED]'), first)
        c.send(b'b CAPABILITY\r\n')
        lines = c.until_tagged(b'b')
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(lines[0].startswith(b'* CAPABILITY IMAP4rev1'), lines)
        self.assertTrue(lines[1].startswith(b'b OK'), lines)

    def test_no_continuation_for_a_password_in_the_clear(self):
        pw = USERS['alice'].encode()
        for command in (b'a LOGIN {5}\r\n',                      # the name, then the password
                        b'a LOGIN alice {%d}\r\n' % len(pw),      # the password
                        b'a AUTHENTICATE PLAIN {24}\r\n',         # SASL-IR as a literal
                        b'a AUTHENTICATE PLAIN\r\n',              # the response would follow "+"
                        b'a AUTHENTICATE PLAIN ' + plain_b64('alice', USERS['alice']) + b'\r\n'):
            c = RawClient(self.u.port)
            self.assert_refused_for_privacy(c, command)
            c.close()
        c = RawClient(self.u.port)   # no such mechanism: no "+" either
        c.send(b'a AUTHENTICATE LOGIN\r\n')
        self.assertTrue(c.line().startswith(b'a NO [CANNOT]'))
        c.close()

    def test_uninvited_literal_is_skipped_not_run(self):
        """A LITERAL+ client sends its literals without waiting: they are
        skipped with the rest of the refused command, never run, even
        when they look like commands."""
        c = RawClient(self.u.port)
        self.assert_refused_for_privacy(
            c, b'a LOGIN {10+}\r\nx LOGOUT\r\n {8+}\r\ny NOOP\r\n\r\n')
        self.assert_refused_for_privacy(c, b'a LOGIN alice {8+}\r\nalice-pw\r\n')
        c.close()
        self.assertNotIn('alice-pw', self.u.log())

    def test_literal_login_over_starttls(self):
        c = RawClient(self.u.port)
        c.send(b's STARTTLS\r\n')
        self.assertTrue(c.until_tagged(b's')[-1].startswith(b's OK'))
        c.sock = self.env.tls_context().wrap_socket(c.sock, server_hostname='localhost')
        pw = USERS['alice'].encode()
        c.send(b'a LOGIN {5}\r\n')
        self.assertTrue(c.line().startswith(b'+ '))
        c.send(b'alice {%d}\r\n' % len(pw))
        self.assertTrue(c.line().startswith(b'+ '))
        c.send(pw + b'\r\n')
        self.assertTrue(c.until_tagged(b'a')[-1].startswith(b'a OK'))
        c.send(b'b LOGOUT\r\n')
        self.assertTrue(c.until_tagged(b'b')[-1].startswith(b'b OK'))
        c.close()


class BackendDownTest(unittest.TestCase):
    """A stopped backend: its users get a new seat or a clean NO, quickly;
    the other backend's users are unaffected."""

    def setUp(self):
        self.env = harness.Env()
        self.b1 = self.env.dovecot('backend1')
        self.b2 = self.env.dovecot('backend2')
        self.u = self.env.usher(extra={'routing': {'seat_expire': '1s', 'backend_retry': '30s'}})

    def tearDown(self):
        self.env.close()   # raises with the log lines of any crash

    def test_stopped_backend(self):
        where = {}
        for i in range(1, 21):
            user = 'user%02d' % i
            m = imaplib.IMAP4('127.0.0.1', self.u.port)
            m.login(user, USERS[user])
            where[user] = backend_name(m)
            m.logout()
        on1 = [u for u, b in where.items() if b == 'backend1']
        on2 = [u for u, b in where.items() if b == 'backend2']
        self.assertTrue(on1 and on2, where)
        # A session on backend2 that must survive backend1's death.
        keeper = imaplib.IMAP4('127.0.0.1', self.u.port)
        keeper.login(on2[0], USERS[on2[0]])
        keeper.select('INBOX')
        self.b1.stop()
        time.sleep(1.5)   # past seat_expire: the seats of backend1's users may move
        for user in on1:
            t0 = time.time()
            m = imaplib.IMAP4('127.0.0.1', self.u.port, timeout=20)
            try:
                typ, _ = m.login(user, USERS[user])
                self.assertEqual(backend_name(m), 'backend2')
                m.logout()
            except imaplib.IMAP4.error as e:
                self.assertIn('UNAVAILABLE', str(e))
            self.assertLess(time.time() - t0, 8)
        for user in on2:
            m = imaplib.IMAP4('127.0.0.1', self.u.port)
            m.login(user, USERS[user])
            self.assertEqual(backend_name(m), 'backend2')
            m.logout()
        self.assertEqual(keeper.noop()[0], 'OK')
        keeper.logout()
        self.assertIn('event=backend_down', self.u.log())


if __name__ == '__main__':
    unittest.main()


class PrivilegeTest(unittest.TestCase):
    """[usher] user: the workers run as that user after binding; sessiond
    keeps its privileges and admin.sock stays root's alone."""

    def setUp(self):
        self.env = harness.Env()
        self.env.dovecot('backend1')
        self.u = self.env.usher(extra={'usher': {'user': 'nobody'}})

    def tearDown(self):
        rc = self.u.stop()
        self.env.close()   # raises with the log lines of any crash
        self.assertEqual(rc, 0)

    def uids(self, role):
        found = []
        for pid in os.listdir('/proc'):
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    cmd = f.read().split(b'\0')
                if b'--role' in cmd and role.encode() in cmd and self.u.conf.encode() in cmd:
                    with open('/proc/%s/status' % pid) as f:
                        uid = [l for l in f if l.startswith('Uid:')][0].split()[1:]
                    found.append(tuple(int(x) for x in uid))
            except OSError:
                pass
        return found

    def test_workers_run_unprivileged(self):
        import pwd
        nobody = pwd.getpwnam('nobody').pw_uid
        workers = self.uids('worker')
        self.assertEqual(len(workers), 2)
        for real, effective, saved, fs in workers:
            self.assertEqual({real, effective, saved, fs}, {nobody})
        self.assertEqual(self.uids('sessiond')[0][1], 0)
        m = imaplib.IMAP4('127.0.0.1', self.u.port)
        self.assertEqual(m.login('alice', USERS['alice'])[0], 'OK')
        m.logout()
        self.assertEqual(os.stat(self.u.admin_path).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(self.u.admin_path).st_uid, 0)


class SessionLimitTest(unittest.TestCase):
    """max_sessions_per_user and max_sessions_per_user_ip: the session past
    the limit gets NO [LIMIT]; other users are served meanwhile."""

    def setUp(self):
        self.env = harness.Env()
        self.env.dovecot('backend1')
        self.u = self.env.usher(extra={'limits': {'max_sessions_per_user': 4,
                                                  'max_sessions_per_user_ip': 3}})

    def tearDown(self):
        rc = self.u.stop()
        self.env.close()   # raises with the log lines of any crash
        self.assertEqual(rc, 0)

    def login(self, user, source='127.0.0.1'):
        class FromAddress(imaplib.IMAP4):
            def _create_socket(self, timeout):
                return socket.create_connection((self.host, self.port), timeout,
                                                source_address=(source, 0))
        m = FromAddress('127.0.0.1', self.u.port, timeout=10)
        try:
            m.login(user, USERS[user])
            return m, None
        except imaplib.IMAP4.error as e:
            return m, str(e)

    def test_limits(self):
        held = [self.login('carol') for _ in range(3)]
        self.assertEqual([err for _, err in held], [None] * 3)
        m, err = self.login('carol')   # the 4th from the same address
        self.assertIsNotNone(err)
        self.assertIn('[LIMIT]', err)
        other, err = self.login('bob')   # others are unaffected
        self.assertIsNone(err)
        other.logout()
        fourth, err = self.login('carol', source='127.0.0.2')   # another address: 4 of 4
        self.assertIsNone(err)
        m, err = self.login('carol', source='127.0.0.3')        # the 5th: per-user limit
        self.assertIn('[LIMIT]', err or '')
        fourth.logout()
        held[0][0].logout()              # one closes: room again
        deadline = time.time() + 5
        while True:
            m, err = self.login('carol')
            if err is None or time.time() > deadline:
                break
            time.sleep(0.1)
        self.assertIsNone(err)
        m.logout()
        for m, _ in held[1:]:
            m.logout()
        self.assertIn('result=session_limit', self.u.log())
