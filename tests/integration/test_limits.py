"""Resource limits that the other files do not cover: total connections,
and running out of file descriptors (EMFILE): the listener backs off
instead of spinning, and recovers once descriptors are free again."""
import imaplib
import os
import re
import signal
import socket
import subprocess
import time
import unittest

import harness
from harness import USERS, RawClient


def worker_pid(u, worker_id=1):
    m = re.findall(r'event=child_start role=worker id=%d pid=(\d+)' % worker_id, u.log())
    return int(m[-1])


def somaxconn():
    """The kernel's cap on any listen backlog."""
    with open('/proc/sys/net/core/somaxconn') as f:
        return int(f.read())


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0   # utime + stime, in ticks


class LimitsTest(unittest.TestCase):
    def setUp(self):
        self.env = harness.Env()
        self.env.dovecot('backend1')

    def tearDown(self):
        self.env.close()   # raises with the log lines of any crash

    def test_total_connections(self):
        u = self.env.usher(workers=1, extra={'limits': {'max_connections': 5}})
        held = [RawClient(u.port) for _ in range(5)]
        for c in held:
            self.assertTrue(c.greeting.startswith(b'* OK'))
        extra = RawClient(u.port)
        self.assertTrue(extra.greeting.startswith(b'* BYE [UNAVAILABLE] Too many connections'),
                        extra.greeting)
        self.assertTrue(extra.closed())
        # Those inside are served meanwhile.
        held[0].send(b'n NOOP\r\n')
        self.assertTrue(held[0].until_tagged(b'n')[-1].startswith(b'n OK'))
        held[1].send(b'l LOGIN bob ' + USERS['bob'].encode() + b'\r\n')
        self.assertTrue(held[1].until_tagged(b'l')[-1].startswith(b'l OK'))
        # One leaves: the next one is let in.
        held.pop().close()
        time.sleep(0.2)
        again = RawClient(u.port)
        self.assertTrue(again.greeting.startswith(b'* OK'), again.greeting)
        self.assertIn('reason=max_connections limit=5', u.log())
        for c in held + [extra, again]:
            c.close()
        self.assertEqual(u.stop(), 0)

    def test_a_burst_of_connections_waits_in_the_listen_queue(self):
        """600 clients connect while the only worker is busy (stopped): the
        kernel queues them all ([limits] listen_backlog, default 4096) and
        each is greeted once the worker goes on. Workers once called
        listen() again with libevent's 128: the rest of the burst had its
        SYNs dropped and waited a second for each retry."""
        if somaxconn() < 1000:
            self.skipTest('net.core.somaxconn %d caps every backlog below the burst' % somaxconn())
        u = self.env.usher(workers=1)
        pid = worker_pid(u)
        os.kill(pid, signal.SIGSTOP)
        clients, lost = [], 0
        try:
            for _ in range(600):
                s = socket.socket()
                s.settimeout(0.5)
                try:
                    s.connect(('127.0.0.1', u.port))
                    clients.append(s)
                except OSError:
                    lost += 1
                    s.close()
                    if lost == 5:   # each costs the timeout; five say enough
                        break
        finally:
            os.kill(pid, signal.SIGCONT)
        self.assertEqual(lost, 0, 'connections the listen queue did not take')
        for s in clients:
            s.settimeout(10)
            self.assertTrue(s.recv(1024).startswith(b'* OK'))
            s.close()
        self.assertEqual(u.stop(), 0)

    def test_listen_backlog_is_configurable(self):
        if somaxconn() < 700:
            self.skipTest('net.core.somaxconn %d caps every backlog below 700' % somaxconn())
        u = self.env.usher(workers=2, extra={'limits': {'listen_backlog': 700}})
        out = subprocess.run(['ss', '-ltnH', 'sport = :%d' % u.port], capture_output=True,
                             text=True, check=True).stdout.split()
        self.assertEqual(out[0], 'LISTEN', out)
        self.assertEqual(int(out[2]), 700, 'Send-Q of a listening socket is its backlog')
        self.assertEqual(u.stop(), 0)

    def test_out_of_descriptors_backs_off_and_recovers(self):
        u = self.env.usher(workers=1)
        pid = worker_pid(u)
        # Leave the worker a few descriptors above what it holds now.
        in_use = len(os.listdir('/proc/%d/fd' % pid))
        limit = in_use + 10
        subprocess.run(['prlimit', '--pid', str(pid), '--nofile=%d:%d' % (limit, limit)],
                       check=True)
        socks = []
        for _ in range(25):
            s = socket.create_connection(('127.0.0.1', u.port), timeout=5)
            socks.append(s)
        greeted, waiting = [], []
        for s in socks:
            s.settimeout(1.0)
            try:
                self.assertTrue(s.recv(100).startswith(b'* OK'))
                greeted.append(s)
            except socket.timeout:
                waiting.append(s)
        self.assertGreater(len(greeted), 0)
        self.assertLessEqual(len(greeted), 10)
        self.assertTrue(waiting, 'every connection was served: the limit did not bite')
        self.assertIn('event=accept_error error="Too many open files"', u.log())

        # Backing off, not spinning: little CPU while the backlog waits.
        before = cpu_seconds(pid)
        time.sleep(2)
        self.assertLess(cpu_seconds(pid) - before, 0.3)

        # Descriptors come back: the waiting connections are served.
        for s in greeted:
            s.close()
        for s in waiting[:5]:
            s.settimeout(5)
            self.assertTrue(s.recv(100).startswith(b'* OK'))
        for s in waiting:
            s.close()
        time.sleep(0.5)
        m = imaplib.IMAP4('127.0.0.1', u.port, timeout=10)
        self.assertEqual(m.login('alice', USERS['alice'])[0], 'OK')
        m.logout()
        self.assertEqual(u.stop(), 0)


if __name__ == '__main__':
    unittest.main()
