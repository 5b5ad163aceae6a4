#!/usr/bin/env python3
"""The long TLS run (issue 21): 100,000 TLS login sessions and 9,000 TLS
sessions parked in IDLE for 5 minutes, with zero sessions lost, and the TLS
figures taken on that basis, against nginx's mail proxy measured in the
same run. Too long for the test suite; run it as

  bench/run.sh tls-full [--logins 100000] [--idle 9000] [--hold 300] [--out FILE]

What runs, all at once, in front of one stub backend (usher-stub-backend,
the benchmark's own; no Dovecot, so that the proxies' costs are what is
measured):
  usher, 2 workers, record layer on  (release_after_handshake = yes, the default)
  usher, 2 workers, record layer off (release_after_handshake = no: OpenSSL throughout)
  nginx mail, 2 workers, the peer
Each session of the C load generator (bench/loadgen.c, OpenSSL, one event
loop, 50 sessions in parallel, a full handshake per session): connect,
TLS (implicit, or STARTTLS), LOGIN, SELECT INBOX, LOGOUT.

1. The idle sessions are parked first: a quarter of --idle on each of the
   four usher configurations (implicit TLS or STARTTLS, record layer on or
   off), each quarter its own load generator process (the descriptor limit
   is per process), and as many on nginx (implicit TLS and STARTTLS). Each
   program's memory (VmRSS of its workers, PSS of its process tree) is
   taken before and after; the difference over the parked sessions is the
   memory per idle session.
2. While they stay parked (--hold seconds from the moment they are all
   in), the logins run: --logins over the four usher configurations, and
   a fifth of one configuration's share per kind on nginx, in --slices turns, each turn giving
   every configuration its share one after another, so that others' load
   on this shared machine falls on all of them alike.
3. The idle load generators end their hold; every session still parked
   counts. Any lost usher session (the load generator names each by
   reason), or any usher child that exited, fails the run (exit 1).
The result goes to bench/results/DATE-tls-full.md (or --out)."""
import argparse
import datetime
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the programs and the process-tree measures)

ROOT = compare.ROOT
COMMON = ['--user-count', str(compare.USERS), '--password', 'pw', '--timeout', '60']
CONCURRENCY = 50


class UsherTLS(compare.Usher):
    """usher, 2 workers, with the record layer on or off."""

    def __init__(self, work, backend_port, cert, key, release):
        self.name = 'usher record layer ' + ('on' if release else 'off')
        self.binary = compare.USHER
        self.workers = 2
        self.release = release
        compare.Program.__init__(self, work, backend_port, cert, key)

    def command(self):
        argv = super().command()
        conf = argv[-1]
        with open(conf) as f:
            text = f.read()
        text = text.replace('[tls]\n', '[tls]\nrelease_after_handshake = %s\n'
                            % ('yes' if self.release else 'no'))
        with open(conf, 'w') as f:
            f.write(text)
        return argv


def vmrss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open('/proc/%d/status' % p) as f:
                for line in f:
                    if line.startswith('VmRSS:'):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def memory(prog):
    """(VmRSS of the workers, PSS of the whole tree), KiB. nginx's workers
    are its master's children."""
    workers = compare.worker_pids(prog) if isinstance(prog, compare.Usher) \
        else [p for p in compare.tree(prog.proc.pid) if p != prog.proc.pid]
    return vmrss_kib(workers), compare.pss_kib(prog.proc.pid)


def child_exits(prog):
    try:
        with open(os.path.join(prog.work, 'log'), errors='replace') as f:
            return [l.strip() for l in f if 'event=child_exit' in l]
    except OSError:
        return []


def run_loadgen(args, timeout=3600):
    """One load generator run: (figures, lost lines, return code)."""
    p = subprocess.run([compare.LOADGEN] + args, capture_output=True, text=True, timeout=timeout)
    lines = p.stdout.strip().splitlines()
    fig = dict(kv.split('=', 1) for kv in lines[-1].split() if '=' in kv) if lines else {}
    lost = [l for l in lines if l.startswith('lost ')]
    if p.returncode != 0 and not lost:
        lost = ['lost reason=loadgen_exit_%d sessions=? %s' % (p.returncode, p.stderr[-300:])]
    return fig, lost


def port_of(prog, tls):
    return prog.tls_port if tls == 'implicit' else prog.port


# ---- 1. the idle sessions ------------------------------------------------------------

def park_idle(targets, per, hold):
    """Starts one idle load generator per (program, tls) with per sessions
    and hold seconds of hold, waits until each says IDLE_READY."""
    procs = []
    for prog, tls in targets:
        p = subprocess.Popen([compare.LOADGEN, '--port', str(port_of(prog, tls)), '--tls', tls,
                              '--scenario', 'idle', '--sessions', str(per), '--concurrency',
                              str(CONCURRENCY), '--idle-hold', str(hold)] + COMMON,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append((prog, tls, p))
    parked = {}
    for prog, tls, p in procs:
        line = p.stdout.readline()
        parked[(prog.name, tls)] = int(line.split('n=')[1]) if line.startswith('IDLE_READY') else 0
        print('# idle %s %s: %s' % (prog.name, tls, line.strip() or 'no IDLE_READY'),
              file=sys.stderr)
    return procs, parked


def end_idle(procs):
    """Waits for the idle load generators' holds to end: {(name, tls): lost lines}."""
    out = {}
    for prog, tls, p in procs:
        stdout, stderr = p.communicate(timeout=3600)
        lines = stdout.strip().splitlines()
        lost = [l for l in lines if l.startswith('lost ')]
        if p.returncode != 0 and not lost:
            lost = ['lost reason=loadgen_exit_%d sessions=? %s' % (p.returncode, stderr[-300:])]
        out[(prog.name, tls)] = lost
    return out


# ---- 2. the logins -----------------------------------------------------------------------

def login_turns(configs, slices):
    """configs: [(prog, tls, sessions)]. Each turn gives each its share.
    {(name, tls): {'n', 'elapsed', 'p50', 'p90', 'p99', 'max', 'lost'}}."""
    acc = {(p.name, tls): {'n': 0, 'elapsed': 0.0, 'p50': [], 'p90': [], 'p99': [], 'max': 0.0,
                           'lost': []} for p, tls, _ in configs}
    for turn in range(slices):
        order = configs if turn % 2 == 0 else configs[::-1]
        for prog, tls, n in order:
            per = n // slices
            fig, lost = run_loadgen(['--port', str(port_of(prog, tls)), '--tls', tls,
                                     '--scenario', 'login', '--sessions', str(per),
                                     '--concurrency', str(CONCURRENCY)] + COMMON)
            a = acc[(prog.name, tls)]
            a['n'] += int(fig.get('ok', 0))
            a['elapsed'] += float(fig.get('elapsed_s', 0))
            for k in ('p50', 'p90', 'p99'):
                if k + '_ms' in fig:
                    a[k].append(float(fig[k + '_ms']))
            a['max'] = max(a['max'], float(fig.get('max_ms', 0)))
            a['lost'] += lost
        print('# login turn %d of %d done' % (turn + 1, slices), file=sys.stderr)
    return acc


# ---- the report -------------------------------------------------------------------------------

def sum_lost(lines):
    """'lost reason=R sessions=N' lines summed by reason."""
    by = {}
    for l in lines:
        kv = dict(x.split('=', 1) for x in l.split()[1:3] if '=' in x)
        n = kv.get('sessions', '?')
        by[kv.get('reason', l)] = by.get(kv.get('reason', l), 0) + (int(n) if n.isdigit() else 1)
    return by


def write_report(path, opts, started, progs, logins, idle, mem, lost_idle, exits, ok):
    usher = [p for p in progs if isinstance(p, compare.Usher)]
    nginx = [p for p in progs if not isinstance(p, compare.Usher)]
    L = []
    w = L.append
    w('# %s: the long TLS run (issue 21), 100,000 TLS logins and 9,000 idle TLS sessions'
      % started.strftime('%Y-%m-%d'))
    w('')
    w('Rerun: `bench/run.sh tls-full` (about 6 minutes here; `--logins`, `--idle`, `--hold`, '
      '`--slices`, `--no-nginx` to change it). Not part of `scripts/test`.')
    w('')
    w('Started %s UTC, took %.0f s. Machine: %d cores, loopback, shared with other work at the '
      'time. Backend: `usher-stub-backend` (the benchmark\'s own, plaintext), not Dovecot. '
      'Client: `usher-loadgen` (OpenSSL 3, one event loop per process, a full TLS 1.3 '
      'handshake per session, %d sessions in parallel per process). usher: 2 workers, '
      'default limits but none per user or address; nginx mail: 2 workers. The login '
      'sessions ran while the idle ones stayed parked, in %d turns (each turn every '
      'configuration its share, one after another).'
      % (started.strftime('%H:%M'), time.time() - started.timestamp(), os.cpu_count(),
         CONCURRENCY, opts.slices))
    w('')
    w('**Verdict: %s.**' % ('PASS, zero usher sessions lost, no usher child exited' if ok
                            else 'FAIL: see the lost sessions below'))
    w('')
    w('## Login sessions (connect, TLS, LOGIN, SELECT INBOX, LOGOUT)')
    w('')
    w('| program | TLS | sessions ok | lost | sessions/s | p50 ms | p90 ms | p99 ms | max ms |')
    w('|---|---|---|---|---|---|---|---|---|')
    for (name, tls), a in logins.items():
        med = lambda k: statistics.median(a[k]) if a[k] else 0.0  # noqa: E731
        lost = sum(sum_lost(a['lost']).values())
        w('| %s | %s | %d | %d | %.1f | %.2f | %.2f | %.2f | %.1f |'
          % (name, tls, a['n'], lost, a['n'] / a['elapsed'] if a['elapsed'] else 0,
             med('p50'), med('p90'), med('p99'), a['max']))
    w('')
    w('Percentiles: the median over the turns of each turn\'s percentile; max: over all.')
    w('')
    w('## Idle sessions (LOGIN, SELECT INBOX, IDLE), held %d s' % opts.hold)
    w('')
    w('| program | TLS | parked | lost during the hold |')
    w('|---|---|---|---|')
    for (name, tls), n in idle.items():
        w('| %s | %s | %d | %d |' % (name, tls, n, sum(sum_lost(lost_idle.get((name, tls), []))
                                                      .values())))
    w('')
    w('| program | idle sessions | workers\' VmRSS before / after (KiB) | VmRSS per idle '
      'session (KiB) | PSS per idle session, whole tree (KiB) |')
    w('|---|---|---|---|---|')
    per = {}
    for p in progs:
        n = sum(v for (name, _), v in idle.items() if name == p.name)
        (r0, s0), (r1, s1) = mem[p.name]
        per[p.name] = ((r1 - r0) / n if n else 0, (s1 - s0) / n if n else 0)
        w('| %s | %d | %d / %d | %.2f | %.2f |' % (p.name, n, r0, r1, per[p.name][0],
                                                  per[p.name][1]))
    w('')
    if nginx:
        ng = nginx[0].name
        w('## Ratios, usher / %s, same run' % ng)
        w('')
        w('| usher | TLS | sessions/s | p50 | p99 | VmRSS per idle session |')
        w('|---|---|---|---|---|---|')
        for u in usher:
            for tls in ('implicit', 'starttls'):
                a, b = logins.get((u.name, tls)), logins.get((ng, tls))
                if not a or not b or not b['n'] or not a['elapsed'] or not b['elapsed']:
                    continue
                ra = (a['n'] / a['elapsed']) / (b['n'] / b['elapsed'])
                med = lambda x, k: statistics.median(x[k]) if x[k] else float('nan')  # noqa: E731
                rr = per[u.name][0] / per[ng][0] if per[ng][0] else float('nan')
                w('| %s | %s | %.2f | %.2f | %.2f | %.2f |'
                  % (u.name, tls, ra, med(a, 'p50') / med(b, 'p50'), med(a, 'p99') / med(b, 'p99'),
                     rr))
        w('')
        w('Above 1 is more for usher: more sessions per second (better), longer latency and '
          'more memory (worse).')
        w('')
    w('## Lost sessions, by reason')
    w('')
    all_lost = {}
    for (name, tls), a in logins.items():
        for r, n in sum_lost(a['lost']).items():
            all_lost[(name, tls, 'login', r)] = n
    for (name, tls), lines in lost_idle.items():
        for r, n in sum_lost(lines).items():
            all_lost[(name, tls, 'idle', r)] = n
    if not all_lost:
        w('None, in any program.')
    for (name, tls, kind, r), n in sorted(all_lost.items()):
        w('- %s, %s, %s: `%s` %d' % (name, tls, kind, r, n))
    w('')
    w('usher children that exited: %s' % ('none' if not any(exits.values()) else
                                          '; '.join(l for v in exits.values() for l in v)))
    text = '\n'.join(L) + '\n'
    with open(path, 'w') as f:
        f.write(text)
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--logins', type=int, default=100000, help='usher login sessions in all')
    ap.add_argument('--idle', type=int, default=9000, help='usher idle sessions in all')
    ap.add_argument('--hold', type=int, default=300, help='seconds the idle sessions stay')
    ap.add_argument('--slices', type=int, default=5)
    ap.add_argument('--no-nginx', action='store_true')
    ap.add_argument('--out', default='')
    opts = ap.parse_args()
    started = datetime.datetime.utcnow()
    out = opts.out or os.path.join(ROOT, 'bench', 'results',
                                   started.strftime('%Y-%m-%d') + '-tls-full.md')
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix='usher-tls-full-')
    os.chmod(work, 0o755)
    # Copies of the binaries: a rebuild during the run must not change them.
    for attr, name in (('USHER', 'usher'), ('LOADGEN', 'usher-loadgen'),
                       ('STUB', 'usher-stub-backend')):
        dst = os.path.join(work, name)
        shutil.copy2(getattr(compare, attr), dst)
        setattr(compare, attr, dst)
    cert, key = os.path.join(work, 'cert.pem'), os.path.join(work, 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
                    '-subj', '/CN=localhost'], check=True, capture_output=True)
    os.chmod(key, 0o644)
    stub_port = compare.free_port()
    stub = subprocess.Popen([compare.STUB, str(stub_port)])
    compare.wait_port(stub_port)
    progs = [UsherTLS(work, stub_port, cert, key, True), UsherTLS(work, stub_port, cert, key, False)]
    if not opts.no_nginx and shutil.which('nginx'):
        progs.append(compare.Nginx(work, stub_port, cert, key))
    usher = progs[:2]
    procs = []
    try:
        for p in progs:
            p.start()
        for p in progs:   # warm: one-time costs are no session's
            for tls in ('implicit', 'starttls'):
                run_loadgen(['--port', str(port_of(p, tls)), '--tls', tls, '--scenario', 'login',
                             '--sessions', '300', '--concurrency', str(CONCURRENCY)] + COMMON)
        time.sleep(1)
        before = {p.name: memory(p) for p in progs}
        per = opts.idle // 4
        targets = [(p, tls) for p in progs for tls in ('implicit', 'starttls')]
        procs, parked = park_idle(targets, per, opts.hold)
        time.sleep(2)
        mem = {p.name: (before[p.name], memory(p)) for p in progs}
        configs = [(u, tls, opts.logins // 4) for u in usher for tls in ('implicit', 'starttls')]
        configs += [(p, tls, opts.logins // 20) for p in progs[2:] for tls in ('implicit', 'starttls')]
        logins = login_turns(configs, opts.slices)
        lost_idle = end_idle(procs)
        procs = []
        exits = {u.name: child_exits(u) for u in usher}
    finally:
        for _, _, p in procs:
            p.kill()
        for p in progs:
            p.stop()
        stub.terminate()
        stub.wait()
    usher_names = {u.name for u in usher}
    ok = all(v == per for (name, _), v in parked.items() if name in usher_names)
    ok = ok and not any(l for (name, _), a in logins.items() if name in usher_names
                        for l in a['lost'])
    ok = ok and all(a['n'] == opts.logins // 4 // opts.slices * opts.slices
                    for (name, _), a in logins.items() if name in usher_names)
    ok = ok and not any(v for (name, _), v in lost_idle.items() if name in usher_names)
    ok = ok and not any(exits.values())
    print(write_report(out, opts, started, progs, logins, parked, mem, lost_idle, exits, ok))
    print('# written to %s' % out, file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
