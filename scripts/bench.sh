#!/usr/bin/env bash
# Builds rustcd in release mode and runs the etcd-vs-rustcd load comparison
# (benches/compare_etcd.rs). Loopback only; bounded in ops and time.
#
# Usage: scripts/bench.sh [quick]
#   quick: 5k ops per workload instead of 50k.
# Knobs (env, see benches/compare_etcd.rs): BENCH_OPS BENCH_CLIENTS BENCH_CONNS
#   BENCH_SINGLE_OPS BENCH_KEYS BENCH_VALUE_SIZE BENCH_TIME_LIMIT_SECS
#   BENCH_SERVERS=etcd,rustcd ETCD_BIN RUSTCD_BIN
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "quick" ]]; then
    export BENCH_OPS="${BENCH_OPS:-5000}"
    export BENCH_SINGLE_OPS="${BENCH_SINGLE_OPS:-1000}"
fi

if ! command -v "${ETCD_BIN:-etcd}" >/dev/null 2>&1; then
    echo "warning: etcd not found (install Debian's etcd-server or set ETCD_BIN)" >&2
fi

# `cargo bench` builds rustcd itself with the bench profile (which inherits
# release) and hands its path to the bench as CARGO_BIN_EXE_rustcd; a separate
# `cargo build --release` would compile a second, differently-featured copy.
cargo bench --bench compare_etcd
