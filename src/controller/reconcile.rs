//! The reconcile loop: kube-runtime's `Controller` over `EtcdCluster`s, owning the objects it creates.
//!
//! [`reconcile`] is one pass: observe, assess, plan one step, keep the Services and the
//! PodDisruptionBudget applied, execute the step, record an Event, write the status. It requeues
//! quickly while the cluster is not converged and slowly (a health check) once it is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Future, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use super::assess::assess;
use super::cleanup::{finish_deletion, sync_finalizer, PVC_FINALIZER};
use super::cluster_backups;
use super::cluster_status::{CreatedWith, EtcdClusterStatus};
use super::disruption_budget::BudgetApi;
use super::error::Error;
use super::execute::{apply, gate, Executor};
use super::member_tls::{self, Dial};
use super::metrics::OperatorMetrics;
use super::names::{Identity, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY};
use super::objects::{certificate, certificate_resource, client_service, peer_service, pod_disruption_budget};
use super::observe::observe;
use super::planner::{next_step, Desired, Step};
use super::report::{build_status, invalid_spec_status};
use super::spec::{version_update, EtcdCluster};
use super::tls::TlsLayout;

/// Settings of the reconcile loop.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Member image when `spec.image` is unset (`--image`).
    pub default_image: String,
    /// Namespace to watch; `None` watches all.
    pub namespace: Option<String>,
    /// Requeue delay while the cluster moves toward its spec.
    pub busy_requeue: Duration,
    /// Requeue delay once converged (periodic health check).
    pub idle_requeue: Duration,
    /// Delay after a failed reconcile.
    pub error_requeue: Duration,
    /// Name of this replica for Events' `reportingInstance`.
    pub instance: Option<String>,
}

impl Settings {
    /// Production delays with `default_image`.
    pub fn new(default_image: &str) -> Settings {
        Settings {
            default_image: default_image.to_string(),
            namespace: None,
            busy_requeue: Duration::from_secs(5),
            idle_requeue: Duration::from_secs(60),
            error_requeue: Duration::from_secs(10),
            instance: None,
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// Kube client.
    pub client: Client,
    /// Settings.
    pub settings: Settings,
    /// Event recorder (events.k8s.io/v1).
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: OperatorMetrics,
    /// The PodDisruptionBudget version the API server serves (discovered by [`run`]).
    pub budget_api: std::sync::OnceLock<BudgetApi>,
}

impl Context {
    /// A context for `client`.
    pub fn new(client: Client, settings: Settings, metrics: OperatorMetrics) -> Context {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: settings.instance.clone(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            budget_api: std::sync::OnceLock::new(),
        }
    }

    /// The PodDisruptionBudget version to use (`policy/v1` until [`run`] has discovered it).
    pub fn budget_api(&self) -> BudgetApi {
        self.budget_api.get().copied().unwrap_or_default()
    }
}

/// One reconcile of `cluster`, in a `reconcile` span naming the cluster and its namespace.
pub async fn reconcile(cluster: Arc<EtcdCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let span = tracing::info_span!(
        "reconcile",
        cluster = %cluster.name_any(),
        namespace = %cluster.namespace().unwrap_or_default(),
        generation = cluster.meta().generation.unwrap_or(0),
    );
    let result = tracing::Instrument::instrument(reconcile_inner(&cluster, &ctx), span).await;
    ctx.metrics
        .reconciled(started.elapsed(), result.as_ref().err().map(Error::metric_label));
    result
}

/// Requeue after a failure (the failure is logged by [`run`]).
pub fn error_policy(_cluster: Arc<EtcdCluster>, _error: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.settings.error_requeue)
}

fn is_membership_step(step: &Step) -> bool {
    !matches!(step, Step::None | Step::Wait { .. })
}

/// Publishes an Event about `cluster`; a failure to publish is logged, never fatal.
async fn publish(ctx: &Context, cluster: &EtcdCluster, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
}

/// Applies the cert-manager Certificates `tls` asks for, then reads the Secrets the operator dials the
/// members with. [`Error::TlsNotReady`] says what is missing (including cert-manager itself).
async fn prepare_tls(ctx: &Context, id: &Identity, tls: &TlsLayout) -> Result<Dial, Error> {
    let resource = certificate_resource();
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &id.namespace, &resource);
    for request in tls.certificates(id) {
        let object = certificate(id, &request);
        match apply(&api, &object).await {
            Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 => {
                return Err(Error::TlsNotReady(
                    "the cert-manager API (certificates.cert-manager.io/v1) is not installed; \
                     an issuerRef needs cert-manager"
                        .into(),
                ))
            }
            result => result?,
        }
    }
    member_tls::load(&ctx.client, &id.namespace, tls).await
}

async fn reconcile_inner(cluster: &EtcdCluster, ctx: &Context) -> Result<Action, Error> {
    let id = Identity::of(cluster)?;
    if cluster.meta().deletion_timestamp.is_some() {
        if cluster.finalizers().iter().any(|f| f == PVC_FINALIZER) {
            let claims = finish_deletion(&ctx.client, cluster, &id).await?;
            tracing::info!(cluster = %id.name, namespace = %id.namespace, claims, "deleted with its claims");
        }
        return Ok(Action::await_change());
    }
    sync_finalizer(&ctx.client, cluster).await?;
    let spec = &cluster.spec;
    let previous = cluster.status.clone().unwrap_or_default();
    // The CRD's rules, also where the API server does not run them (CEL before Kubernetes 1.25; the
    // transition rules against what the cluster was created with).
    let checked = match &previous.created_with {
        Some(created) => spec.validate_update(&created.applied_to(spec)),
        None => spec.validate(),
    }
    .and_then(|()| {
        version_update(
            previous.accepted_version.as_deref(),
            spec.version.as_deref(),
            previous.updated_replicas,
            previous.replicas,
        )
    });
    if let Err(invalid) = checked {
        tracing::warn!(cluster = %id.name, namespace = %id.namespace, error = %invalid, "invalid spec");
        publish(ctx, cluster, EventType::Warning, "InvalidSpec", invalid.to_string()).await;
        let now = Time(k8s_openapi::chrono::Utc::now());
        let status = invalid_spec_status(&previous, cluster.meta().generation, &invalid, now);
        write_status(ctx, cluster, &id, status).await?;
        return Ok(Action::await_change());
    }
    let tls = TlsLayout::of(&id, spec);
    let dial = match prepare_tls(ctx, &id, &tls).await {
        Ok(dial) => Ok(dial),
        Err(Error::TlsNotReady(reason)) => Err(reason),
        Err(e) => return Err(e),
    };
    let obs = observe(&ctx.client, &id, spec.storage.is_some(), dial.as_ref().ok()).await?;
    let assessment = assess(&id, &obs, &previous.member_volumes, previous.cluster_id.is_some());
    if let Some(failure) = &assessment.restore_failure {
        let note = format!("restoring spec.bootstrap.fromBackup failed: {failure}");
        tracing::warn!(cluster = %id.name, namespace = %id.namespace, %note, "restore failed");
        publish(ctx, cluster, EventType::Warning, "RestoreFailed", note).await;
    }
    let step = match &dial {
        Ok(_) => gate(
            next_step(&Desired::from_spec(&id.name, spec), &assessment.observed),
            &obs,
        ),
        Err(reason) => Step::Wait {
            reason: format!("waiting for TLS certificates: {reason}"),
        },
    };
    if step == Step::None {
        tracing::debug!(cluster = %id.name, namespace = %id.namespace, "converged");
    } else {
        tracing::info!(cluster = %id.name, namespace = %id.namespace, %step, "reconcile");
    }

    let ns = &id.namespace;
    apply(&Api::<Service>::namespaced(ctx.client.clone(), ns), &peer_service(&id)).await?;
    apply(
        &Api::<Service>::namespaced(ctx.client.clone(), ns),
        &client_service(&id),
    )
    .await?;
    let voters = assessment
        .observed
        .members
        .iter()
        .flatten()
        .filter(|m| !m.is_learner)
        .count();
    let budget_for = voters.max(usize::try_from(spec.replicas).unwrap_or(1));
    let budget_api = ctx.budget_api();
    apply(
        &Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &budget_api.resource()),
        &budget_api.object(&pod_disruption_budget(&id, budget_for))?,
    )
    .await?;

    let executor = Executor {
        client: &ctx.client,
        id: &id,
        spec,
        default_image: &ctx.settings.default_image,
        obs: &obs,
        assessment: &assessment,
    };
    let executed = executor.execute(&step).await;
    if is_membership_step(&step) {
        let (type_, note) = match &executed {
            Ok(()) => (EventType::Normal, step.to_string()),
            Err(e) => (EventType::Warning, format!("{step} failed: {e}")),
        };
        publish(ctx, cluster, type_, step.reason(), note).await;
        if executed.is_ok() {
            ctx.metrics.step(step.reason());
        }
    }

    let mut status = build_status(
        &id,
        cluster.meta().generation,
        &previous,
        &assessment,
        &step,
        Time(k8s_openapi::chrono::Utc::now()),
    );
    status.created_with = previous.created_with.clone().or_else(|| Some(CreatedWith::of(spec)));
    status.accepted_version = spec.version.clone().or_else(|| previous.accepted_version.clone());
    let since = cluster
        .meta()
        .creation_timestamp
        .as_ref()
        .map_or_else(k8s_openapi::chrono::Utc::now, |t| t.0);
    let (summary, schedule_wait) = cluster_backups::sync(
        &ctx.client,
        &id,
        spec.backup.as_ref(),
        status.cluster_id.is_some(),
        since,
    )
    .await?;
    status.backup = summary;
    write_status(ctx, cluster, &id, status).await?;
    executed?;
    let wait = match step {
        Step::None => ctx.settings.idle_requeue,
        _ => ctx.settings.busy_requeue,
    };
    Ok(Action::requeue(schedule_wait.map_or(wait, |w| w.min(wait))))
}

/// Writes `status` with server-side apply on the status subresource, unless it is what `cluster` has.
async fn write_status(
    ctx: &Context,
    cluster: &EtcdCluster,
    id: &Identity,
    status: EtcdClusterStatus,
) -> Result<(), Error> {
    if cluster.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": EtcdCluster::api_version(&()),
        "kind": EtcdCluster::kind(&()),
        "status": status,
    });
    Api::<EtcdCluster>::namespaced(ctx.client.clone(), &id.namespace)
        .patch_status(
            &id.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Runs the controller until `shutdown` completes (then finishes the reconciles in flight).
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = ctx.settings.namespace.as_deref();
    // A second run on the same context keeps what the first discovered.
    let _ = ctx.budget_api.set(BudgetApi::discover(&client).await);
    let budgets = ctx.budget_api().resource();
    tracing::info!(api_version = %budgets.api_version, "PodDisruptionBudget API");
    let budgets_api = match ns {
        Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &budgets),
        None => Api::<DynamicObject>::all_with(client.clone(), &budgets),
    };
    let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}"));
    Controller::new(api::<EtcdCluster>(&client, ns), watcher::Config::default())
        .owns(api::<StatefulSet>(&client, ns), managed.clone())
        .owns(api::<Service>(&client, ns), managed.clone())
        .owns_with(budgets_api, budgets, managed.clone())
        .watches(api::<Pod>(&client, ns), managed, |pod: Pod| {
            let cluster = pod.labels().get(LABEL_INSTANCE)?.clone();
            Some(ObjectRef::<EtcdCluster>::new(&cluster).within(&pod.namespace()?))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(cluster = %object.name, "reconciled"),
                Err(e) => tracing::warn!(error = %rustcd_dial::error_chain(&e), "reconcile failed"),
            }
        })
        .await;
}
