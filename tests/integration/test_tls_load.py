"""TLS under a client as fast and as concurrent as real ones: the C load
generator (bench/loadgen.c, OpenSSL, non-blocking, one event loop) runs
many sessions in parallel against real Dovecot through usher, over
implicit TLS and STARTTLS, with usher's record layer on and off, and not
one session may be lost. Python's ssl clients are too slow to show races
between sessions of one worker; this one is not.

The load generator prints every session that did not complete as
"lost reason=STEP/PROBLEM sessions=N"; the test shows those lines."""
import os
import subprocess
import unittest

import harness

BUILD = os.environ.get('USHER_BUILD_DIR', os.path.join(harness.ROOT, 'build'))
LOADGEN = os.path.join(BUILD, 'bench', 'usher-loadgen')
EPOLL_CLIENT = os.path.join(BUILD, 'bench', 'usher-epoll-client')
# Fewer sessions under the sanitizers, which make usher several times slower.
SESSIONS = 400 if harness.sanitized_build() else 1500


def worker_exits(u):
    return [l for l in u.log().splitlines() if 'event=child_exit' in l]


@unittest.skipUnless(os.path.exists(LOADGEN), 'usher-loadgen not built')
class TlsUnderLoad(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.env = harness.Env()
        cls.b1 = cls.env.dovecot('backend1')
        cls.on = cls.env.usher(backends=[cls.b1], workers=2)
        cls.off = cls.env.usher(backends=[cls.b1], workers=2,
                                extra={'tls': {'release_after_handshake': 'no'}})

    @classmethod
    def tearDownClass(cls):
        reports = cls.env.close()
        assert reports == [], '\n'.join(reports)

    def tearDown(self):
        for u in (self.on, self.off):
            self.assertEqual(worker_exits(u), [])
            self.assertEqual(u.sanitizer_reports(), [])

    def load(self, u, tls, scenario, sessions, concurrency, *more):
        port = u.tls_port if tls == 'implicit' else u.port
        args = [LOADGEN, '--port', str(port), '--tls', tls, '--scenario', scenario,
                '--sessions', str(sessions), '--concurrency', str(concurrency),
                '--user-count', '40', '--timeout', '60'] + list(more)
        p = subprocess.run(args, capture_output=True, text=True, timeout=600)
        lines = p.stdout.strip().splitlines()
        fig = dict(kv.split('=', 1) for kv in lines[-1].split() if '=' in kv) if lines else {}
        lost = [l for l in lines if l.startswith('lost ')]
        self.assertEqual((p.returncode, lost), (0, []), '%s\n%s' % (p.stdout, p.stderr[-2000:]))
        return fig

    def test_logins_in_parallel_implicit_tls_record_layer(self):
        fig = self.load(self.on, 'implicit', 'login', SESSIONS, 50)
        self.assertEqual(int(fig['ok']), SESSIONS)

    def test_logins_in_parallel_starttls_record_layer(self):
        fig = self.load(self.on, 'starttls', 'login', SESSIONS, 50)
        self.assertEqual(int(fig['ok']), SESSIONS)

    def test_logins_in_parallel_implicit_tls_openssl(self):
        fig = self.load(self.off, 'implicit', 'login', SESSIONS, 50)
        self.assertEqual(int(fig['ok']), SESSIONS)

    def test_logins_in_parallel_starttls_openssl(self):
        fig = self.load(self.off, 'starttls', 'login', SESSIONS, 50)
        self.assertEqual(int(fig['ok']), SESSIONS)

    def pipelined(self, u, tls):
        """bench/epoll_client.c: SSL_read/SSL_write straight on non-blocking
        sockets under epoll, as the reporter's client of issue 21 did, with
        LOGIN and SELECT pipelined in one record, in two, all three commands
        at once, and (implicit TLS) sent before the greeting is read."""
        port = u.tls_port if tls == 'implicit' else u.port
        modes = ['one', 'two', 'all'] + (['early'] if tls == 'implicit' else [])
        for mode in modes:
            p = subprocess.run([EPOLL_CLIENT, '--port', str(port), '--tls', tls, '--pipeline', mode,
                                '--sessions', str(SESSIONS // 5), '--concurrency', '50',
                                '--password', 'pw-%02u', '--timeout', '60'],
                               capture_output=True, text=True, timeout=600)
            lost = [l for l in p.stdout.splitlines() if l.startswith('lost ')]
            self.assertEqual((p.returncode, lost), (0, []),
                             '%s: %s\n%s' % (mode, p.stdout, p.stderr[-2000:]))

    @unittest.skipUnless(os.path.exists(EPOLL_CLIENT), 'usher-epoll-client not built')
    def test_pipelined_epoll_client_implicit_tls_record_layer(self):
        self.pipelined(self.on, 'implicit')

    @unittest.skipUnless(os.path.exists(EPOLL_CLIENT), 'usher-epoll-client not built')
    def test_pipelined_epoll_client_starttls_record_layer(self):
        self.pipelined(self.on, 'starttls')

    @unittest.skipUnless(os.path.exists(EPOLL_CLIENT), 'usher-epoll-client not built')
    def test_pipelined_epoll_client_implicit_tls_openssl(self):
        self.pipelined(self.off, 'implicit')

    @unittest.skipUnless(os.path.exists(EPOLL_CLIENT), 'usher-epoll-client not built')
    def test_pipelined_epoll_client_starttls_openssl(self):
        self.pipelined(self.off, 'starttls')

    def test_sessions_idle_while_others_come_and_go(self):
        """Sessions parked in IDLE over TLS stay up while other sessions log
        in and out on the same workers."""
        idle = subprocess.Popen([LOADGEN, '--port', str(self.on.tls_port), '--tls', 'implicit',
                                 '--scenario', 'idle', '--sessions', '200', '--concurrency', '20',
                                 '--user-count', '40', '--idle-hold', '8', '--timeout', '60'],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            ready = idle.stdout.readline()
            self.assertTrue(ready.startswith('IDLE_READY'), ready + idle.stderr.read())
            self.load(self.on, 'implicit', 'login', SESSIONS // 3, 20)
            out, err = idle.communicate(timeout=120)
        finally:
            if idle.poll() is None:
                idle.kill()
                idle.wait()
        self.assertEqual(idle.returncode, 0, out + err[-2000:])
        self.assertNotIn('lost ', out)


if __name__ == '__main__':
    unittest.main()
