#!/usr/bin/env python3
"""What following sessions costs (issue 24's budget): usher with re-homing
off against usher with it on (a master user configured, so every relayed
session is followed by proxy/imap_track), both up at once in front of the
same stub backend, measured in alternating turns:

  - CPU seconds per GiB relayed by FETCH (plain and TLS), median of turns;
  - PSS per idle session (plain), sessions parked in IDLE.

Uses bench/compare.py's programs and measurements; builds nothing (run
bench/run.sh --quick once first, or build the bench targets). Prints
key=value lines and the ratios on/off."""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402


class UsherFollowing(compare.Usher):
    """usher with re-homing configured: every relayed session is tracked."""

    def __init__(self, work, backend_port, cert, key, workers):
        super().__init__(work, backend_port, cert, key, workers)
        self.name = 'usher %dw rehome' % workers
        self.work = os.path.join(work, self.name.replace(' ', '_'))
        os.makedirs(self.work, exist_ok=True)

    def command(self):
        cmd = super().command()
        conf = cmd[-1]
        pw = os.path.join(self.work, 'master.pw')
        with open(pw, 'w') as f:
            f.write('bench-master-pw\n')
        os.chmod(pw, 0o600)
        text = open(conf).read().replace(
            '[routing]\n', '[routing]\nmaster_user = bench-master\nmaster_password_file = %s\n' % pw, 1)
        with open(conf, 'w') as f:
            f.write(text)
        return cmd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--turns', type=int, default=6)
    ap.add_argument('--fetch-mib', type=int, default=16)
    ap.add_argument('--fetch-loops', type=int, default=16)
    ap.add_argument('--idle', type=int, default=3000)
    opts = ap.parse_args()
    work = tempfile.mkdtemp(prefix='usher-track-ab-')
    os.chmod(work, 0o755)
    cert, key = os.path.join(work, 'cert.pem'), os.path.join(work, 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
                    '-subj', '/CN=localhost'], check=True, capture_output=True)
    os.chmod(key, 0o644)
    stub_port = compare.free_port()
    stub = subprocess.Popen([compare.STUB, str(stub_port), '--fetch-size',
                             str(opts.fetch_mib << 20)])
    compare.wait_port(stub_port)
    off = compare.Usher(work, stub_port, cert, key, 1)
    on = UsherFollowing(work, stub_port, cert, key, 1)
    figs = {p.name: {'plain': [], 'tls': [], 'idle': []} for p in (off, on)}
    try:
        for p in (off, on):
            p.start()
        for turn in range(opts.turns):
            order = (off, on) if turn % 2 == 0 else (on, off)
            for p in order:
                figs[p.name]['plain'].append(compare.fetch_cost(p, opts.fetch_mib, opts.fetch_loops))
                figs[p.name]['tls'].append(compare.fetch_cost(p, opts.fetch_mib, opts.fetch_loops,
                                                              tls=True))
        for p in (off, on):
            figs[p.name]['idle'].append(compare.idle_kib(p, opts.idle, False))
    finally:
        for p in (off, on):
            p.stop()
        stub.terminate()
        stub.wait()
        shutil.rmtree(work, ignore_errors=True)
    med = {n: {k: statistics.median(v) for k, v in f.items() if v} for n, f in figs.items()}
    for n, f in med.items():
        print('program="%s" cpu_s_per_gib_plain=%.3f cpu_s_per_gib_tls=%.3f pss_kib_per_idle=%.3f'
              % (n, f['plain'], f['tls'], f['idle']))
        print('  turns plain=%s tls=%s' % (['%.3f' % x for x in figs[n]['plain']],
                                           ['%.3f' % x for x in figs[n]['tls']]))
    a, b = med[off.name], med[on.name]
    print('ratio_on_off plain=%.3f tls=%.3f idle_pss=%.3f idle_pss_delta_bytes=%.0f'
          % (b['plain'] / a['plain'], b['tls'] / a['tls'], b['idle'] / a['idle'],
             (b['idle'] - a['idle']) * 1024))


if __name__ == '__main__':
    main()
