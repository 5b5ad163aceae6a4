"""The metrics endpoint cannot starve logins (issue 22, item 8).

The endpoint runs inside sessiond, the process every login goes through.
Here thousands of idle connections and some slowloris ones (a header byte
a second) are held on it while 200 logins run from several threads; the
same logins without that load, in the same test, are the yardstick.

sessiond gets SESSIOND_NOFILE descriptors for the test (prlimit): the
shipped unit gives it 200000, more than one test process can open, so the
flood is scaled down with it. Without a connection limit on the endpoint
the flood takes every descriptor sessiond has."""
import http.client
import imaplib
import os
import select
import socket
import statistics
import subprocess
import threading
import time
import unittest

import harness
from harness import USERS

FLOOD = 3000             # idle connections held on the metrics port
SLOW = 20                # slowloris connections during the flood
LOGINS = 200
THREADS = 8
LOGIN_SPACING_S = 0.5    # 200 logins over 12.5 s: the flood lasts
SETTLE_S = 3             # the flood is in place before the logins start
SESSIOND_NOFILE = 2048   # fewer than FLOOD: an unlimited endpoint runs out
TIMEOUT_S = 5            # [metrics] timeout's default
MAX_CONNECTIONS = 64     # [metrics] max_connections' default
MAX_LATENCY_RATIO = 5.0
P99_FLOOR_S = 0.05       # a baseline p99 below this counts as this (a shared machine)


def login_once(port, user):
    """Seconds from connect to the tagged OK of LOGIN; None on failure."""
    start = time.monotonic()
    try:
        m = imaplib.IMAP4('127.0.0.1', port, timeout=20)
        m.login(user, USERS[user])
        took = time.monotonic() - start
        m.logout()
        return took
    except (OSError, imaplib.IMAP4.error, EOFError):
        return None


def run_logins(port):
    """LOGINS logins from THREADS threads, each thread's spaced LOGIN_SPACING_S
    apart: (latencies of the good ones, failures)."""
    results = []
    lock = threading.Lock()

    def worker(t):
        start = time.monotonic() + t * LOGIN_SPACING_S / THREADS
        for i in range(LOGINS // THREADS):
            time.sleep(max(0, start + i * LOGIN_SPACING_S - time.monotonic()))
            user = 'user%02d' % ((t * 7 + i) % 40 + 1)
            took = login_once(port, user)
            with lock:
                results.append(took)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    good = [r for r in results if r is not None]
    return good, len(results) - len(good)


def p99(values):
    return statistics.quantiles(values, n=100)[98]


def get_metrics(port, timeout=5):
    """(status, body) of GET /metrics; (None, error) when it cannot be had."""
    try:
        c = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
        c.request('GET', '/metrics')
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r.status, body
    except (OSError, http.client.HTTPException) as e:
        return None, repr(e)


def metric(body, name):
    for line in body.splitlines():
        if line.startswith(name + ' '):
            return float(line.rsplit(' ', 1)[1])
    return None


class Holder:
    """Connections to a port that nobody uses: idle ones (nothing sent), or
    slow ones (a request line, then one header byte a second). When
    `reconnect`, those the server closes are opened again once a second, as
    an attacker keeps up the pressure. Records how long each one lived."""

    def __init__(self, port, n, slow=False, reconnect=True):
        self.port, self.n, self.slow, self.reconnect = port, n, slow, reconnect
        self.socks = {}        # fd -> (socket, opened at)
        self.lifetimes = []    # seconds each closed-by-the-server connection lived
        self.opened = 0
        self.dripping = set()  # slow ones that have sent their request line
        self.poll = select.poll()
        self.stopping = False
        self._fill()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(('127.0.0.1', self.port))
        self.socks[s.fileno()] = (s, time.monotonic())
        self.poll.register(s.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        self.opened += 1

    def _closed(self, fd):
        s, opened = self.socks.pop(fd)
        self.dripping.discard(fd)
        self.poll.unregister(fd)
        self.lifetimes.append(time.monotonic() - opened)
        s.close()

    def _drip(self):
        for fd, (s, _) in list(self.socks.items()):
            try:
                if fd in self.dripping:
                    s.send(b'a')
                else:
                    s.send(b'GET /metrics HTTP/1.1\r\nX-Slow: ')
                    self.dripping.add(fd)
            except BlockingIOError:
                pass
            except OSError:
                self._closed(fd)

    def _fill(self):
        # In bursts the listen queue can take: a connection it drops waits
        # for the kernel's retries, and a flood that fast floods nothing.
        while len(self.socks) < self.n:
            for _ in range(min(32, self.n - len(self.socks))):
                self._open()
            time.sleep(0.005)

    def _run(self):
        while not self.stopping:
            if self.reconnect:
                self._fill()
            if self.slow:
                self._drip()
            round_end = time.monotonic() + 1
            while not self.stopping and time.monotonic() < round_end:
                for fd, _ in self.poll.poll(100):
                    if fd not in self.socks:
                        continue
                    try:
                        if self.socks[fd][0].recv(4096) == b'':
                            self._closed(fd)
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._closed(fd)

    def open_now(self):
        return len(self.socks)

    def stop(self):
        self.stopping = True
        self.thread.join()
        for s, _ in self.socks.values():
            s.close()
        self.socks.clear()


def open_fds(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


class MetricsLimitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = harness.Env()
        cls.b1 = cls.env.dovecot('backend1')
        cls.b2 = cls.env.dovecot('backend2')
        cls.metrics_port = harness.free_port()
        cls.u = cls.env.usher(workers=2, extra={
            'usher': {'metrics': '127.0.0.1:%d' % cls.metrics_port}})
        cls.sessiond = cls.u.child_pids('sessiond')[0]
        subprocess.run(['prlimit', '--pid', str(cls.sessiond),
                        '--nofile=%d:%d' % (SESSIOND_NOFILE, SESSIOND_NOFILE)], check=True)

    @classmethod
    def tearDownClass(cls):
        rc = cls.u.stop()
        cls.env.close()   # raises with the log lines of any crash
        assert rc == 0, rc

    def test_1_idle_and_slow_connections_are_closed_after_the_timeout(self):
        idle = Holder(self.metrics_port, 30, reconnect=False)
        slow = Holder(self.metrics_port, 10, slow=True, reconnect=False)
        deadline = time.monotonic() + TIMEOUT_S + 8
        while (idle.open_now() or slow.open_now()) and time.monotonic() < deadline:
            time.sleep(0.2)
        idle.stop()
        slow.stop()
        print('\nidle connections closed after %s s, slowloris after %s s (timeout %d s)'
              % (fmt_range(idle.lifetimes), fmt_range(slow.lifetimes), TIMEOUT_S))
        self.assertEqual(len(idle.lifetimes), 30, 'idle connections still open')
        self.assertEqual(len(slow.lifetimes), 10, 'slowloris connections still open')
        for lived in idle.lifetimes + slow.lifetimes:
            self.assertGreater(lived, TIMEOUT_S - 0.5)
            self.assertLess(lived, TIMEOUT_S + 2)

    def test_2_logins_go_on_during_a_flood(self):
        fds_before = open_fds(self.sessiond)
        base, base_failed = run_logins(self.u.port)
        self.assertEqual(base_failed, 0, 'logins failed without any load')

        flood = Holder(self.metrics_port, FLOOD)
        slow = Holder(self.metrics_port, SLOW, slow=True)
        try:
            time.sleep(SETTLE_S)
            held_fds = open_fds(self.sessiond)
            during = []
            scraper_stop = threading.Event()

            def scrape():   # and count sessiond's descriptors as it goes
                nonlocal held_fds
                while not scraper_stop.is_set():
                    during.append(get_metrics(self.metrics_port)[0])
                    held_fds = max(held_fds, open_fds(self.sessiond))
                    scraper_stop.wait(0.2)

            scraper = threading.Thread(target=scrape)
            scraper.start()
            loaded, loaded_failed = run_logins(self.u.port)
            scraper_stop.set()
            scraper.join()
            held_fds = max(held_fds, open_fds(self.sessiond))
            opened = flood.opened + slow.opened
        finally:
            flood.stop()
            slow.stop()
        status_after, body_after = get_metrics(self.metrics_port)

        ratio = p99(loaded) / max(p99(base), P99_FLOOR_S) if loaded else float('inf')
        print('\nlogins without load: %d ok, %d failed, p50 %.1f ms, p99 %.1f ms'
              % (len(base), base_failed, 1000 * statistics.median(base), 1000 * p99(base)))
        if loaded:
            print('logins during the flood (%d idle + %d slowloris held, %d connects): '
                  '%d ok, %d failed, p50 %.1f ms, p99 %.1f ms, p99 ratio %.2f'
                  % (FLOOD, SLOW, opened, len(loaded), loaded_failed,
                     1000 * statistics.median(loaded), 1000 * p99(loaded), ratio))
        else:
            print('logins during the flood: all %d failed' % loaded_failed)
        print('sessiond descriptors: %d before, at most %d during the flood (it may have %d); '
              'scrapes during the flood: %d of %d answered 200; after: %s'
              % (fds_before, held_fds, SESSIOND_NOFILE, during.count(200), len(during),
                 status_after))

        self.assertEqual(loaded_failed, 0, 'logins failed during the flood')
        # The median, not the p99, is asserted: on a shared 2-core machine
        # (a sanitizer build, other tests alongside) a few logins can take a
        # second whatever the metrics port does; the p99 is printed above.
        # Without the limits, logins failed outright (28 and 34 of 200).
        median_ratio = (statistics.median(loaded) / max(statistics.median(base), P99_FLOOR_S)
                        if loaded else float('inf'))
        self.assertLess(median_ratio, MAX_LATENCY_RATIO)
        # + 2: the health checks' sockets, which come and go with their own timer
        self.assertLessEqual(held_fds, fds_before + MAX_CONNECTIONS + 2,
                             'the flood holds more descriptors in sessiond than the limit')
        # A scrape may lose its connection to the eviction before sessiond
        # reads its request (the flood reconnects thousands a second; under
        # a sanitizer on a loaded machine that happened to 2 of 54): like
        # Prometheus, the scraper gets the next one. Without the limits,
        # 2 of 5 timed out and the rest took seconds.
        self.assertTrue(during, 'no scrape during the flood')
        self.assertGreaterEqual(during.count(200), 0.9 * len(during), during)
        self.assertEqual(status_after, 200, body_after)
        self.assertGreater(metric(body_after, 'usher_metrics_connections_closed_total'
                                              '{reason="evicted"}') or 0, 0)

    def test_3_only_get_and_head_of_the_metrics_path(self):
        def ask(request):
            with socket.create_connection(('127.0.0.1', self.metrics_port), timeout=5) as s:
                s.sendall(request)
                reply = b''
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        return reply
                    reply += chunk

        get = ask(b'GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n')
        self.assertTrue(get.startswith(b'HTTP/1.1 200 OK\r\n'), get[:100])
        self.assertIn(b'\r\nConnection: close\r\n', get)
        self.assertIn(b'usher_logins_total{result="ok"}', get)
        head = ask(b'HEAD /metrics HTTP/1.0\n\n')   # bare LFs too
        self.assertTrue(head.startswith(b'HTTP/1.1 200 OK\r\n'), head)
        self.assertTrue(head.endswith(b'\r\n\r\n'), 'HEAD has no body')
        post = ask(b'POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nab')
        self.assertTrue(post.startswith(b'HTTP/1.1 405 '), post)
        self.assertIn(b'\r\nAllow: GET, HEAD\r\n', post)
        self.assertTrue(ask(b'GET /metricsx HTTP/1.1\r\n\r\n').startswith(b'HTTP/1.1 404 '))
        self.assertTrue(ask(b'GET /\r\n\r\n').startswith(b'HTTP/1.1 400 '))
        self.assertTrue(ask(b'\x00\xff garbage\r\n\r\n').startswith(b'HTTP/1.1 400 '))
        big = ask(b'GET /metrics HTTP/1.1\r\nX-Big: ' + b'a' * 9000 + b'\r\n\r\n')
        self.assertTrue(big.startswith(b'HTTP/1.1 431 '), big[:100])

    def test_4_a_render_serves_the_scrapes_of_one_second(self):
        logins = 'usher_logins_total{result="ok"}'
        time.sleep(1.1)   # nothing rendered within the last render_interval
        status, first = get_metrics(self.metrics_port)
        self.assertEqual(status, 200)
        self.assertIsNotNone(login_once(self.u.port, 'alice'))
        _, second = get_metrics(self.metrics_port)
        self.assertEqual(metric(second, logins), metric(first, logins),
                         'scraped again within render_interval: rendered again')
        time.sleep(1.1)
        _, third = get_metrics(self.metrics_port)
        self.assertEqual(metric(third, logins), metric(first, logins) + 1)


def fmt_range(values):
    return '%.1f..%.1f' % (min(values), max(values)) if values else '-'


if __name__ == '__main__':
    unittest.main()
