"""usherctl against a running usher: text and JSON, errors and exit codes;
and the Prometheus metrics endpoint, read with curl."""
import imaplib
import json
import os
import subprocess
import time
import unittest

import harness
from harness import USERS

USHERCTL = os.environ.get('USHERCTL_BIN', os.path.join(harness.ROOT, 'build', 'usherctl'))


class UsherctlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = harness.Env()
        cls.b1 = cls.env.dovecot('backend1')
        cls.b2 = cls.env.dovecot('backend2')
        cls.metrics_port = harness.free_port()
        # Re-homing on (a master user and its password file): a move keeps
        # the session, --kick closes it.
        cls.u = cls.env.usher(extra={
            'usher': {'metrics': '127.0.0.1:%d' % cls.metrics_port},
            'routing': {'master_user': cls.env.master_user,
                        'master_password_file': cls.env.master_password_file}})

    @classmethod
    def tearDownClass(cls):
        rc = cls.u.stop()
        cls.env.close()   # raises with the log lines of any crash
        assert rc == 0, rc

    def ctl(self, *args, json_out=False):
        cmd = [USHERCTL, '-c', self.u.conf] + (['--json'] if json_out else []) + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return r.returncode, r.stdout, r.stderr

    def test_status_text_and_json(self):
        rc, out, _ = self.ctl('status')
        self.assertEqual(rc, 0)
        self.assertIn('uptime_s: ', out)
        self.assertIn('name: backend1', out)
        rc, out, _ = self.ctl('status', json_out=True)
        self.assertEqual(rc, 0)
        st = json.loads(out)
        self.assertEqual(st['workers'], 2)
        self.assertEqual([b['name'] for b in st['backends']], ['backend1', 'backend2'])

    def test_backends_and_states(self):
        rc, out, _ = self.ctl('backends', json_out=True)
        self.assertEqual(rc, 0)
        self.assertEqual(len(json.loads(out)['backends']), 2)
        rc, out, _ = self.ctl('backend', 'backend2', 'drain')
        self.assertEqual(rc, 0)
        self.assertIn('state: drain', out)
        rc, out, _ = self.ctl('backend', 'backend2', 'weight', '5', json_out=True)
        self.assertEqual(json.loads(out)['weight'], 5)
        rc, _, err = self.ctl('backend', 'backend2', 'weight', 'lots')
        self.assertEqual(rc, 1)
        self.assertIn('whole number', err)
        rc, _, err = self.ctl('backend', 'nosuch', 'up')
        self.assertEqual(rc, 1)
        self.assertIn('no backend named', err)
        self.assertEqual(self.ctl('backend', 'backend2', 'up')[0], 0)
        self.assertEqual(self.ctl('backend', 'backend2', 'weight', '1')[0], 0)

    def test_who_sessions_kick(self):
        m = imaplib.IMAP4('127.0.0.1', self.u.port)
        m.login('carol', USERS['carol'])
        rc, out, _ = self.ctl('who', 'carol', json_out=True)
        who = json.loads(out)
        self.assertEqual(len(who['sessions']), 1)
        backend = who['seat']
        rc, out, _ = self.ctl('sessions', '--backend', backend, json_out=True)
        self.assertTrue(any(s['user'] == 'carol' for s in json.loads(out)['sessions']))
        rc, out, _ = self.ctl('kick', 'carol', json_out=True)
        self.assertEqual(json.loads(out)['kicked'], 1)
        time.sleep(0.3)
        with self.assertRaises((imaplib.IMAP4.abort, OSError)):
            m.noop()

    def test_move_rehomes_or_kicks(self):
        # A move with re-homing on sends KICK with PT_REHOME and the session
        # stays (test_rehome shows the rest); --kick is the old way and says so.
        for how, rehome in (([], True), (['--kick'], False)):
            m = imaplib.IMAP4('127.0.0.1', self.u.port)
            m.login('bob', USERS['bob'])
            rc, out, _ = self.ctl('who', 'bob', json_out=True)
            seat = json.loads(out)['seat']
            other = 'backend2' if seat == 'backend1' else 'backend1'
            rc, out, _ = self.ctl('move', 'bob', other, *how, json_out=True)
            self.assertEqual(rc, 0, out)
            answer = json.loads(out)
            self.assertEqual(answer['kicked'], 1)
            self.assertIs(answer['rehome'], rehome)
            if rehome:
                time.sleep(0.5)
                self.assertEqual(m.noop()[0], 'OK')   # still there, on the other backend
                m.logout()
                # Its end reaches sessiond a moment later: the next round's
                # kick must count only its own session.
                deadline = time.time() + 3
                while time.time() < deadline:
                    if not json.loads(self.ctl('who', 'bob', json_out=True)[1])['sessions']:
                        break
                    time.sleep(0.05)
            else:
                with self.assertRaises((imaplib.IMAP4.abort, OSError)):
                    for _ in range(30):   # closed within 3 s
                        m.noop()
                        time.sleep(0.1)
            rc, out, _ = self.ctl('who', 'bob', json_out=True)
            self.assertEqual(json.loads(out)['seat'], other)
        st = json.loads(self.ctl('status', json_out=True)[1])
        for key in ('rehome_requests', 'rehome_routed', 'rehome_refused', 'rehome_unavailable'):
            self.assertIn(key, st)
        self.assertEqual(st['rehome_refused'], 0)
        rc, _, err = self.ctl('move', 'bob', 'backend1', '--gently')
        self.assertEqual(rc, 2)   # bad usage, caught by usherctl

    def test_drain_migrate(self):
        # Every user seated on the backend moves off it, paced, and the
        # sessions stay; status shows the progress while it runs and null
        # once done.
        m = imaplib.IMAP4('127.0.0.1', self.u.port)
        m.login('alice', USERS['alice'])
        rc, out, _ = self.ctl('who', 'alice', json_out=True)
        seat = json.loads(out)['seat']
        other = 'backend2' if seat == 'backend1' else 'backend1'
        try:
            rc, out, _ = self.ctl('backend', seat, 'drain', '--migrate', '--rate', '20',
                                  json_out=True)
            self.assertEqual(rc, 0, out)
            answer = json.loads(out)
            self.assertEqual(answer['state'], 'drain')
            self.assertGreaterEqual(answer['migrating'], 1)
            st = json.loads(self.ctl('status', json_out=True)[1])
            self.assertIn('migration', st)
            rc, out, _ = self.ctl('backend', seat, 'drain', '--migrate', '--rate', 'x')
            self.assertNotEqual(rc, 0)
            time.sleep(0.5)
            self.assertEqual(m.noop()[0], 'OK')   # re-homed, not closed
            deadline = time.time() + 5
            while time.time() < deadline:
                st = json.loads(self.ctl('status', json_out=True)[1])
                if st['migration'] is None:
                    break
                time.sleep(0.1)
            self.assertIsNone(st['migration'])
            rc, out, _ = self.ctl('who', 'alice', json_out=True)
            self.assertEqual(json.loads(out)['seat'], other)
            m.logout()
        finally:
            self.ctl('backend', seat, 'up')

    def test_health_and_reload(self):
        rc, out, _ = self.ctl('health')
        self.assertEqual(rc, 0)
        self.assertIn('healthy: true', out)
        rc, out, _ = self.ctl('reload')
        self.assertEqual(rc, 0)
        deadline = time.time() + 5
        while 'event=reload' not in self.u.log() and time.time() < deadline:
            time.sleep(0.1)
        self.assertIn('event=reload', self.u.log())

    def test_auth_commands(self):
        self.assertEqual(self.ctl('auth', 'flush', 'alice')[0], 0)
        rc, out, _ = self.ctl('auth', 'stats', json_out=True)
        self.assertIn('cache', json.loads(out))

    def test_metrics(self):
        m = imaplib.IMAP4('127.0.0.1', self.u.port)
        m.login('bob', USERS['bob'])
        with self.assertRaises(imaplib.IMAP4.error):
            imaplib.IMAP4('127.0.0.1', self.u.port).login('bob', 'wrong')
        url = 'http://127.0.0.1:%d/metrics' % self.metrics_port
        r = subprocess.run(['curl', '-sS', '-i', url], capture_output=True, text=True, timeout=10)
        self.assertIn('200 OK', r.stdout)
        self.assertIn('text/plain; version=0.0.4', r.stdout)
        values = {}
        for line in r.stdout.split('\n\n', 1)[1].splitlines():   # text mode: LF
            if line and not line.startswith('#'):
                key, value = line.rsplit(' ', 1)
                values[key] = float(value)
        self.assertGreaterEqual(values['usher_logins_total{result="ok"}'], 1)
        self.assertGreaterEqual(values['usher_logins_total{result="failed"}'], 1)
        self.assertEqual(values['usher_workers'], 2)
        self.assertIn('usher_backend_sessions{backend="backend1"}', values)
        self.assertGreaterEqual(values['usher_sessions'], 1)
        m.logout()
        r = subprocess.run(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}',
                            'http://127.0.0.1:%d/other' % self.metrics_port],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.stdout, '404')

    def test_bad_usage(self):
        self.assertEqual(self.ctl('frobnicate')[0], 2)
        self.assertEqual(self.ctl('who')[0], 2)
        self.assertEqual(self.ctl('backend', 'backend1', 'weight')[0], 2)
        self.assertEqual(self.ctl('auth', 'flush')[0], 2)
        r = subprocess.run([USHERCTL, '-s', '/nonexistent/admin.sock', 'status'],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 3)
        self.assertIn('cannot reach sessiond', r.stderr)


if __name__ == '__main__':
    unittest.main()
