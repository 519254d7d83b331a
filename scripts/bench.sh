#!/usr/bin/env bash
# Builds rustcd in release mode and runs the etcd-vs-rustcd load comparison
# (benches/compare_etcd.rs). Loopback only; bounded in ops and time.
#
# Usage: scripts/bench.sh [quick] [cluster]
#   quick:   5k ops per workload instead of 50k.
#   cluster: 3-member clusters on both sides (BENCH_MEMBERS=3) instead of single members.
# Knobs (env, see benches/compare_etcd.rs): BENCH_OPS BENCH_CLIENTS BENCH_CONNS
#   BENCH_SINGLE_OPS BENCH_KEYS BENCH_VALUE_SIZE BENCH_TIME_LIMIT_SECS
#   BENCH_SERVERS=etcd,rustcd ETCD_BIN RUSTCD_BIN
set -euo pipefail
cd "$(dirname "$0")/.."

for arg in "$@"; do
    case "$arg" in
        quick)
            export BENCH_OPS="${BENCH_OPS:-5000}"
            export BENCH_SINGLE_OPS="${BENCH_SINGLE_OPS:-1000}"
            ;;
        cluster) export BENCH_MEMBERS="${BENCH_MEMBERS:-3}" ;;
        *) echo "usage: $0 [quick] [cluster]" >&2; exit 2 ;;
    esac
done

if ! command -v "${ETCD_BIN:-etcd}" >/dev/null 2>&1; then
    echo "warning: etcd not found (install Debian's etcd-server or set ETCD_BIN)" >&2
fi

# `cargo bench` builds rustcd itself with the bench profile (which inherits
# release) into target/release, where the bench finds it (testkit::built_binary); a separate
# `cargo build --release` would compile a second, differently-featured copy.
cargo bench --bench compare_etcd
