"""sessiond believes no worker blindly (issue 22, item 4): a process on
sessiond.sock that forges SESSION_UP (a user who never logged in, a made-up
backend) or ends another user's session changes no seat; and a restarted
sessiond still takes back the sessions its workers really hold.

Real usher, two real Dovecot backends, a real Redis. The rogue speaks the
worker protocol of common/proto.h with its own hand-made frames."""
import imaplib
import json
import os
import signal
import socket
import struct
import time
import unittest

import harness
from harness import USERS

# common/proto.h
HELLO, LOGIN, LOGIN_REPLY, BACKEND_FAILED, SESSION_UP, SESSION_END, KICK = range(1, 8)
PT_REQ, PT_WORKER_ID, PT_PID, PT_CLIENT_PORT = 1, 4, 5, 9
PT_SESSION, PT_USER, PT_CLIENT_ADDR, PT_BACKEND, PT_REASON, PT_TICKET = 32, 33, 35, 38, 40, 41
U32 = {PT_REQ, PT_WORKER_ID, PT_PID}
U16 = {PT_CLIENT_PORT}


def frame(kind, **fields):
    """One frame: body length, type, then tag / length / value for each
    field (strings with their NUL)."""
    body = bytes([kind])
    for name, value in fields.items():
        tag = globals()['PT_' + name.upper()]
        if tag in U32:
            raw = struct.pack('>I', value)
        elif tag in U16:
            raw = struct.pack('>H', value)
        else:
            raw = value.encode() + b'\0'
        body += struct.pack('>BH', tag, len(raw)) + raw
    return struct.pack('>I', len(body)) + body


def read_frames(sock, timeout=1.0):
    """Every frame sessiond sends within timeout: [(type, {tag: bytes})];
    None in the list marks that sessiond closed the connection."""
    sock.settimeout(timeout)
    buf, frames = b'', []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                frames.append(None)
                break
            buf += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        frames.append(None)
    while len(buf) >= 4 and len(buf) >= 4 + struct.unpack('>I', buf[:4])[0]:
        n = struct.unpack('>I', buf[:4])[0]
        body, buf = buf[4:4 + n], buf[4 + n:]
        fields, p = {}, 1
        while p < len(body):
            tag, flen = struct.unpack('>BH', body[p:p + 3])
            fields[tag] = body[p + 3:p + 3 + flen]
            p += 3 + flen
        frames.insert(len(frames) - (frames[-1:] == [None]), (body[0], fields))
    return frames


class RogueOnSessiondSocketTest(unittest.TestCase):
    """bob holds a real session; a rogue then tries to seat carol on a
    backend that does not exist, to seat her without a ticket, to take bob's
    session, to fail it over and to end it."""

    def start(self, peer_check):
        self.env = harness.Env()
        self.env.dovecot('backend1')
        self.env.dovecot('backend2')
        redis = self.env.redis()
        secret = self.env.secret_file('cache-secret', 'trust-test-cluster-secret')
        extra = {'redis': {'address': '127.0.0.1:%d' % redis.port},
                 'cache': {'secret_file': secret}}
        if peer_check is not None:
            extra['usher'] = {'worker_peer_check': peer_check}
        self.u = self.env.usher(extra=extra)
        self.bob = imaplib.IMAP4('127.0.0.1', self.u.port)
        self.assertEqual(self.bob.login('bob', USERS['bob'])[0], 'OK')
        self.bob_session = self.who('bob')['sessions'][0]['session']

    def tearDown(self):
        rc = self.u.stop()
        self.env.close()   # raises with the log lines of any crash
        self.assertEqual(rc, 0)

    def who(self, user):
        return json.loads(self.u.admin('who ' + user))

    def status(self):
        return json.loads(self.u.admin('status'))

    def rogue(self):
        s = socket.socket(socket.AF_UNIX)
        s.connect(os.path.join(self.u.dir, 'run', 'sessiond.sock'))
        self.addCleanup(s.close)
        return s

    def forgeries(self):
        carol = dict(session='00000000c0ffee01', user='carol', client_addr='192.0.2.66',
                     client_port=4242)
        return [
            frame(SESSION_UP, backend='no-such-backend', **carol),
            frame(SESSION_UP, backend='backend1', ticket='0' * 64, **carol),
            frame(SESSION_UP, session=self.bob_session, user='bob', backend='backend1',
                  ticket='f' * 64),
            frame(BACKEND_FAILED, req=7, session=self.bob_session, backend='backend1',
                  reason='forged'),
            frame(SESSION_END, session=self.bob_session, reason='forged'),
        ]

    def assert_nothing_changed(self):
        carol = self.who('carol')
        self.assertIsNone(carol['seat'])
        self.assertEqual(carol['sessions'], [])
        # carol logs in as usual, on a real backend.
        m = imaplib.IMAP4('127.0.0.1', self.u.port)
        self.assertEqual(m.login('carol', USERS['carol'])[0], 'OK')
        self.assertIn(harness.backend_name(m), ('backend1', 'backend2'))
        self.assertIn(self.who('carol')['seat'], ('backend1', 'backend2'))
        m.logout()
        # bob's session is still counted, still his, and still relayed.
        bob = self.who('bob')
        self.assertEqual([s['session'] for s in bob['sessions']], [self.bob_session])
        self.assertIn(bob['seat'], ('backend1', 'backend2'))
        self.assertEqual(self.bob.noop()[0], 'OK')
        self.bob.logout()

    def test_a_process_that_is_not_the_masters_worker_is_closed_at_hello(self):
        self.start(peer_check=None)   # the default
        s = self.rogue()
        s.sendall(frame(HELLO, worker_id=1, pid=os.getpid()) + b''.join(self.forgeries()))
        frames = read_frames(s)
        self.assert_nothing_changed()
        self.assertEqual(frames, [None])   # closed, nothing answered
        self.assertEqual(self.status()['worker_refused'], 1)
        self.assertEqual(self.status()['workers'], 2)
        log = self.u.log()
        self.assertIn('event=worker_refused worker=1 pid=%d type=HELLO reason=not_a_worker'
                      % os.getpid(), log)

    def test_a_worker_without_tickets_is_believed_in_nothing(self):
        # As if the rogue were one of the master's workers, taken over.
        self.start(peer_check='no')
        s = self.rogue()
        s.sendall(frame(HELLO, worker_id=1, pid=os.getpid()) + b''.join(self.forgeries()))
        frames = read_frames(s)
        self.assert_nothing_changed()
        self.assertNotIn(None, frames)   # still connected: refusals, not a broken peer
        kicks = [f[PT_SESSION] for t, f in frames if t == KICK]
        self.assertEqual(kicks, [b'00000000c0ffee01\0', b'00000000c0ffee01\0',
                                 self.bob_session.encode() + b'\0'])
        replies = [(f.get(PT_REQ), f.get(2)) for t, f in frames if t == LOGIN_REPLY]
        self.assertEqual(replies, [(struct.pack('>I', 7), struct.pack('>I', 2))])   # UNAVAILABLE
        self.assertEqual(self.status()['worker_refused'], 5)
        self.assertEqual(self.status()['backend_failures'], 0)
        log = self.u.log()
        self.assertEqual(log.count('event=worker_refused'), 1)   # once per connection
        self.assertIn('type=SESSION_UP reason=unknown_backend', log)
        self.assertNotIn('event=backend_down', log)
        s.close()
        deadline = time.time() + 5
        while 'refused=5' not in self.u.log() and time.time() < deadline:
            time.sleep(0.05)
        self.assertIn('event=worker_gone worker=1 pid=%d sessions=0 refused=5' % os.getpid(),
                      self.u.log())


class SessiondRestartTest(unittest.TestCase):
    """sessiond is killed while sessions run: the workers re-register them
    with their tickets, and the new sessiond counts each on its seat."""

    def setUp(self):
        self.env = harness.Env()
        self.env.dovecot('backend1')
        self.env.dovecot('backend2')
        redis = self.env.redis()
        secret = self.env.secret_file('cache-secret', 'trust-test-cluster-secret')
        self.u = self.env.usher(extra={'redis': {'address': '127.0.0.1:%d' % redis.port},
                                       'cache': {'secret_file': secret}})

    def tearDown(self):
        rc = self.u.stop()
        self.env.close()   # raises with the log lines of any crash
        self.assertEqual(rc, 0)

    def who(self, user):
        return json.loads(self.u.admin('who ' + user))

    def test_live_sessions_are_seated_again_after_a_restart(self):
        users = ['alice', 'bob', 'carol'] + ['user%02d' % i for i in range(1, 13)]
        sessions, seats = {}, {}
        for user in users:
            n = 2 if user in ('alice', 'bob', 'carol') else 1
            sessions[user] = [imaplib.IMAP4('127.0.0.1', self.u.port) for _ in range(n)]
            for m in sessions[user]:
                self.assertEqual(m.login(user, USERS[user])[0], 'OK')
            seats[user] = self.who(user)['seat']
            self.assertEqual({harness.backend_name(m) for m in sessions[user]}, {seats[user]})
        self.assertEqual(len(set(seats.values())), 2, seats)   # both backends in play
        before = {u: sorted(s['session'] for s in self.who(u)['sessions']) for u in users}
        total = sum(len(v) for v in sessions.values())
        self.assertEqual(json.loads(self.u.admin('status'))['sessions'], total)

        old = self.u.child_pids('sessiond')
        self.u.expect_child_exits('sessiond', count=1, signals=(signal.SIGKILL,))
        os.kill(old[0], signal.SIGKILL)
        deadline = time.time() + 15
        status = None
        while time.time() < deadline:
            pids = self.u.child_pids('sessiond')
            if pids and pids != old:
                try:
                    status = json.loads(self.u.admin('status'))
                    if status['workers'] == 2 and status['sessions'] == total:
                        break
                except (OSError, ValueError):
                    pass
            time.sleep(0.05)
        self.assertIsNotNone(status)
        self.assertEqual(status['sessions'], total)
        self.assertEqual(status.get('worker_refused', 0), 0)
        for user in users:
            who = self.who(user)
            self.assertEqual(who['seat'], seats[user], user)
            self.assertEqual(sorted(s['session'] for s in who['sessions']), before[user])
            for m in sessions[user]:
                self.assertEqual(m.noop()[0], 'OK')
        # A new session of a re-registered user goes to the same seat.
        m = imaplib.IMAP4('127.0.0.1', self.u.port)
        self.assertEqual(m.login('alice', USERS['alice'])[0], 'OK')
        self.assertEqual(harness.backend_name(m), seats['alice'])
        m.logout()
        for user in users:
            for m in sessions[user]:
                m.logout()
        deadline = time.time() + 5
        while json.loads(self.u.admin('status'))['sessions'] and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(json.loads(self.u.admin('status'))['sessions'], 0)
        self.assertNotIn('event=worker_refused', self.u.log())


if __name__ == '__main__':
    unittest.main()
