#!/usr/bin/env bash
# Runs the side-by-side benchmark (bench/compare.py): usher, HAProxy (TCP),
# nginx mail and Dovecot as a proxy, in front of the same stub backend.
#   bench/run.sh            full scale: 3 runs, 8000 idle sessions (about 20 minutes)
#   bench/run.sh --quick    tiny scale: proves the tools and scripts work
#   bench/run.sh tls-full   the long TLS run (bench/tls_full.py): 100,000 TLS
#                           logins and 9,000 idle TLS sessions, zero lost
# Builds the tools first (build/, RelWithDebInfo).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target usher usher-loadgen usher-stub-backend usher-tls-floor >/dev/null
if [ "${1:-}" = tls-full ]; then
  shift
  exec python3 bench/tls_full.py "$@"
fi
python3 bench/compare.py "$@"
# OpenSSL's own server-side cost per handshake here, the floor under every
# proxy's TLS figures above (bench/tls_floor.c).
n=2000
[ "${1:-}" = "--quick" ] && n=100
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/key.pem" \
  -out "$tmp/cert.pem" -days 2 -subj /CN=localhost 2>/dev/null
echo
echo "OpenSSL alone, server side per handshake (usher-tls-floor, $n each):"
echo "  TLS 1.3: $(build/bench/usher-tls-floor "$tmp/cert.pem" "$tmp/key.pem" --handshakes $n)"
echo "  TLS 1.2: $(build/bench/usher-tls-floor "$tmp/cert.pem" "$tmp/key.pem" --handshakes $n --tls12)"
# What OpenSSL's key log costs: always on, and armed only for the two
# traffic secrets as usher's record layer does (proxy/tlsrec.c).
echo "  TLS 1.3, key log always on: $(build/bench/usher-tls-floor "$tmp/cert.pem" "$tmp/key.pem" --handshakes $n --keylog always)"
echo "  TLS 1.3, key log armed as usher: $(build/bench/usher-tls-floor "$tmp/cert.pem" "$tmp/key.pem" --handshakes $n --keylog armed)"
