#!/usr/bin/env python3
"""Side-by-side benchmark: usher against HAProxy (TCP mode, no IMAP), nginx's
mail proxy and Dovecot as a proxy, all in front of the same stub backend
(usher-stub-backend), driven by usher-loadgen, on loopback, in one run.

Figures per program (each the median of --runs runs):
  cpu_login_us        proxy CPU (all its processes, user+system) per plaintext login session
  cpu_login_tls_us    the same with implicit TLS, full handshake (ECDSA P-256)
  cpu_login_resume_us the same with TLS session resumption
  resumed_share       the share of those handshakes that did resume
  logins_per_s        plaintext login sessions per second end to end
  kib_idle            proxy PSS per idle (IDLE) plaintext session, --idle sessions
  kib_idle_tls        the same over TLS
  cpu_s_per_gib       proxy CPU seconds per GiB relayed by FETCH BODY[]
  cpu_s_per_gib_tls   the same to a client on implicit TLS
and usher again with 1 and 2 workers. The table also gives ratios against
nginx and HAProxy measured in the same run. The login figures are taken
with every program up at once, each kind of login in --slices turns of
all the programs one after another (login_rounds, login_figures); the
others on a fresh process per program.

  logins_per_s_capped usher only: the login rate with each worker held to
                      --worker-share of a core by a cgroup, so that the
                      workers, not the cores the load generator and the stub
                      share with them, are what limits it. 2 workers against
                      1 shows how logins scale across workers (sessiond and
                      the master are not capped). Both ushers are capped at
                      once and measured in turns (twice --slices), like the
                      login figures. Left out where no cgroup cpu controller
                      can be written.

  bench/compare.py [--quick] [--runs N] [--idle N] [--logins N] [--only usher,haproxy]
Only the Python standard library; programs from Debian's packages."""
import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get('USHER_BUILD_DIR', os.path.join(ROOT, 'build'))
USHER = os.environ.get('USHER_BIN', os.path.join(BUILD, 'usher'))
LOADGEN = os.path.join(BUILD, 'bench', 'usher-loadgen')
STUB = os.path.join(BUILD, 'bench', 'usher-stub-backend')
USERS = 40
CLK = os.sysconf('SC_CLK_TCK')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError('nothing listens on %d' % port)


# ---- measuring a process tree ------------------------------------------------

def tree(root):
    """root and all its descendants (pids)."""
    children = {}
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                with open('/proc/%s/stat' % d) as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except OSError:
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_seconds(root):
    """User+system CPU of the tree, including reaped children."""
    total = 0
    for p in tree(root):
        try:
            with open('/proc/%d/stat' % p) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            total += sum(int(x) for x in fields[11:15])   # utime stime cutime cstime
        except OSError:
            pass
    return total / CLK


def pss_kib(root):
    total = 0
    for p in tree(root):
        try:
            with open('/proc/%d/smaps_rollup' % p) as f:
                for line in f:
                    if line.startswith('Pss:'):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# ---- the programs ---------------------------------------------------------------

class Program:
    name = '?'
    binary = '?'

    def __init__(self, work, backend_port, cert, key):
        self.work = os.path.join(work, self.name.replace(' ', '_'))
        os.makedirs(self.work, exist_ok=True)
        self.backend_port, self.cert, self.key = backend_port, cert, key
        self.port, self.tls_port = free_port(), free_port()
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.work, 'log'), 'ab')
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port)
        wait_port(self.tls_port)
        time.sleep(0.5)

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                for p in tree(self.proc.pid):
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                self.proc.wait()
            self.log.close()
        self.proc = None


class Usher(Program):
    def __init__(self, work, backend_port, cert, key, workers):
        self.name = 'usher %dw' % workers
        self.binary = USHER
        self.workers = workers
        super().__init__(work, backend_port, cert, key)

    def command(self):
        users = os.path.join(self.work, 'users')
        if not os.path.exists(users):
            h = subprocess.run(['openssl', 'passwd', '-6', '-salt', 'benchsalt', 'pw'],
                               capture_output=True, text=True, check=True).stdout.strip()
            with open(users, 'w') as f:
                for i in range(1, USERS + 1):
                    f.write('user%02d:{SHA512-CRYPT}%s\n' % (i, h))
        conf = os.path.join(self.work, 'usher.conf')
        with open(conf, 'w') as f:
            f.write(f"""[usher]
workers = {self.workers}
runtime_dir = {self.work}/run
log_level = warn
[listener plain]
address = 127.0.0.1:{self.port}
tls = starttls
[listener tls]
address = 127.0.0.1:{self.tls_port}
tls = implicit
[tls]
cert = {self.cert}
key = {self.key}
[backend stub]
address = 127.0.0.1:{self.backend_port}
[auth]
users_file = {users}
failure_delay = 100ms
[routing]
health_interval = 0
[limits]
max_connections = 20000
max_connections_per_ip = 0
; 40 users hold 8,000 sessions from one address here; the peers have no
; such limits either.
max_sessions_per_user = 0
max_sessions_per_user_ip = 0
plaintext_auth = yes
""")
        return [USHER, '-c', conf]


class HAProxy(Program):
    name = 'haproxy tcp'
    binary = 'haproxy'

    def command(self):
        pem = os.path.join(self.work, 'both.pem')
        with open(pem, 'w') as f:
            f.write(open(self.cert).read() + open(self.key).read())
        conf = os.path.join(self.work, 'haproxy.cfg')
        with open(conf, 'w') as f:
            f.write(f"""global
    maxconn 9900
    nbthread 2
defaults
    mode tcp
    timeout connect 5s
    timeout client 30m
    timeout server 30m
frontend plain
    bind 127.0.0.1:{self.port}
    default_backend stub
frontend tls
    bind 127.0.0.1:{self.tls_port} ssl crt {pem}
    default_backend stub
backend stub
    server stub 127.0.0.1:{self.backend_port}
""")
        return ['haproxy', '-db', '-f', conf]


class AuthHTTP(BaseHTTPRequestHandler):
    """nginx's mail auth: every user goes to the stub."""
    backend_port = 0

    def do_GET(self):
        self.send_response(200)
        self.send_header('Auth-Status', 'OK')
        self.send_header('Auth-Server', '127.0.0.1')
        self.send_header('Auth-Port', str(self.backend_port))
        self.end_headers()

    def log_message(self, *args):
        pass


class AuthServer(ThreadingHTTPServer):
    # nginx asks for up to a few hundred logins at once; the default listen
    # backlog of 5 refused some, and nginx closed those clients.
    request_queue_size = 1024


class Nginx(Program):
    name = 'nginx mail'
    binary = 'nginx'
    # nginx 1.22 (Debian 12) offers only up to TLS 1.2 unless told; the
    # others all speak TLS 1.3, so by default nginx does too.
    protocols = os.environ.get('BENCH_NGINX_TLS', 'TLSv1.2 TLSv1.3')

    def start(self):
        AuthHTTP.backend_port = self.backend_port
        self.http = AuthServer(('127.0.0.1', 0), AuthHTTP)
        self.auth_port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        super().start()

    def stop(self):
        super().stop()
        self.http.shutdown()

    def command(self):
        conf = os.path.join(self.work, 'nginx.conf')
        with open(conf, 'w') as f:
            f.write(f"""load_module /usr/lib/nginx/modules/ngx_mail_module.so;
daemon off;
user root;
worker_processes 2;
worker_rlimit_nofile 20000;
pid {self.work}/nginx.pid;
error_log {self.work}/error.log warn;
events {{ worker_connections 20000; }}
mail {{
    server_name localhost;
    auth_http 127.0.0.1:{self.auth_port}/auth;
    proxy on;
    imap_capabilities IMAP4rev1 LITERAL+ SASL-IR ID IDLE;
    ssl_certificate {self.cert};
    ssl_certificate_key {self.key};
    ssl_protocols {self.protocols};
    server {{ listen 127.0.0.1:{self.port}; protocol imap; starttls on; }}
    server {{ listen 127.0.0.1:{self.tls_port} ssl; protocol imap; }}
}}
""")
        return ['nginx', '-c', conf, '-p', self.work]


class DovecotProxy(Program):
    name = 'dovecot proxy'
    binary = 'dovecot'

    def command(self):
        conf = os.path.join(self.work, 'dovecot.conf')
        with open(conf, 'w') as f:
            f.write(f"""base_dir = {self.work}/run
state_dir = {self.work}/state
log_path = {self.work}/dovecot.log
instance_name = bench-proxy-{self.port}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = static
  args = proxy=y host=127.0.0.1 port={self.backend_port} nopassword=y
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service imap-login {{
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
  }}
  service_count = 0
  process_min_avail = 2
  client_limit = 10000
  vsz_limit = 1G
}}
default_client_limit = 20000
login_trusted_networks = 127.0.0.0/8
""")
        return ['dovecot', '-F', '-c', conf]


# ---- running the load ---------------------------------------------------------------

def loadgen(args, timeout=600):
    out = subprocess.run([LOADGEN] + args, capture_output=True, text=True, timeout=timeout)
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ''
    fig = dict(kv.split('=', 1) for kv in last.split() if '=' in kv)
    if out.returncode != 0 or 'ok' not in fig:   # a figure over lost sessions is no figure
        lost = [l for l in out.stdout.splitlines() if l.startswith('lost ')]
        raise RuntimeError('loadgen %s: %s %s %s' % (' '.join(args), last, '; '.join(lost),
                                                     out.stderr[-500:]))
    return fig


COMMON = ['--users', str(USERS), '--password', 'pw']


def cpu_per_session(prog, n, tls_args, conc, fig_out=None):
    """The proxy's CPU per login over n logins, and their rate."""
    before = cpu_seconds(prog.proc.pid)
    fig = loadgen(['--port', str(prog.tls_port if tls_args else prog.port), '--scenario', 'login',
                   '--sessions', str(n), '--concurrency', str(conc)] + tls_args + COMMON)
    if fig_out is not None:
        fig_out.update(fig)
    return (cpu_seconds(prog.proc.pid) - before) * 1e6 / n, float(fig['rate'])


def idle_kib(prog, n, tls):
    port = prog.tls_port if tls else prog.port
    # Warm up first: one-time costs (TLS library state, caches, pools)
    # must not be charged to the sessions.
    loadgen(['--port', str(port), '--scenario', 'login', '--sessions', '300', '--concurrency', '50']
            + (['--tls', 'implicit'] if tls else []) + COMMON)
    time.sleep(0.5)
    base = pss_kib(prog.proc.pid)
    # A generous per-step timeout: nginx logs in through its auth HTTP
    # request, a few hundred a second here, and must not be cut short.
    p = subprocess.Popen([LOADGEN, '--port', str(port), '--scenario', 'idle', '--sessions', str(n),
                          '--concurrency', '200', '--hold', '30', '--timeout', '120'] + (['--tls', 'implicit'] if tls else [])
                         + COMMON, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith('IDLE_READY'):
        p.kill()
        raise RuntimeError('idle load failed: ' + line + p.stderr.read()[-500:])
    parked = int(line.split('n=')[1])
    # Divided by the sessions that are really there; a program that loses
    # more than a few (nginx's auth round trips under 8,000 logins) fails.
    if parked < n * 0.95:
        p.kill()
        raise RuntimeError('only %d of %d idle sessions parked: %s' % (parked, n,
                                                                       p.stderr.read()[-500:]))
    time.sleep(1)
    used = pss_kib(prog.proc.pid) - base
    p.kill()
    p.wait()
    time.sleep(1)
    return used / parked


# ---- workers held to a share of a core ------------------------------------------------

def _cgroup_cpu_root():
    """(root, version) of a writable cgroup cpu controller, or (None, 0)."""
    if os.path.exists('/sys/fs/cgroup/cgroup.controllers'):
        try:
            with open('/sys/fs/cgroup/cgroup.subtree_control', 'w') as f:
                f.write('+cpu')
            return '/sys/fs/cgroup', 2
        except OSError:
            return None, 0
    if os.access('/sys/fs/cgroup/cpu/cpu.cfs_quota_us', os.R_OK) and os.access('/sys/fs/cgroup/cpu', os.W_OK):
        return '/sys/fs/cgroup/cpu', 1
    return None, 0


def worker_pids(prog):
    out = []
    for p in tree(prog.proc.pid):
        try:
            with open('/proc/%d/cmdline' % p, 'rb') as f:
                argv = f.read().split(b'\0')
        except OSError:
            continue
        if b'--role' in argv and b'worker' in argv:
            out.append(p)
    return out


def cap_workers(prog, share):
    """Puts each of prog's workers in a cgroup of its own limited to `share`
    of a core. Returns the groups, or None where cgroups cannot be written
    (nothing is left capped then)."""
    root, version = _cgroup_cpu_root()
    pids = worker_pids(prog)
    if not root or len(pids) != prog.workers:
        return None
    groups = []
    try:
        for pid in pids:
            g = os.path.join(root, 'usher-bench-%d' % pid)
            os.makedirs(g, exist_ok=True)
            groups.append((pid, g))
            # A short period spreads a worker's share evenly over time
            # rather than in 100 ms bursts.
            period = 10000
            quota = int(period * share)
            if version == 2:
                with open(os.path.join(g, 'cpu.max'), 'w') as f:
                    f.write('%d %d' % (quota, period))
            else:
                with open(os.path.join(g, 'cpu.cfs_period_us'), 'w') as f:
                    f.write(str(period))
                with open(os.path.join(g, 'cpu.cfs_quota_us'), 'w') as f:
                    f.write(str(quota))
            with open(os.path.join(g, 'cgroup.procs'), 'w') as f:
                f.write(str(pid))
        return groups
    except OSError as e:
        print('# capped workers: %s' % e, file=sys.stderr)
        uncap_workers(groups)
        return None


def uncap_workers(groups):
    root, _ = _cgroup_cpu_root()
    for pid, g in groups or []:
        try:
            with open(os.path.join(root, 'cgroup.procs'), 'w') as f:
                f.write(str(pid))
        except OSError:
            pass
        try:
            os.rmdir(g)
        except OSError:
            pass


def capped_rates(ushers, n, share, slices):
    """Login rate of each usher with its workers capped (cap_workers), all
    of them capped at once and measured in turns like the login figures:
    each turn gives each usher n / slices logins. The ratio of 2 workers to
    1 is what this is for; with the two taken one after the other, it moved
    by a fifth between runs. {name: logins per second}; empty where cgroups
    cannot be written."""
    capped = {}
    try:
        for p in ushers:
            groups = cap_workers(p, share)
            if groups is None:
                return {}
            capped[p.name] = (p, groups)
        per = max(1, n // slices)
        elapsed = {}
        for p, _ in capped.values():
            loadgen(['--port', str(p.port), '--scenario', 'login', '--sessions', '300',
                     '--concurrency', '50'] + COMMON)   # warm, and past the first quota period
            elapsed[p.name] = 0.0
        for turn in range(slices):
            order = list(capped.values())
            if turn % 2:
                order.reverse()
            for p, _ in order:
                # Enough sessions in flight that a worker waiting out its
                # quota does not hold the load generator's every slot.
                fig = loadgen(['--port', str(p.port), '--scenario', 'login', '--sessions', str(per),
                               '--concurrency', '200'] + COMMON)
                elapsed[p.name] += float(fig['elapsed_s'])
        return {name: per * slices / t for name, t in elapsed.items() if t > 0}
    finally:
        for _, groups in capped.values():
            uncap_workers(groups)


def fetch_cost(prog, mib, loops, tls=False):
    before = cpu_seconds(prog.proc.pid)
    fig = loadgen(['--port', str(prog.tls_port if tls else prog.port), '--scenario', 'fetch',
                   '--sessions', '4', '--concurrency', '4', '--fetch-size', str(mib << 20),
                   '--fetch-loops', str(loops)] + (['--tls', 'implicit'] if tls else []) + COMMON)
    gib = int(fig['bytes']) / (1 << 30)
    return (cpu_seconds(prog.proc.pid) - before) / gib


LOGIN_KINDS = {   # kind: (figure, client TLS, concurrency, sessions option)
    'plain': ('cpu_login_us', [], 50, 'logins'),
    'full': ('cpu_login_tls_us', ['--tls', 'implicit'], 20, 'tls_logins'),
    'resumed': ('cpu_login_resume_us', ['--tls', 'implicit', '--resume'], 20, 'tls_logins'),
}


def login_figures(programs, opts, kind):
    """One run's figure of one kind of login for every program, taken in
    opts.slices turns: each turn gives each program its share of the
    logins, one program after another. Bursts of load from others on this
    machine last seconds; in turns of a second or less they fall on every
    program alike instead of on whichever one happened to be measured.
    A program that fails is reported and has no figure this run."""
    key, tls_args, conc, count = LOGIN_KINDS[kind]
    per = max(1, getattr(opts, count) // opts.slices)
    live, acc = [], {}
    for p in programs:
        try:
            cpu_per_session(p, min(per, 200), tls_args, 20)   # warm
            live.append(p)
            acc[p.name] = {'us': 0.0, 'elapsed': 0.0, 'resumed': 0}
        except Exception as e:
            print('# %s, %s logins failed: %s' % (p.name, kind, e), file=sys.stderr)
    for _ in range(opts.slices):
        for p in list(live):
            fig = {}
            try:
                us, _ = cpu_per_session(p, per, tls_args, conc, fig)
            except Exception as e:
                print('# %s, %s logins failed: %s' % (p.name, kind, e), file=sys.stderr)
                live.remove(p)
                continue
            a = acc[p.name]
            a['us'] += us / opts.slices
            a['elapsed'] += float(fig['elapsed_s'])
            a['resumed'] += int(fig.get('resumed', 0))
    out = {}
    for p in live:
        a, n = acc[p.name], per * opts.slices
        out[p.name] = {key: a['us']}
        if kind == 'plain':
            out[p.name]['logins_per_s'] = n / a['elapsed'] if a['elapsed'] else 0.0
        if kind == 'resumed':
            # The share of "resumed" logins that did resume: a server that
            # hands out no fresh ticket on a resumed TLS 1.3 handshake makes
            # every second one a full handshake with OpenSSL's clients, which
            # use a ticket once (Dovecot 2.3 does; usher did until this share
            # showed it).
            out[p.name]['resumed_share'] = a['resumed'] / n
    return out


def login_rounds(programs, opts, results):
    """The login figures: every program is up at once, each kind of login
    is taken for all of them in turns (login_figures), the order turning
    by one program per run; then usher's login rate with its workers
    capped, 2 workers against 1. Measured one program at a time, a minute
    each, the load that others put on this shared machine landed on
    whichever program ran then: a third between runs of the same
    program."""
    up = []
    for p in programs:
        try:
            p.start()
            up.append(p)
        except RuntimeError as e:
            print('# %s did not start: %s' % (p.name, e), file=sys.stderr)
            p.stop()
    try:
        for run in range(opts.runs):
            order = up[run % len(up):] + up[:run % len(up)] if up else []
            figs = {p.name: {} for p in order}
            for kind in LOGIN_KINDS:
                for name, f in login_figures(order, opts, kind).items():
                    figs[name].update(f)
            ushers = [p for p in order if isinstance(p, Usher)]
            try:
                # Twice the turns of the login figures: a capped usher 1w
                # takes 5 s or more for its logins, and a burst of others'
                # load (seconds) should fall on both ushers' turns alike.
                rates = capped_rates(ushers, opts.capped_logins, opts.worker_share,
                                     opts.slices * 2)
            except Exception as e:
                print('# run %d, capped logins failed: %s' % (run + 1, e), file=sys.stderr)
                rates = {}
            for name, rate in rates.items():
                figs[name]['logins_per_s_capped'] = rate
            for name, f in figs.items():
                results[name].append(f)
            print('# run %d: login figures done' % (run + 1), file=sys.stderr)
    finally:
        for p in up:
            p.stop()


def measure(prog, opts):
    """The figures that want a program to itself, on a fresh process."""
    r = {}
    # Each idle figure on a fresh process: memory freed by earlier sessions
    # stays resident and would be reused, hiding what new sessions cost.
    for key, tls in (('kib_idle', False), ('kib_idle_tls', True)):
        prog.start()
        r[key] = idle_kib(prog, opts.idle, tls)
        prog.stop()
    prog.start()
    r['cpu_s_per_gib'] = fetch_cost(prog, opts.fetch_mib, opts.fetch_loops)
    r['cpu_s_per_gib_tls'] = fetch_cost(prog, opts.fetch_mib, opts.fetch_loops, tls=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--quick', action='store_true', help='tiny scale: proves the scripts work')
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--logins', type=int, default=8000)
    ap.add_argument('--tls-logins', type=int, default=4000)
    ap.add_argument('--idle', type=int, default=8000)
    ap.add_argument('--fetch-mib', type=int, default=16)
    ap.add_argument('--fetch-loops', type=int, default=16)
    ap.add_argument('--only', default='')
    ap.add_argument('--slices', type=int, default=4,
                    help='turns each login figure is taken in, all programs in each turn')
    ap.add_argument('--capped-logins', type=int, default=8000)
    ap.add_argument('--worker-share', type=float, default=0.2,
                    help='share of a core each usher worker gets for logins_per_s_capped')
    ap.add_argument('--json', default='')
    opts = ap.parse_args()
    if opts.quick:
        opts.runs, opts.logins, opts.tls_logins, opts.idle = 1, 300, 100, 200
        opts.fetch_mib, opts.fetch_loops, opts.capped_logins, opts.slices = 2, 2, 200, 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix='usher-bench-')
    os.chmod(work, 0o755)
    cert, key = os.path.join(work, 'cert.pem'), os.path.join(work, 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
                    '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost'],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    stub_port = free_port()
    stub = subprocess.Popen([STUB, str(stub_port), '--fetch-size', str(opts.fetch_mib << 20)])
    wait_port(stub_port)
    makers = [lambda: Usher(work, stub_port, cert, key, 2), lambda: Usher(work, stub_port, cert, key, 1),
              lambda: HAProxy(work, stub_port, cert, key), lambda: Nginx(work, stub_port, cert, key),
              lambda: DovecotProxy(work, stub_port, cert, key)]
    programs = [m() for m in makers]
    wanted = [w.strip() for w in opts.only.split(',') if w.strip()]
    programs = [p for p in programs if not wanted or any(p.name.startswith(w) for w in wanted)]
    for p in programs:
        if not shutil.which(p.binary):
            print('# %s: %s is not installed, skipped' % (p.name, p.binary), file=sys.stderr)
    programs = [p for p in programs if shutil.which(p.binary)]
    results = {p.name: [] for p in programs}
    try:
        login_rounds(programs, opts, results)
        for run in range(opts.runs):
            for p in programs:
                try:
                    if run < len(results[p.name]):
                        results[p.name][run].update(measure(p, opts))
                except Exception as e:   # a peer that fails is reported, not fatal
                    print('# %s run %d failed: %s' % (p.name, run + 1, e), file=sys.stderr)
                finally:
                    p.stop()
                print('# run %d %s done' % (run + 1, p.name), file=sys.stderr)
    finally:
        stub.terminate()
        stub.wait()
        shutil.rmtree(work, ignore_errors=True)
    report(results, opts)


FIGS = [('cpu_login_us', 'CPU per plaintext login session (us)'),
        ('cpu_login_tls_us', 'CPU per TLS login session, full handshake (us)'),
        ('cpu_login_resume_us', 'CPU per TLS login session, resumed (us)'),
        ('resumed_share', 'share of those handshakes that resumed'),
        ('logins_per_s', 'plaintext login sessions per second'),
        ('kib_idle', 'PSS per idle plaintext session (KiB)'),
        ('kib_idle_tls', 'PSS per idle TLS session (KiB)'),
        ('cpu_s_per_gib', 'CPU seconds per GiB relayed (FETCH)'),
        ('cpu_s_per_gib_tls', 'CPU seconds per GiB relayed to a TLS client (FETCH)'),
        ('logins_per_s_capped', 'logins per second, each worker held to --worker-share of a core')]


FMT = {'resumed_share': '%.2f'}
RATIO_SKIP = {'resumed_share'}


# The targets of the performance issue, usher 2w against figures of the
# same run: (what, usher's figure, the other program and its figure,
# how they compare, the bound).
TARGETS = [
    ('plaintext login CPU, at most HAProxy\'s', 'cpu_login_us', 'haproxy tcp', 'cpu_login_us', '<=', 1.0),
    ('plaintext login CPU, at most 0.75 of nginx\'s', 'cpu_login_us', 'nginx mail', 'cpu_login_us', '<=', 0.75),
    ('TLS login CPU, full handshake, at most 0.9 of nginx\'s', 'cpu_login_tls_us', 'nginx mail',
     'cpu_login_tls_us', '<=', 0.9),
    ('TLS login CPU, resumed, at most half of nginx\'s full handshake', 'cpu_login_resume_us',
     'nginx mail', 'cpu_login_tls_us', '<=', 0.5),
    ('relay CPU per GiB, within 10% of HAProxy\'s', 'cpu_s_per_gib', 'haproxy tcp', 'cpu_s_per_gib',
     '<=', 1.1),
    ('login rate, workers capped, 2 workers at least 1.8 times 1', 'logins_per_s_capped', 'usher 1w',
     'logins_per_s_capped', '>=', 1.8),
    ('memory per idle plaintext session, at most 4 KiB', 'kib_idle', None, None, '<=', 4.0),
    ('memory per idle TLS session, at most 8 KiB', 'kib_idle_tls', None, None, '<=', 8.0),
]


def print_targets(med, quick):
    """usher 2w against each target, by the medians of this run."""
    us = med.get('usher 2w')
    if not us:
        return
    print('\ntargets, usher 2w by medians%s:' % (
        ' (--quick: too few sessions for these to mean anything)' if quick else ''))
    for what, key, peer, peer_key, op, bound in TARGETS:
        if key not in us or (peer and not med.get(peer, {}).get(peer_key)):
            print('  %-66s  no figure' % what)
            continue
        value = us[key] / med[peer][peer_key] if peer else us[key]
        met = value <= bound if op == '<=' else value >= bound
        print('  %-66s  %.2f  %s' % (what, value, 'met' if met else 'MISSED'))


def report(results, opts):
    # A figure some programs do not have (logins_per_s_capped) is left out
    # of their column.
    med = {name: {k: statistics.median(r[k] for r in runs) for k, _ in FIGS
                  if all(k in r for r in runs)}
           for name, runs in results.items() if runs}
    names = list(med)
    print('\n%d run(s) each, medians; %d idle sessions; stub backend; loopback\n' % (opts.runs, opts.idle))
    print('| figure | ' + ' | '.join(names) + ' |')
    print('|---|' + '---|' * len(names))
    for k, title in FIGS:
        if any(k in med[n] for n in names):
            print('| %s | %s |' % (title, ' | '.join((FMT.get(k, '%.1f') % med[n][k]) if k in med[n] else '-'
                                                   for n in names)))
    for peer in ('nginx mail', 'haproxy tcp', 'dovecot proxy'):
        if peer in med and 'usher 2w' in med:
            print('\nusher 2w / %s: ' % peer + ', '.join(
                '%s %.2f' % (k, med['usher 2w'][k] / med[peer][k]) for k, _ in FIGS
                if med[peer].get(k) and k in med['usher 2w'] and k not in RATIO_SKIP))
    if 'usher 1w' in med and 'usher 2w' in med:
        print('\nusher 2 workers / 1 worker: ' + ', '.join(
            '%s %.2f' % (k, med['usher 2w'][k] / med['usher 1w'][k])
            for k in ('logins_per_s', 'logins_per_s_capped')
            if k in med['usher 1w'] and k in med['usher 2w'] and med['usher 1w'][k]))
    print_targets(med, opts.quick)
    if opts.json:
        with open(opts.json, 'w') as f:
            json.dump({'medians': med, 'runs': results}, f, indent=1)


if __name__ == '__main__':
    main()
