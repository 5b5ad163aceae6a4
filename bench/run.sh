#!/usr/bin/env bash
# Runs the side-by-side benchmark (bench/compare.py): usher, HAProxy (TCP),
# nginx mail and Dovecot as a proxy, in front of the same stub backend.
#   bench/run.sh            full scale: 3 runs, 8000 idle sessions (about 20 minutes)
#   bench/run.sh --quick    tiny scale: proves the tools and scripts work
# Builds the tools first (build/, RelWithDebInfo).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target usher usher-loadgen usher-stub-backend >/dev/null
exec python3 bench/compare.py "$@"
