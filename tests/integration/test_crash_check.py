"""The harness notices when usher goes wrong: a child that dies (the master
restarts it silently), a restart, a sanitizer report. Env.close() raises
with those log lines; exits a test causes on purpose, once declared with
Usher.expect_child_exits(), are no report."""
import os
import signal
import time
import unittest

import harness
from harness import crash_reports

START = ('ts=x level=info proc=master event=start version=0.1.0 workers=1 config=c\n'
         'ts=x level=info proc=master event=child_start role=sessiond id=0 pid=10\n'
         'ts=x level=info proc=master event=child_start role=worker id=1 pid=11\n')
STOP = ('ts=x level=info proc=master event=stopping children=2\n'
        'ts=x level=info proc=master event=child_exit role=worker id=1 status=0 lived_ms=9\n'
        'ts=x level=info proc=master event=child_exit role=sessiond id=0 status=0 lived_ms=9\n')
SEGV = ('ts=x level=error proc=master event=child_exit role=worker id=1 signal=11 lived_ms=9\n'
        'ts=x level=info proc=master event=child_start role=worker id=1 pid=12\n')
KILL = SEGV.replace('signal=11', 'signal=9')


class CrashReportsTest(unittest.TestCase):
    """crash_reports() on made-up logs: what counts and what does not."""

    def test_a_clean_run_and_a_graceful_stop_are_no_report(self):
        self.assertEqual(crash_reports(START + STOP), [])
        self.assertEqual(crash_reports(START + STOP + START + STOP), [])   # usher started twice

    def test_a_signal_and_its_restart_are_reported(self):
        self.assertEqual(crash_reports(START + SEGV + STOP), SEGV.splitlines())

    def test_a_status_exit_is_reported_also_during_the_stop(self):
        bad_stop = STOP.replace('role=worker id=1 status=0', 'role=worker id=1 status=1')
        self.assertEqual(crash_reports(START + bad_stop), [bad_stop.splitlines()[1]])
        self.assertEqual(len(crash_reports(START + SEGV.replace('signal=11', 'status=0') + STOP)),
                         2, 'an exit while usher runs is one, whatever its status')

    def test_a_sanitizer_report_comes_with_its_stack(self):
        asan = ['==12==ERROR: AddressSanitizer: heap-use-after-free on address 0x1']
        asan += ['    #%d 0x1 in f%d proxy/client.c:%d' % (i, i, i) for i in range(30)]
        reports = crash_reports(START + '\n'.join(asan) + '\n' + STOP)
        self.assertEqual(reports, asan[:1 + harness.REPORT_CONTEXT])

    def test_declared_exits_are_tolerated_and_nothing_else(self):
        self.assertEqual(crash_reports(START + KILL + STOP, [('worker', 1, (9, 15))]), [])
        # a SIGSEGV is not the SIGKILL the test sent
        self.assertEqual(crash_reports(START + SEGV + STOP, [('worker', 1, (9, 15))])[:2],
                         SEGV.splitlines())
        # a second exit is one more than declared
        self.assertEqual(crash_reports(START + KILL + KILL + STOP, [('worker', 1, (9,))]),
                         KILL.splitlines())
        # sessiond's exit was declared, not the worker's
        self.assertEqual(crash_reports(START + KILL + STOP, [('sessiond', 1, (9,))])[:2],
                         KILL.splitlines())

    def test_a_declared_exit_that_did_not_happen_is_reported(self):
        reports = crash_reports(START + STOP, [('worker', 1, (9,))])
        self.assertEqual(len(reports), 1)
        self.assertIn('did not happen', reports[0])


# A worker's SIGSEGV as the master logs it: ASan catches the signal, prints
# its report and exits with status 1.
CRASH = r'event=child_exit role=worker id=\d (signal=11|status=1) '


def wait_for(predicate, timeout=10):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError('timed out')
        time.sleep(0.05)


class CrashCheckTest(unittest.TestCase):
    """A real usher, a worker killed from outside."""

    def setUp(self):
        self.env = harness.Env()
        self.addCleanup(self.close_quietly)   # after a failure before the test's own close()
        self.env.dovecot('backend1')
        self.u = self.env.usher(workers=2)

    def close_quietly(self):
        try:
            self.env.close()
        except AssertionError:
            pass

    def kill_a_worker(self, sig):
        pid = self.u.child_pids('worker')[0]
        ups = self.u.log().count('event=sessiond_up')
        os.kill(pid, sig)
        # The master restarted it and the new worker is ready.
        wait_for(lambda: self.u.log().count('event=sessiond_up') > ups)
        self.assertNotIn(pid, self.u.child_pids('worker'))

    def test_a_worker_killed_by_sigsegv_fails_the_test(self):
        self.kill_a_worker(signal.SIGSEGV)
        reports = '\n'.join(self.u.crash_reports())
        self.assertRegex(reports, CRASH)
        self.assertRegex(reports, r'event=child_start role=worker ')   # the restart
        if harness.sanitized_build():
            self.assertIn('ERROR: AddressSanitizer: SEGV', reports)
            self.assertIn('in worker_main', reports)   # the stack came along
        with self.assertRaises(AssertionError) as caught:
            self.env.close()
        self.assertRegex(str(caught.exception), CRASH)   # the message shows the lines

    def test_a_declared_kill_is_tolerated(self):
        self.u.expect_child_exits(role='worker', count=1)
        self.kill_a_worker(signal.SIGKILL)
        self.assertEqual(self.env.close(), [])

    def test_a_declared_kill_does_not_cover_a_crash(self):
        self.u.expect_child_exits(role='worker', count=1)
        self.kill_a_worker(signal.SIGKILL)
        self.kill_a_worker(signal.SIGSEGV)
        with self.assertRaises(AssertionError) as caught:
            self.env.close()
        self.assertRegex(str(caught.exception), CRASH)
        self.assertNotIn('signal=9', str(caught.exception))


if __name__ == '__main__':
    unittest.main()
