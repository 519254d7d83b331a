//! Which `PodDisruptionBudget` API the API server serves: `policy/v1` (Kubernetes 1.21+) or only
//! `policy/v1beta1` (1.20 and older; seen on the real 1.20.2, where `/apis/policy/v1` is 404).
//! Discovered once when the controller starts, never configured. The object is the same in both
//! versions for what the operator sets (`minAvailable`, `selector`), so the typed `policy/v1` object is
//! built and, for `v1beta1`, sent as a dynamic object with the other `apiVersion`.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::Client;

use crate::error::Error;

/// The served PodDisruptionBudget version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BudgetApi {
    /// `policy/v1`.
    #[default]
    V1,
    /// `policy/v1beta1` only.
    V1beta1,
}

impl BudgetApi {
    /// Asks the API server's discovery: `policy/v1` when it lists `poddisruptionbudgets`, else
    /// `v1beta1` when that does; `V1` when discovery itself fails (the error then shows on the first
    /// apply, naming the API).
    pub async fn discover(client: &Client) -> BudgetApi {
        match client.list_api_group_resources("policy/v1").await {
            Ok(list) if served(&list) => BudgetApi::V1,
            _ => match client.list_api_group_resources("policy/v1beta1").await {
                Ok(list) if served(&list) => BudgetApi::V1beta1,
                _ => BudgetApi::V1,
            },
        }
    }

    /// The API resource of this version.
    pub fn resource(self) -> ApiResource {
        let version = match self {
            BudgetApi::V1 => "v1",
            BudgetApi::V1beta1 => "v1beta1",
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("policy", version, "PodDisruptionBudget"),
            "poddisruptionbudgets",
        )
    }

    /// `budget` as an object of this version.
    pub fn object(self, budget: &PodDisruptionBudget) -> Result<DynamicObject, Error> {
        let mut value = serde_json::to_value(budget)?;
        value["apiVersion"] = serde_json::Value::String(self.resource().api_version);
        Ok(serde_json::from_value(value)?)
    }
}

fn served(list: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList) -> bool {
    list.resources.iter().any(|r| r.name == "poddisruptionbudgets")
}

#[cfg(test)]
mod tests {
    use super::BudgetApi;
    use crate::names::test_identity;
    use crate::objects::pod_disruption_budget;

    #[test]
    fn the_same_budget_in_either_version() {
        let id = test_identity();
        let budget = pod_disruption_budget(&id, 3);
        let v1 = serde_json::to_value(BudgetApi::V1.object(&budget).unwrap()).unwrap();
        let beta = serde_json::to_value(BudgetApi::V1beta1.object(&budget).unwrap()).unwrap();
        assert_eq!(v1["apiVersion"], "policy/v1");
        assert_eq!(beta["apiVersion"], "policy/v1beta1");
        assert_eq!(beta["kind"], "PodDisruptionBudget");
        assert_eq!(v1["spec"], beta["spec"]);
        assert_eq!(beta["spec"]["minAvailable"], 2);
        assert_eq!(v1["metadata"], beta["metadata"]);
        assert_eq!(BudgetApi::V1beta1.resource().plural, "poddisruptionbudgets");
    }
}
