"""Real clients through usher: Python's imaplib, curl and mbsync (isync)."""
import imaplib
import os
import subprocess
import unittest

import harness
from harness import USERS, sha256

MESSAGES = [
    b'From: a@example.org\r\nTo: b@example.org\r\nSubject: first\r\n\r\nHello there.\r\n',
    b'From: c@example.org\r\nSubject: second\r\n\r\n' + b'line of text\r\n' * 2000,
    b'From: d@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\n\xc3\xa9t\xc3\xa9\r\n',
]


def maildir_bodies(path):
    """sha256 of every message file under a maildir tree (hidden folders too:
    Dovecot keeps subfolders as .Name)."""
    out = []
    for top, dirs, files in os.walk(path):
        if os.path.basename(top) in ('cur', 'new'):
            for name in files:
                with open(os.path.join(top, name), 'rb') as fh:
                    data = fh.read().replace(b'\r\n', b'\n')
                # mbsync adds an X-TUID header of its own to what it stores.
                data = b''.join(l for l in data.splitlines(True) if not l.startswith(b'X-TUID: '))
                out.append(sha256(data))
    return sorted(out)


class ClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = harness.Env()
        cls.env.dovecot('backend1')
        cls.env.dovecot('backend2')
        cls.u = cls.env.usher()

    @classmethod
    def tearDownClass(cls):
        cls.env.close()   # raises with the log lines of any crash

    def fill(self, user, folders=('INBOX',)):
        m = imaplib.IMAP4('127.0.0.1', self.u.port)
        m.login(user, USERS[user])
        for folder in folders:
            if folder != 'INBOX':
                m.create(folder)
            for msg in MESSAGES:
                self.assertEqual(m.append(folder, None, None, msg)[0], 'OK')
        m.logout()

    def test_imaplib_mailbox_operations(self):
        self.fill('alice')
        m = imaplib.IMAP4('127.0.0.1', self.u.port)
        m.login('alice', USERS['alice'])
        typ, boxes = m.list()
        self.assertEqual(typ, 'OK')
        self.assertTrue(any(b'INBOX' in b for b in boxes))
        typ, data = m.select('INBOX')
        self.assertEqual(int(data[0]), len(MESSAGES))
        typ, data = m.search(None, 'SUBJECT', 'second')
        self.assertEqual(data[0], b'2')
        typ, data = m.fetch('1:3', '(BODY.PEEK[])')
        bodies = [part[1] for part in data if isinstance(part, tuple)]
        self.assertEqual(bodies, MESSAGES)
        self.assertEqual(m.store('1', '+FLAGS', '\\Flagged')[0], 'OK')
        typ, data = m.fetch('1', '(FLAGS)')
        self.assertIn(b'\\Flagged', data[0])
        m.create('Archive')
        self.assertEqual(m.copy('1:2', 'Archive')[0], 'OK')
        m.store('3', '+FLAGS', '\\Deleted')
        typ, data = m.expunge()
        self.assertEqual(data, [b'3'])
        typ, data = m.status('Archive', '(MESSAGES)')
        self.assertIn(b'MESSAGES 2', data[0])
        m.close()
        m.logout()

    def test_curl_imap_and_imaps(self):
        self.fill('bob')
        base = 'imap://127.0.0.1:%d' % self.u.port
        out = subprocess.run(['curl', '-sS', '--max-time', '20', '--user', 'bob:' + USERS['bob'],
                              base + '/INBOX;UID=1'], capture_output=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, MESSAGES[0])
        out = subprocess.run(['curl', '-sS', '--max-time', '20', '--cacert', self.env.cert,
                              '--user', 'bob:' + USERS['bob'],
                              'imaps://localhost:%d/INBOX;UID=2' % self.u.tls_port],
                             capture_output=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, MESSAGES[1])
        out = subprocess.run(['curl', '-sS', '--max-time', '20', '--ssl-reqd', '--cacert',
                              self.env.cert, '--user', 'bob:' + USERS['bob'],
                              'imap://localhost:%d/' % self.u.port], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn('INBOX', out.stdout)                # LIST over STARTTLS
        bad = subprocess.run(['curl', '-sS', '--max-time', '20', '--user', 'bob:wrong',
                              base + '/INBOX;UID=1'], capture_output=True)
        self.assertNotEqual(bad.returncode, 0)

    def test_mbsync_matches_the_backend_message_by_message(self):
        self.fill('carol', folders=('INBOX', 'Work'))
        local = os.path.join(self.env.dir, 'carol-local')
        os.makedirs(local)
        out = harness.run_mbsync(harness.mbsync_rc(self.env, self.u.port, 'carol', local))
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        backend = maildir_bodies(os.path.join(self.env.mail, 'carol'))
        synced = maildir_bodies(local)
        self.assertEqual(len(backend), 2 * len(MESSAGES))
        self.assertEqual(synced, backend)


if __name__ == '__main__':
    unittest.main()
