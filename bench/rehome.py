#!/usr/bin/env python3
"""Re-homing live sessions (issue 24), measured on real Dovecot backends
sharing one maildir, through usher built in build/.

  kill   N sessions in each state (IDLE, selected and waiting, logged in
         but not selected, an APPEND half sent) on two backends; one
         backend is killed (SIGKILL of its whole process tree), a message
         is delivered to every user, and each session is checked: still
         connected and told of the new mail (or answering NOOP), or ended,
         by reason. Time to resume comes from usher's log (event=rehome ms=).
  drain  S sessions in IDLE for users in LDAP; `backend a drain --migrate`
         moves every user off backend a. Counted: sessions the clients saw
         end (reconnects they would make), LDAP binds during the drain
         (slapd's log), time until backend a holds no session.

Every session that did not survive is printed with its reason; the figures
go to stdout as key=value and, with --out, to a markdown file.
Python standard library only."""
import argparse
import json
import os
import selectors
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'integration'))
os.environ.setdefault('USHER_BIN', os.path.join(HERE, '..', 'build', 'usher'))
os.environ.setdefault('USHERCTL_BIN', os.path.join(HERE, '..', 'build', 'usherctl'))

import harness  # noqa: E402
from harness import Env, Usher, deliver, wait_until  # noqa: E402
from test_ldap_cache import ldap_sections  # noqa: E402

# One imap process per session (Dovecot 2.3 does not share them here): room
# for every session on one backend, after a drain.
DOVECOT_BIG = """service imap {
  process_limit = 6000
}
service imap-login {
  process_limit = 20
}
default_client_limit = 12000
mailbox_idle_check_interval = 1 secs
"""


def raise_inotify_limit():
    """Dovecot's IDLE watches the maildir with inotify, an instance per
    session; the kernel's default of 128 per user would make the rest poll."""
    try:
        with open('/proc/sys/fs/inotify/max_user_instances', 'r+') as f:
            if int(f.read()) < 16384:
                f.seek(0)
                f.write('16384')
    except OSError as e:
        print('note: cannot raise inotify max_user_instances (%s)' % e)


class Conn:
    """One scripted IMAP session, driven by the event loop below."""

    def __init__(self, port, user, password, state):
        self.user, self.password, self.state = user, password, state
        self.sock = socket.create_connection(('127.0.0.1', port))
        self.sock.setblocking(False)
        self.buf = b''
        self.step = 'greeting'
        self.ended = None        # why it ended, or None while alive
        self.exists = None
        self.notified = False    # saw the EXISTS for the mail delivered after the fault

    def send(self, data):
        self.sock.sendall(data)

    def lines(self, data):
        self.buf += data
        while b'\r\n' in self.buf:
            line, self.buf = self.buf.split(b'\r\n', 1)
            yield line

    def on_line(self, line):
        """Advances the script; returns False when the session is set up."""
        if line.startswith(b'* BYE'):
            self.ended = 'bye:' + line.decode(errors='replace')[6:40]
            return
        if line.startswith(b'* ') and line.endswith(b' EXISTS'):
            n = int(line.split()[1])
            if self.exists is not None and n > self.exists and self.step == 'ready':
                self.notified = True
            self.exists = n
        if self.step == 'greeting':
            self.send(b'l LOGIN %s %s\r\n' % (self.user.encode(), self.password.encode()))
            self.step = 'login'
        elif self.step == 'login' and line.startswith(b'l '):
            if not line.startswith(b'l OK'):
                self.ended = 'login:' + line.decode(errors='replace')[:60]
            elif self.state == 'auth':
                self.step = 'ready'
            else:
                self.send(b's SELECT INBOX\r\n')
                self.step = 'select'
        elif self.step == 'select' and line.startswith(b's '):
            if self.state == 'idle':
                self.send(b'i IDLE\r\n')
                self.step = 'idle'
            elif self.state == 'append':
                self.send(b'x APPEND INBOX {100}\r\n')
                self.step = 'append'
            else:
                self.step = 'ready'
        elif self.step == 'idle' and line.startswith(b'+'):
            self.step = 'ready'
        elif self.step == 'append' and line.startswith(b'+'):
            self.send(b'From: half\r\n')
            self.step = 'ready'
        elif self.step == 'poke' and line.startswith(b'n '):
            self.step = 'ready'
            self.notified = self.notified or line.startswith(b'n OK')


def run_loop(conns, until, timeout):
    sel = selectors.DefaultSelector()
    for c in conns:
        if not c.ended:
            sel.register(c.sock, selectors.EVENT_READ, c)
    deadline = time.time() + timeout
    while time.time() < deadline and not until():
        for key, _ in sel.select(0.2):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except (ConnectionResetError, BlockingIOError) as e:
                if isinstance(e, BlockingIOError):
                    continue
                data = b''
            if not data:
                c.ended = c.ended or 'closed'
                sel.unregister(c.sock)
                continue
            for line in c.lines(data):
                c.on_line(line)
            if c.ended:
                sel.unregister(c.sock)
    sel.close()


def print_setup_lost(conns):
    reasons = {}
    for c in conns:
        if c.ended:
            reasons[c.ended] = reasons.get(c.ended, 0) + 1
    for why, n in sorted(reasons.items()):
        print('  setup_lost reason=%s sessions=%d' % (why, n))


def percentile(xs, p):
    if not xs:
        return float('nan')
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def rehome_times(log):
    out = []
    for line in log.splitlines():
        if 'event=rehome ' in line and 'result=ok' in line:
            for part in line.split():
                if part.startswith('ms='):
                    out.append(int(part[3:]))
    return out


def ends_by_reason(log):
    reasons = {}
    for line in log.splitlines():
        if 'event=rehome_end ' in line or 'event=rehome_skipped ' in line:
            r = [p for p in line.split() if p.startswith('reason=')]
            key = line.split('event=')[1].split()[0] + ':' + (r[0][7:] if r else '?')
            reasons[key] = reasons.get(key, 0) + 1
    return reasons


BASELINE = False   # --baseline: usher as it was before re-homing (no such keys)


def usher_extra(env):
    if BASELINE:
        return {'routing': {'health_interval': '0'}, 'limits': {'max_connections_per_ip': 0}}
    return {'routing': {'rehome': 'yes', 'master_user': env.master_user,
                        'master_password_file': env.master_password_file,
                        'health_interval': '0'},
            'limits': {'max_connections_per_ip': 0}}


def bench_kill(args):
    env = Env()
    try:
        a = env.dovecot('a', extra_conf=DOVECOT_BIG)
        b = env.dovecot('b', extra_conf=DOVECOT_BIG)
        u = Usher(env, [a, b], extra=usher_extra(env))
        env.ushers.append(u)
        users = sorted(harness.USERS)
        for user in users:
            deliver(env, user, 'before')
        conns = []
        for i in range(args.sessions):
            for state in ('idle', 'selected', 'auth', 'append'):
                user = users[i % len(users)]
                conns.append(Conn(u.port, user, harness.USERS[user], state))
        run_loop(conns, lambda: all(c.step == 'ready' or c.ended for c in conns), 60)
        setup_lost = [c for c in conns if c.ended]
        seat = {user: json.loads(u.admin('who ' + user))['seat'] for user in users}
        victims = [c for c in conns if not c.ended and seat[c.user] == 'a']
        a.kill()
        t0 = time.time()
        for user in users:
            deliver(env, user, 'after')
        # IDLE sessions are told by the new backend; the others ask.
        time.sleep(2)
        for c in victims:
            if c.state in ('selected', 'auth') and not c.ended:
                try:
                    c.send(b'n NOOP\r\n')
                    c.step = 'poke'
                except OSError:
                    c.ended = 'send_failed'
        run_loop(victims, lambda: all(c.ended or (c.notified and c.step == 'ready')
                                      for c in victims if c.state != 'append'), 60)
        elapsed = time.time() - t0
        log = u.log()
        times = rehome_times(log)
        print('scenario=kill sessions_per_state=%d setup_lost=%d on_killed_backend=%d' %
              (args.sessions, len(setup_lost), len(victims)))
        print_setup_lost(setup_lost)
        rows = []
        for state in ('idle', 'selected', 'auth', 'append'):
            vs = [c for c in victims if c.state == state]
            ok = [c for c in vs if not c.ended and c.notified]
            rows.append((state, len(vs), len(ok)))
            print('state=%s sessions=%d survived=%d share=%.3f' %
                  (state, len(vs), len(ok), len(ok) / len(vs) if vs else float('nan')))
            lost = {}
            for c in vs:
                if c not in ok:
                    lost[c.ended or 'not_notified'] = lost.get(c.ended or 'not_notified', 0) + 1
            for why, n in sorted(lost.items()):
                print('  lost state=%s reason=%s sessions=%d' % (state, why, n))
        print('resume_ms_p50=%s resume_ms_p99=%s rehomes=%d wall_s=%.1f' %
              (percentile(times, 50), percentile(times, 99), len(times), elapsed))
        print('usher_ends=%s' % json.dumps(ends_by_reason(log), sort_keys=True))
        for c in conns:
            c.sock.close()
        env.stop_all()
        return {'rows': rows, 'p50': percentile(times, 50), 'p99': percentile(times, 99),
                'ends': ends_by_reason(log), 'setup_lost': len(setup_lost)}
    finally:
        env.close()


def bench_drain(args):
    env = Env()
    try:
        slapd = env.slapd()
        slapd.pw_file = env.secret_file('ldap.pw', slapd.SERVICE_PW)
        users = ['d%04d' % i for i in range(args.drain_users)]
        for user in users:
            slapd.add_user(user, 'pw-' + user)
        a = env.dovecot('a', trust_proxy=True, extra_conf=DOVECOT_BIG)
        b = env.dovecot('b', trust_proxy=True, extra_conf=DOVECOT_BIG)
        extra = usher_extra(env)
        secret = env.secret_file('cache.secret', 'bench-cache-secret-0123456789abcdef')
        extra.update(ldap_sections(slapd, None, secret))
        u = Usher(env, [a, b], extra=extra, users_file='')
        env.ushers.append(u)
        conns = []
        for i in range(args.drain_sessions):
            user = users[i % len(users)]
            conns.append(Conn(u.port, user, 'pw-' + user, 'idle'))
            if len(conns) % 200 == 0:   # keep the accept queue and LDAP pool unhurried
                run_loop(conns, lambda: all(c.step == 'ready' or c.ended for c in conns), 60)
        run_loop(conns, lambda: all(c.step == 'ready' or c.ended for c in conns), 120)
        setup_lost = [c for c in conns if c.ended]
        if setup_lost:
            bad = [l for l in u.log().splitlines() if 'proc=sessiond' in l and 'result=ok' not in l and 'hello' not in l]
            print('\n'.join(bad[:8]))
            for d in (a, b):
                with open(d.log, errors='replace') as f:
                    print(''.join([l for l in f if ('Error' in l or 'Fatal' in l or 'limit' in l) and 'Inotify' not in l][:6]))
        on_a = len(json.loads(u.admin('sessions --backend a')).get('sessions', []))   # may differ per build
        binds0 = len(slapd.binds())
        t0 = time.time()
        answer = u.admin('backend a drain --migrate --rate %d' % args.rate)
        done = wait_until(lambda: not a.process_users(), args.drain_timeout, step=0.2)
        elapsed = time.time() - t0
        # Every moved session has resumed (or ended) once usher logged it.
        wait_until(lambda: len(rehome_times(u.log())) + sum(ends_by_reason(u.log()).values())
                   >= on_a, 120, step=0.5)
        settled = time.time() - t0
        # Then mail for everyone: each session must still be there and told.
        for c in conns:
            if c.exists is None:
                c.exists = 0
        for user in users:
            deliver(env, user, 'after-drain')
        run_loop(conns, lambda: all(c.ended or c.notified for c in conns), 90)
        told = sum(1 for c in conns if c.notified and not c.ended)
        ended = [c for c in conns if c.ended and c not in setup_lost]
        binds = len(slapd.binds()) - binds0
        times = rehome_times(u.log())
        print('scenario=drain sessions=%d users=%d setup_lost=%d on_a=%s answer=%s' %
              (len(conns), len(users), len(setup_lost), on_a, answer.strip()))
        print('drained=%s drain_s=%.1f settled_s=%.1f sessions_ended=%d told_of_new_mail=%d '
              'ldap_binds=%d rehomes=%d resume_ms_p50=%s resume_ms_p99=%s' %
              (done, elapsed, settled, len(ended), told, binds, len(times),
               percentile(times, 50), percentile(times, 99)))
        print_setup_lost(setup_lost)
        lost = {}
        for c in ended:
            lost[c.ended] = lost.get(c.ended, 0) + 1
        for why, n in sorted(lost.items()):
            print('  lost reason=%s sessions=%d' % (why, n))
        for c in conns:
            c.sock.close()
        env.stop_all()
        return {'drained': done, 'drain_s': elapsed, 'ended': len(ended), 'binds': binds,
                'rehomes': len(times), 'p50': percentile(times, 50),
                'p99': percentile(times, 99), 'setup_lost': len(setup_lost)}
    finally:
        env.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('scenario', choices=['kill', 'drain', 'all'])
    ap.add_argument('--sessions', type=int, default=250, help='kill: sessions per state')
    ap.add_argument('--drain-sessions', type=int, default=5000)
    ap.add_argument('--drain-users', type=int, default=500)
    ap.add_argument('--rate', type=int, default=200, help='drain: users moved per second')
    ap.add_argument('--drain-timeout', type=float, default=120)
    ap.add_argument('--baseline', action='store_true',
                    help='usher without re-homing (a build from before it)')
    args = ap.parse_args()
    global BASELINE
    BASELINE = args.baseline
    raise_inotify_limit()
    if args.scenario in ('kill', 'all'):
        bench_kill(args)
    if args.scenario in ('drain', 'all'):
        bench_drain(args)


if __name__ == '__main__':
    main()
