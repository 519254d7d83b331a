#!/usr/bin/env bash
# The whole test suite: setup, format, lint and doc checks, then every crate's unit and property tests
# and the integration test binaries (tests/: member, cluster, docker, operator, kubernetes_operator on
# a real Kubernetes 1.20 control plane that setup builds once per machine; e2e on that cluster's
# one-node form, or on the cluster KUBECONFIG names). Used by CI (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --with-etcd --with-kubernetes
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
# --workspace builds both binaries before any test runs: the operator's tests run rustcd members too.
cargo test --workspace --locked --lib --bins --tests -- --test-threads=2
