//! The two Services and the PodDisruptionBudget of a cluster.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::names::{Identity, CLIENT_PORT, PEER_PORT};
use crate::planner::quorum;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

/// Headless Service `<name>-peer`: gives every pod the DNS name its peer URL uses, including pods that
/// are not ready yet (a joining member must be reachable before it is ready).
pub fn peer_service(id: &Identity) -> Service {
    Service {
        metadata: super::metadata(id, &id.peer_service()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(id.selector_labels()),
            ports: Some(vec![port("client", CLIENT_PORT), port("peer", PEER_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Client Service `<name>` on port 2379, routing to ready members only.
pub fn client_service(id: &Identity) -> Service {
    Service {
        metadata: super::metadata(id, &id.client_service()),
        spec: Some(ServiceSpec {
            selector: Some(id.selector_labels()),
            ports: Some(vec![port("client", CLIENT_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// PodDisruptionBudget `<name>`: voluntary disruptions must leave a quorum of `voters` members
/// (`voters` is the larger of the desired and the current voter count, so a scale-down in progress is
/// protected for the membership that still exists).
pub fn pod_disruption_budget(id: &Identity, voters: usize) -> PodDisruptionBudget {
    let min_available = i32::try_from(quorum(voters.max(1))).unwrap_or(i32::MAX);
    PodDisruptionBudget {
        metadata: super::metadata(id, &id.client_service()),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(min_available)),
            selector: Some(LabelSelector {
                match_labels: Some(id.selector_labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}
