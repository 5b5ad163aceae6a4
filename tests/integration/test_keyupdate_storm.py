"""A KeyUpdate storm from a client that never reads (issue 21): the worker's
memory stays within 1 MiB of where it started, and the connection ends
with a TLS alert.

The client is tests/helpers/keyupdate_storm.c (Python's ssl cannot send a
KeyUpdate): OpenSSL's handshake, then KeyUpdate(update_requested) records
sealed by the helper under the client's traffic key, moved on after each.
Two storms over implicit TLS, with the record layer on (the default) and
with OpenSSL throughout (release_after_handshake = no):
  - thousands of KeyUpdates packed in each 16 KiB record, as reported:
    usher answered every one with a record of its own and queued them
    without bound (11 MB to 66 MB in 25 s). RFC 8446 5.1 says a KeyUpdate
    ends its record: the first such record gets an alert and the close.
  - one KeyUpdate per record, as fast as the socket takes them: valid,
    and answered (on the record layer one answer for all the requests
    that came together), but a client that never reads must not make
    usher hold the answers: reading stops while they wait. The pre-auth
    timeout then ends the session.
The client's receive window is small (keyupdate_storm.c), so that what
the kernels buffer fills within the storm and usher's own buffers are
what is measured.
The worker's VmRSS is sampled every 50 ms while the storm runs."""
import os
import subprocess
import threading
import time
import unittest

import harness

BUILD = os.environ.get('USHER_BUILD_DIR', os.path.join(harness.ROOT, 'build'))
STORM = os.path.join(BUILD, 'tests', 'keyupdate_storm')
MIB = 1024
ALERT_RECORD = 19   # a TLS 1.3 alert under AES-128-GCM: 2 bytes, the type, the tag
PREAUTH_TIMEOUT = 3


def vmrss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS for %d' % pid)


@unittest.skipUnless(os.path.exists(STORM), 'keyupdate_storm not built')
class KeyUpdateStorm(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.env = harness.Env()
        cls.b1 = cls.env.dovecot('backend1')
        limits = {'preauth_timeout': '%ds' % PREAUTH_TIMEOUT}
        cls.on = cls.env.usher(backends=[cls.b1], workers=1, extra={'limits': limits})
        cls.off = cls.env.usher(backends=[cls.b1], workers=1,
                                extra={'limits': limits,
                                       'tls': {'release_after_handshake': 'no'}})

    @classmethod
    def tearDownClass(cls):
        reports = cls.env.close()
        assert reports == [], '\n'.join(reports)

    def warm(self, u):
        """One TLS session first: OpenSSL's one-time allocations are not the storm's."""
        c = harness.RawClient(u.tls_port, tls_ctx=self.env.tls_context())
        c.send(b'a LOGOUT\r\n')
        c.until_tagged(b'a')
        c.close()
        time.sleep(0.3)

    def storm(self, u, per_record, seconds):
        """Runs the helper while sampling the worker's VmRSS: (start KiB,
        highest KiB, the helper's figures)."""
        self.warm(u)
        (worker,) = u.child_pids('worker')
        start = vmrss_kib(worker)
        samples, done = [start], threading.Event()

        def sample():
            while not done.is_set():
                samples.append(vmrss_kib(worker))
                time.sleep(0.05)

        t = threading.Thread(target=sample)
        t.start()
        try:
            p = subprocess.run([STORM, str(u.tls_port), '--per-record', str(per_record),
                                '--seconds', str(seconds), '--wait', '15'],
                               capture_output=True, text=True, timeout=60)
        finally:
            done.set()
            t.join()
        self.assertEqual(p.returncode, 0, p.stderr)
        fig = dict(kv.split('=') for kv in p.stdout.split())
        print('\n%s, %d KeyUpdates per record: %s; worker VmRSS %d KiB at the start, '
              'at most %d KiB (+%d)' % (u.conf, per_record, p.stdout.strip(), start,
                                        max(samples), max(samples) - start))
        self.assertEqual(u.child_pids('worker'), [worker])   # no crash, no restart
        return start, max(samples), fig

    def assert_bounded(self, start, peak):
        # Under AddressSanitizer freed memory sits in its quarantine (256 MB)
        # and the worker's RSS grows with any traffic: no bound to check.
        if not harness.sanitized_build():
            self.assertLessEqual(peak - start, MIB)

    def check_packed(self, u):
        start, peak, fig = self.storm(u, 3276, 8)
        self.assert_bounded(start, peak)
        self.assertEqual(fig['closed'], '1', fig)
        self.assertEqual(int(fig['last_record']), ALERT_RECORD, fig)
        self.assertLessEqual(int(fig['records']), 4, fig)   # refused at the first

    def check_one_per_record(self, u):
        start, peak, fig = self.storm(u, 1, PREAUTH_TIMEOUT + 5)
        self.assert_bounded(start, peak)
        self.assertGreater(int(fig['records']), 1000, fig)   # a storm, not a trickle
        # Valid, so no alert: the pre-auth timeout ends the session. Its BYE
        # and close_notify wait behind the answers the client never read,
        # and are dropped with the connection after the flush time.
        self.assertEqual(fig['closed'], '1', fig)
        self.assertIn('reason=preauth_timeout', u.log())

    def test_packed_keyupdates_record_layer(self):
        self.check_packed(self.on)

    def test_packed_keyupdates_openssl(self):
        self.check_packed(self.off)

    def test_keyupdate_per_record_record_layer(self):
        self.check_one_per_record(self.on)

    def test_keyupdate_per_record_openssl(self):
        # OpenSSL answers each request on its own and wrote every answer to
        # the socket side while it went on reading: +3 MB in 3 s here, and
        # growing, until tlsaccept.c paused the reading (pause_while_unsent).
        self.check_one_per_record(self.off)


if __name__ == '__main__':
    unittest.main()
