"""LDAP authentication and the auth cache shared through Redis, against a
real slapd and a real redis-server, with real Dovecot backends behind usher."""
import concurrent.futures
import imaplib
import json
import os
import signal
import socket
import time
import unittest

import harness
from harness import RawClient, backend_name

PEOPLE = 'ou=people,dc=example,dc=org'
LDAP_USERS = {'alice': 'alice-ldap', 'bob': 'bob-ldap', 'carol': 'carol-ldap',
              'dave': 'dave-ldap', 'erin': 'erin-ldap', 'frank': 'frank-ldap',
              'grace': 'grace-ldap', 'heidi': 'heidi-ldap'}
LDAP_USERS.update({'load%02d' % i: 'load-pw-%02d' % i for i in range(1, 31)})


def ldap_sections(slapd, redis, secret, template=False, **ldap_extra):
    ldap = {'uri': slapd.uri, 'login_attribute': 'uid', 'backend_attribute': 'mailHost',
            'timeout': '2s', 'reconnect_max': '500ms', 'pool_size': 2}
    if template:
        ldap['dn_template'] = 'uid=%%u,%s' % PEOPLE
    else:
        ldap.update({'base': PEOPLE, 'filter': '(&(objectClass=inetOrgPerson)(|(uid=%u)(mail=%u)))',
                     'bind_dn': slapd.SERVICE, 'bind_password_file': slapd.pw_file})
    ldap.update(ldap_extra)
    sections = {'ldap': ldap, 'cache': {'secret_file': secret}}
    if redis:
        sections['redis'] = {'address': '127.0.0.1:%d' % redis.port, 'timeout': '200ms'}
    return sections


class LdapCacheTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        env = cls.env = harness.Env()
        cls.b1 = env.dovecot('backend1', trust_proxy=True)
        cls.b2 = env.dovecot('backend2', trust_proxy=True)
        cls.slapd = env.slapd()
        cls.slapd.pw_file = env.secret_file('ldap.pw', cls.slapd.SERVICE_PW)
        for uid, pw in LDAP_USERS.items():
            cls.slapd.add_user(uid, pw, mail='bobby' if uid == 'bob' else None,
                               pinned={'carol': 'backend2', 'dave': 'backend1'}.get(uid))
        cls.redis = env.redis()
        cls.secret = env.secret_file('cluster.secret', 'a-cluster-secret-of-enough-length')
        sections = ldap_sections(cls.slapd, cls.redis, cls.secret)
        sections['throttle'] = {'user_failures': 4, 'ip_failures': 1000, 'ban_time': '1m'}
        cls.u1 = env.usher(users_file='', extra=sections)
        cls.u2 = env.usher(users_file='', extra=sections)

    @classmethod
    def tearDownClass(cls):
        cls.env.stop_all(secrets=LDAP_USERS.values())

    # ---- helpers ------------------------------------------------------------

    def login(self, u, user, password):
        """imaplib login through usher u: (typ, text, imap or None)."""
        m = imaplib.IMAP4('127.0.0.1', u.port, timeout=30)
        try:
            typ, data = m.login(user, password)
            return typ, data[0].decode(), m
        except imaplib.IMAP4.error as e:
            m.shutdown()
            return 'NO', str(e), None

    def assert_ok(self, u, user, password):
        typ, text, m = self.login(u, user, password)
        self.assertEqual(typ, 'OK', '%s: %s' % (user, text))
        return m

    def assert_no(self, u, user, password, code):
        typ, text, _ = self.login(u, user, password)
        self.assertEqual(typ, 'NO', user)
        self.assertIn('[%s]' % code, text)

    def wait_login(self, u, user, timeout=10):
        """Logs in as soon as LDAP is back (reconnects back off)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            typ, _, m = self.login(u, user, LDAP_USERS[user])
            if typ == 'OK':
                m.logout()
                return
            time.sleep(0.2)
        self.fail('LDAP did not come back for %s' % user)

    def stats(self, u):
        return json.loads(u.admin('auth stats'))

    # ---- cases ----------------------------------------------------------------

    def test_search_then_bind(self):
        m = self.assert_ok(self.u1, 'erin', LDAP_USERS['erin'])
        self.assertIn(backend_name(m), ('backend1', 'backend2'))
        m.logout()
        self.assert_no(self.u1, 'erin', 'wrong', 'AUTHENTICATIONFAILED')
        self.assert_no(self.u1, 'nosuchuser', 'whatever', 'AUTHENTICATIONFAILED')
        self.assert_no(self.u1, 'erin', '', 'AUTHENTICATIONFAILED')   # no anonymous bind
        # The service account searched; erin's own DN bound.
        self.assertTrue(self.slapd.binds('uid=erin,' + PEOPLE))

    def test_dn_template_bind(self):
        sections = ldap_sections(self.slapd, None, self.secret, template=True)
        u = self.env.usher(users_file='', extra=sections, workers=1)
        try:
            m = self.assert_ok(u, 'frank', LDAP_USERS['frank'])
            m.logout()
            self.assert_no(u, 'frank', 'not-it', 'AUTHENTICATIONFAILED')
            self.assert_no(u, 'frank,ou=x', LDAP_USERS['frank'], 'AUTHENTICATIONFAILED')
            m = self.assert_ok(u, 'carol', LDAP_USERS['carol'])   # attributes read after bind
            self.assertEqual(backend_name(m), 'backend2')
            m.logout()
        finally:
            self.assertEqual(u.stop(), 0)

    def test_ldaps_and_starttls_verify_the_server(self):
        cases = ((self.slapd.tls_uri, 'no', self.env.cert, True),
                 (self.slapd.uri, 'yes', self.env.cert, True),
                 (self.slapd.tls_uri, 'no', '/etc/ssl/certs/ca-certificates.crt', False))
        for uri, starttls, ca, works in cases:
            sections = ldap_sections(self.slapd, None, self.secret, uri=uri, starttls=starttls,
                                     ca_file=ca)
            u = self.env.usher(users_file='', extra=sections, workers=1)
            try:
                if works:
                    self.assert_ok(u, 'grace', LDAP_USERS['grace']).logout()
                else:   # a certificate from an unknown CA: no LDAP, no login
                    self.assert_no(u, 'grace', LDAP_USERS['grace'], 'UNAVAILABLE')
            finally:
                self.assertEqual(u.stop(), 0)
        log = self.slapd.log_text()
        self.assertTrue(' ssf=128' in log or ' ssf=256' in log, 'slapd saw no TLS bind')

    def test_filter_syntax_in_user_names(self):
        for name in ('*', 'a*', '*)(uid=*', 'alice)(|(uid=*', 'bob\\\\', '(', ')'):
            c = RawClient(self.u1.port)
            quoted = name.replace('\\\\', '\\\\\\\\')
            c.send(b'f1 LOGIN "%s" "x"\r\n' % quoted.encode())
            line = c.until_tagged(b'f1')[-1]
            self.assertTrue(line.startswith(b'f1 NO [AUTHENTICATIONFAILED]'), (name, line))
            c.close()
        # A NUL in a literal user name: refused, and nothing breaks.
        c = RawClient(self.u1.port)
        c.send(b'f2 LOGIN {6+}\r\nal\x00ice "x"\r\n')
        line = c.until_tagged(b'f2')[-1]
        self.assertTrue(line.startswith(b'f2 BAD') or line.startswith(b'f2 NO'), line)
        c.close()
        # slapd saw the metacharacters escaped, never as filter syntax.
        log = self.slapd.log_text().lower()   # slapd prints the hex in capitals
        self.assertTrue('(uid=\\2a)' in log, 'no escaped * in the searches')
        self.assertTrue('(uid=\\2a\\29\\28uid=\\2a)' in log, 'no escaped injection attempt')
        self.assertFalse('(uid=*)' in log, 'a raw * reached a filter')
        m = self.assert_ok(self.u1, 'grace', LDAP_USERS['grace'])
        m.logout()

    def test_alias_shares_the_canonical_seat(self):
        m1 = self.assert_ok(self.u1, 'bob', LDAP_USERS['bob'])
        m2 = self.assert_ok(self.u2, 'bobby', LDAP_USERS['bob'])   # mail alias, other proxy
        m3 = self.assert_ok(self.u1, 'bobby', LDAP_USERS['bob'])
        self.assertEqual(backend_name(m1), backend_name(m3))
        who = json.loads(self.u1.admin('who bob'))
        self.assertEqual(len(who['sessions']), 2)   # both of u1's sessions, as bob
        self.assertEqual(json.loads(self.u2.admin('who bob'))['sessions'][0]['user'], 'bob')
        for m in (m1, m2, m3):
            m.logout()

    def test_pinned_backend(self):
        for user, pinned in (('carol', 'backend2'), ('dave', 'backend1')):
            m = self.assert_ok(self.u1, user, LDAP_USERS[user])
            self.assertEqual(backend_name(m), pinned)
            m.logout()

    def test_cache_is_shared_through_redis(self):
        before = self.stats(self.u2)
        binds_before = len(self.slapd.binds('uid=heidi,'))
        self.assert_ok(self.u1, 'heidi', LDAP_USERS['heidi']).logout()
        self.assertEqual(len(self.slapd.binds('uid=heidi,')), binds_before + 1)
        self.assert_ok(self.u2, 'heidi', LDAP_USERS['heidi']).logout()
        after = self.stats(self.u2)
        self.assertEqual(after['cache']['redis_hits'], before['cache']['redis_hits'] + 1)
        self.assertEqual(len(self.slapd.binds('uid=heidi,')), binds_before + 1)   # no new bind
        self.assert_ok(self.u2, 'heidi', LDAP_USERS['heidi']).logout()           # now in memory
        self.assertEqual(self.stats(self.u2)['cache']['memory_hits'],
                         after['cache']['memory_hits'] + 1)
        # Redis holds keyed hashes only: no user name, no password.
        dump = self.redis.dump()
        self.assertIn(':authp', dump)
        for user, pw in LDAP_USERS.items():
            self.assertNotIn(pw, dump)
        self.assertNotIn('heidi', dump)

    def test_password_change_and_flush(self):
        self.slapd.add_user('ivan', 'ivan-old')
        self.assert_ok(self.u1, 'ivan', 'ivan-old').logout()
        self.assert_ok(self.u2, 'ivan', 'ivan-old').logout()   # cached on both now
        self.slapd.set_password('ivan', 'ivan-new')
        self.assert_ok(self.u1, 'ivan', 'ivan-new').logout()   # at once: a mismatch asks LDAP
        self.assert_ok(self.u2, 'ivan', 'ivan-old').logout()   # still in u2's memory
        answer = json.loads(self.u2.admin('auth flush ivan'))
        self.assertTrue(answer['cluster'])
        time.sleep(0.3)   # the flush event reaches the other proxy
        self.assert_no(self.u1, 'ivan', 'ivan-old', 'AUTHENTICATIONFAILED')
        self.assert_no(self.u2, 'ivan', 'ivan-old', 'AUTHENTICATIONFAILED')
        self.assert_ok(self.u2, 'ivan', 'ivan-new').logout()

    def test_throttle_shared_and_blind_to_existence(self):
        self.slapd.add_user('judy', 'judy-pw')
        # The same wrong password again and again counts once.
        for _ in range(6):
            self.assert_no(self.u1, 'judy', 'stale-saved-pw', 'AUTHENTICATIONFAILED')
        self.assert_ok(self.u1, 'judy', 'judy-pw').logout()
        # Distinct wrong passwords: past user_failures (4) the user is refused,
        # on both proxies, even with the right password.
        for i in range(4):
            self.assert_no(self.u1, 'judy', 'guess-%d' % i, 'AUTHENTICATIONFAILED')
        time.sleep(0.3)
        self.assert_no(self.u1, 'judy', 'judy-pw', 'UNAVAILABLE')
        self.assert_no(self.u2, 'judy', 'judy-pw', 'UNAVAILABLE')
        # An unknown user gets exactly the same answers.
        for i in range(4):
            self.assert_no(self.u1, 'nobody-here', 'guess-%d' % i, 'AUTHENTICATIONFAILED')
        self.assert_no(self.u1, 'nobody-here', 'guess-9', 'UNAVAILABLE')
        self.assertGreaterEqual(self.stats(self.u1)['throttle']['bans'], 2)

    def test_zz_ldap_down_cached_users_only(self):
        self.assert_ok(self.u1, 'alice', LDAP_USERS['alice']).logout()
        self.slapd.stop()
        try:
            self.assert_ok(self.u1, 'alice', LDAP_USERS['alice']).logout()
            self.assert_ok(self.u2, 'alice', LDAP_USERS['alice']).logout()   # via Redis
            self.assert_no(self.u1, 'load01', LDAP_USERS['load01'], 'UNAVAILABLE')
            self.assert_no(self.u1, 'alice', 'wrong-while-down', 'UNAVAILABLE')
        finally:
            self.slapd.start()
        self.wait_login(self.u1, 'load01')

    def test_zz_redis_down_users_with_sessions_go_on(self):
        """While Redis is away (on_redis_down = refuse, the default), a user
        who holds a session on a proxy keeps logging in there, on the same
        seat; a user nobody holds gets NO [UNAVAILABLE]: no proxy can prove
        alone that another does not serve them elsewhere."""
        held = [self.assert_ok(self.u1, 'load02', LDAP_USERS['load02']),
                self.assert_ok(self.u2, 'load03', LDAP_USERS['load03'])]
        self.redis.stop()
        try:
            self.assert_ok(self.u1, 'load02', LDAP_USERS['load02']).logout()
            self.assert_ok(self.u1, 'load02', LDAP_USERS['load02']).logout()   # memory cache
            self.assert_ok(self.u2, 'load03', LDAP_USERS['load03']).logout()
            self.assert_no(self.u1, 'load03', LDAP_USERS['load03'], 'UNAVAILABLE')   # held on u2
            self.assert_no(self.u2, 'load06', LDAP_USERS['load06'], 'UNAVAILABLE')
            self.assertFalse(self.stats(self.u1)['redis']['up'])
        finally:
            self.redis.start()
        for m in held:
            m.logout()
        deadline = time.time() + 10
        while not self.stats(self.u1)['redis']['up'] and time.time() < deadline:
            time.sleep(0.1)
        self.assertTrue(self.stats(self.u1)['redis']['up'])
        self.assertIn('event=redis_down', self.u1.log())
        self.assertIn('event=redis_up', self.u1.log())

    def test_zz_admission_control(self):
        """One LDAP request at a time, a queue of two: with slapd frozen, the
        rest are shed with UNAVAILABLE at once instead of piling up."""
        sections = ldap_sections(self.slapd, None, self.secret, pool_size=1, max_inflight=1,
                                 queue_max=2, timeout='3s')
        u = self.env.usher(users_file='', extra=sections, workers=1)
        try:
            self.assert_ok(u, 'load04', LDAP_USERS['load04']).logout()   # connection is up
            os.kill(self.slapd.proc.pid, signal.SIGSTOP)
            try:
                users = ['load%02d' % i for i in range(10, 22)]

                def timed_login(name):
                    t0 = time.time()
                    typ, text = self.login(u, name, LDAP_USERS[name])[:2]
                    return typ, text, time.time() - t0

                with concurrent.futures.ThreadPoolExecutor(len(users)) as ex:
                    answers = list(ex.map(timed_login, users))
            finally:
                os.kill(self.slapd.proc.pid, signal.SIGCONT)
            # One in flight and two queued wait for the 3 s timeout; the other
            # nine are shed at once, not after the LDAP timeout.
            shed = [a for a in answers if a[0] == 'NO' and '[UNAVAILABLE]' in a[1] and a[2] < 1.5]
            self.assertGreaterEqual(len(shed), 8, answers)
            self.assertTrue(all(a[0] == 'NO' and '[UNAVAILABLE]' in a[1] for a in answers), answers)
            self.assertGreaterEqual(self.stats(u)['shed'], 6)
            self.wait_login(u, 'load05')   # and it recovers
        finally:
            self.assertEqual(u.stop(), 0)


if __name__ == '__main__':
    unittest.main()
