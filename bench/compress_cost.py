#!/usr/bin/env python3
"""What terminating COMPRESS=DEFLATE (RFC 4978) in usher would cost, the
figures behind issue 24's decision that such sessions are not re-homed
(docs/operations.md, "Re-homing live sessions").

To re-home a compressed session usher would have to own the client's
deflate streams: inflate what the client sends, deflate what the backend
sends, and keep both zlib states for the session's whole life. Measured in
one run, on the same machine:

  - usher's relay CPU per GiB (FETCH through one worker to the stub
    backend, bench/compare.py's measurement), the yardstick;
  - zlib's CPU per GiB to deflate (levels 1 and 6; Dovecot's default is 6)
    and to inflate a mail-like text stream (this repository's docs and
    sources, which compress about as well as mail text);
  - the memory of one session's pair of zlib states after a little
    traffic (resident, measured over many pairs), against usher's PSS per
    idle session today (bench/results).

Prints key=value lines and the ratios. Uses compare.py's programs; run
bench/run.sh --quick once first (or build the bench targets)."""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def corpus(mib):
    text = b''.join(open(p, 'rb').read() for p in sorted(
        glob.glob(os.path.join(ROOT, 'docs', '*.md')) +
        glob.glob(os.path.join(ROOT, '*', '*.c'))))
    return (text * (mib * (1 << 20) // len(text) + 1))[:mib << 20]


def cpu_per_gib(fn, data, chunk=16384):
    t0 = time.process_time()
    fn(data, chunk)
    return (time.process_time() - t0) / (len(data) / (1 << 30))


def deflate_all(level):
    def run(data, chunk):
        z = zlib.compressobj(level, zlib.DEFLATED, -15)
        out = []
        for i in range(0, len(data), chunk):   # flushed per chunk, as a relay must
            out.append(z.compress(data[i:i + chunk]) + z.flush(zlib.Z_SYNC_FLUSH))
        run.out = b''.join(out)
    return run


def inflate_all(compressed):
    def run(data, chunk):
        z = zlib.decompressobj(-15)
        for i in range(0, len(compressed), chunk):
            z.decompress(compressed[i:i + chunk])
    return run


def rss_kib():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 1024


def zlib_pair_kib(n, level):
    """Resident KiB per (deflate, inflate) pair after 8 KiB each way."""
    sample = corpus(1)[:8192]
    before = rss_kib()
    keep = []
    for _ in range(n):
        d, i = zlib.compressobj(level, zlib.DEFLATED, -15), zlib.decompressobj(-15)
        i.decompress(d.compress(sample) + d.flush(zlib.Z_SYNC_FLUSH))
        keep.append((d, i))
    return (rss_kib() - before) / n


def relay_cpu_per_gib(mib, loops):
    work = tempfile.mkdtemp(prefix='usher-compress-cost-')
    os.chmod(work, 0o755)
    cert, key = os.path.join(work, 'cert.pem'), os.path.join(work, 'key.pem')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
                    '-subj', '/CN=localhost'], check=True, capture_output=True)
    os.chmod(key, 0o644)
    port = compare.free_port()
    stub = subprocess.Popen([compare.STUB, str(port), '--fetch-size', str(mib << 20)])
    usher = compare.Usher(work, port, cert, key, 1)
    try:
        compare.wait_port(port)
        usher.start()
        return min(compare.fetch_cost(usher, mib, loops) for _ in range(3))
    finally:
        usher.stop()
        stub.terminate()
        stub.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--mib', type=int, default=64, help='text deflated per level')
    ap.add_argument('--pairs', type=int, default=2000, help='zlib state pairs for the memory')
    ap.add_argument('--fetch-mib', type=int, default=16)
    ap.add_argument('--fetch-loops', type=int, default=16)
    opts = ap.parse_args()
    relay = relay_cpu_per_gib(opts.fetch_mib, opts.fetch_loops)
    data = corpus(opts.mib)
    figs = {}
    for level in (1, 6):
        d = deflate_all(level)
        figs['deflate%d' % level] = cpu_per_gib(d, data)
        figs['ratio%d' % level] = len(d.out) / len(data)
        figs['inflate%d' % level] = cpu_per_gib(inflate_all(d.out), data)
    mem = zlib_pair_kib(opts.pairs, 6)
    print('usher_relay_cpu_s_per_gib=%.3f' % relay)
    for level in (1, 6):
        print('zlib_level%d deflate_cpu_s_per_gib=%.3f inflate_cpu_s_per_gib=%.3f '
              'compressed_share=%.3f' % (level, figs['deflate%d' % level],
                                         figs['inflate%d' % level], figs['ratio%d' % level]))
    print('zlib_pair_rss_kib=%.1f (level 6, windowBits 15, after 8 KiB each way; %d pairs)'
          % (mem, opts.pairs))
    for level in (1, 6):
        print('ratio_deflate%d_to_relay=%.1f' % (level, figs['deflate%d' % level] / relay))


if __name__ == '__main__':
    main()
