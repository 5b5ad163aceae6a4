"""One identity per user, and throttling that strangers cannot turn against
the owner (issue 22, items 1, 2 and 7), against a real slapd, a real
redis-server, two ushers sharing it and two Dovecot backends.

- Every spelling of a login (case, blanks around it) and every alias of one
  directory entry is one user: one seat, one backend, one failure counter.
- Wrong guesses ban strangers; the owner, from an address they logged in
  from before, keeps getting in with the right password during the attack.
- The auth cache's Redis entries are sealed: one edited to name another
  user is not used."""
import imaplib
import json
import socket
import time
import unittest

import harness
from harness import backend_name

PEOPLE = 'ou=people,dc=example,dc=org'
USERS = {'alice': 'alice-pw', 'bob': 'bob-pw', 'carol': 'carol-pw', 'mallory': 'mallory-pw'}
FAILURE_DELAY = 0.1   # seconds, as configured below
USER_FAILURES = 4


class LoginFrom(imaplib.IMAP4):
    """imaplib from a chosen source address (127.0.0.0/8 is all ours)."""

    def __init__(self, port, source):
        self._source = source
        super().__init__('127.0.0.1', port, timeout=30)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))


def quoted(name):
    return '"%s"' % name   # imaplib sends the user name as it is


class IdentityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        env = cls.env = harness.Env()
        env.dovecot('backend1', trust_proxy=True)
        env.dovecot('backend2', trust_proxy=True)
        cls.slapd = env.slapd()
        pw_file = env.secret_file('ldap.pw', cls.slapd.SERVICE_PW)
        for uid, pw in USERS.items():
            cls.slapd.add_user(uid, pw, mail='%s.smith@example.org' % uid)
        cls.redis = env.redis()
        secret = env.secret_file('cluster.secret', 'an-identity-secret-of-enough-length')
        # No login_attribute: the seat belongs to the entry's DN.
        sections = {
            'ldap': {'uri': cls.slapd.uri, 'base': PEOPLE,
                     'filter': '(&(objectClass=inetOrgPerson)(|(uid=%u)(mail=%u)))',
                     'bind_dn': cls.slapd.SERVICE, 'bind_password_file': pw_file,
                     'timeout': '2s', 'pool_size': 2},
            'cache': {'secret_file': secret},
            'redis': {'address': '127.0.0.1:%d' % cls.redis.port, 'timeout': '200ms'},
            'auth': {'failure_delay': '%dms' % (FAILURE_DELAY * 1000), 'max_attempts': 100},
            'throttle': {'user_failures': USER_FAILURES, 'ip_failures': 1000, 'ban_time': '1m',
                         'max_delay': '200ms'},
            'limits': {'max_connections_per_ip': 0},
        }
        cls.u1 = env.usher(users_file='', extra=sections)
        cls.u2 = env.usher(users_file='', extra=sections)

    @classmethod
    def tearDownClass(cls):
        cls.env.stop_all(secrets=USERS.values())

    def login(self, u, user, password, source='127.0.0.1'):
        """(answer, text, imap or None, seconds) of one LOGIN through u."""
        m = LoginFrom(u.port, source)
        t0 = time.monotonic()
        try:
            typ, data = m.login(quoted(user), password)
            return typ, data[0].decode(), m, time.monotonic() - t0
        except imaplib.IMAP4.error as e:
            m.shutdown()
            return 'NO', str(e), None, time.monotonic() - t0

    def sessions(self, u):
        return json.loads(u.admin('sessions'))['sessions']

    def test_spellings_and_aliases_share_one_seat(self):
        spellings = ['alice', 'Alice', 'ALICE', ' alice', 'alice ', 'aLice', 'alIce',
                     'alice.smith@example.org', 'Alice.Smith@EXAMPLE.org']
        held, seen = [], {}
        for i, name in enumerate(spellings):
            u = (self.u1, self.u2)[i % 2]
            typ, text, m, _ = self.login(u, name, USERS['alice'])
            self.assertEqual(typ, 'OK', '%r: %s' % (name, text))
            m.select('INBOX')
            held.append(m)
            seen[name] = backend_name(m)
        print('\nidentity: %d spellings and aliases of one entry tried, backends seen: %s'
              % (len(spellings), sorted(set(seen.values()))), flush=True)
        self.assertEqual(len(set(seen.values())), 1, 'one account on two backends: %r' % seen)
        seats = {s['user'] for u in (self.u1, self.u2) for s in self.sessions(u)
                 if 'alice' in s['user']}
        self.assertEqual(len(seats), 1, 'one account under several seats: %r' % seats)
        for m in held:
            m.logout()

    def test_spellings_share_one_failure_count(self):
        # bob never logged in: no address is known for him.
        for name in ('bob', 'Bob', 'BOB', ' bob')[:USER_FAILURES]:
            typ, text, _, _ = self.login(self.u1, name, 'guess-' + name.strip(), '127.0.0.3')
            self.assertIn('AUTHENTICATIONFAILED', text, name)
        time.sleep(0.3)   # the ban's event reaches the other proxy
        typ, text, _, _ = self.login(self.u2, 'bOb', 'yet-another-guess', '127.0.0.3')
        self.assertIn('UNAVAILABLE', text,
                      'a new spelling got a fresh allowance of guesses: %s' % text)

    def test_owner_gets_in_during_an_attack(self):
        owner, attacker, stranger = '127.0.0.1', '127.0.0.2', '127.0.0.4'
        baseline = []
        for u in (self.u1, self.u1):   # the owner's usual logins (u2 learns of them from Redis)
            typ, text, m, took = self.login(u, 'carol', USERS['carol'], owner)
            self.assertEqual(typ, 'OK', text)
            baseline.append(took)
            m.logout()
        allowed, refused, owner_waits = 0, 0, []
        for i in range(24):   # guesses in every spelling, over both proxies
            u = (self.u1, self.u2)[i % 2]
            name = ('carol', 'Carol', 'CAROL', ' carol ')[i % 4]
            typ, text, _, _ = self.login(u, name, 'guess-%d' % i, attacker)
            if 'AUTHENTICATIONFAILED' in text:
                allowed += 1
            elif 'UNAVAILABLE' in text:
                refused += 1
            else:
                self.fail('unexpected answer to a guess: %s' % text)
            if i % 4 == 3:   # the owner checks mail meanwhile, on either proxy
                typ, text, m, took = self.login((self.u2, self.u1)[i // 4 % 2], 'carol',
                                                USERS['carol'], owner)
                self.assertEqual(typ, 'OK', 'the owner was locked out: %s' % text)
                owner_waits.append(took)
                m.logout()
        typ, text, _, _ = self.login(self.u1, 'carol', USERS['carol'], stranger)
        print('\nthrottle: %d guesses for carol from the attacker\'s address allowed, %d refused; '
              'owner logins during the attack %d/%d OK, longest %.3f s (before the attack %.3f s); '
              'right password from a new address: %s'
              % (allowed, refused, len(owner_waits), len(owner_waits), max(owner_waits),
                 max(baseline), text.strip("b'").split(']')[0] + ']'), flush=True)
        self.assertEqual(allowed, USER_FAILURES, 'guesses allowed before the ban')
        self.assertEqual(refused, 24 - USER_FAILURES)
        self.assertLess(max(owner_waits), max(baseline) + FAILURE_DELAY + 1.0,
                        'the owner waited longer than a normal login plus the delays')
        self.assertIn('UNAVAILABLE', text, 'a new address got past the ban')
        stats = json.loads(self.u2.admin('auth stats'))
        self.assertGreater(stats['throttle']['known_passed'], 0)

    def test_cache_entry_edited_in_redis_is_not_used(self):
        before = set(self.redis.command('KEYS', 'usher:*:authp').split())
        typ, text, m, _ = self.login(self.u1, 'mallory', USERS['mallory'])
        self.assertEqual(typ, 'OK', text)
        m.logout()
        new = set(self.redis.command('KEYS', 'usher:*:authp').split()) - before
        self.assertEqual(len(new), 1, new)
        key = new.pop()
        fields = self.redis.command('GET', key).rstrip('\n').split('\t')
        # Whoever can write to Redis points mallory's entry at alice.
        fields[5] = 'alice'
        self.redis.command('SET', key, '\t'.join(fields), 'PX', '600000')
        typ, text, m, _ = self.login(self.u2, 'mallory', USERS['mallory'])   # u2: not in memory
        self.assertEqual(typ, 'OK', text)
        users = {s['user'] for s in self.sessions(self.u2)}
        m.logout()
        self.assertNotIn('alice', users, 'mallory was let in as alice by an edited entry')
        stats = json.loads(self.u2.admin('auth stats'))
        self.assertGreaterEqual(stats['cache']['bad_seals'], 1)


if __name__ == '__main__':
    unittest.main()
