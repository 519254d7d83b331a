//! The operator against a fake API server: the fake itself, leader election, the binary, and the full
//! reconcile loop with real rustcd members in Docker containers standing in for the pods (those tests
//! print `SKIP:` and pass where Docker is unavailable).
//!
//! The membership tests (scale up and down, replace a member that lost its data, crash after
//! MemberAdd, PVC retention) also pass with Debian's etcd 3.4 as the member, which serves `/health`
//! instead of `/readyz`:
//!
//! ```text
//! OPERATOR_TEST_READINESS_PATH=/health RUSTCD_BIN=/usr/bin/etcd cargo test -p rustcd-operator --test operator
//! ```

mod backup_tests;
mod binary_tests;
mod election_tests;
mod examples;
mod fake_api_tests;
mod harness;
mod helm_chart;
mod loop_tests;
mod scale_tests;
mod tls_infra_tests;
mod tls_probe;
mod tls_tests;
