//! The operator against a fake API server: the fake itself, leader election, and the full reconcile
//! loop with real rustcd members in Docker containers standing in for the pods.

mod binary_tests;
mod docker;
mod election_tests;
mod fake_api;
mod fake_api_tests;
mod harness;
mod kubelet;
mod loop_tests;
#[path = "../support/mod.rs"]
mod support;
