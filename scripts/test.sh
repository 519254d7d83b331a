#!/usr/bin/env bash
# The whole test suite: setup, format and lint checks, unit, property, differential
# (Debian etcd 3.4 vs rustcd), crash and Helm chart tests (helm-sdkpy); tests/e2e skips without
# KUBECONFIG. Used by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-etcd
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --lib --bins --tests -- --test-threads=2
