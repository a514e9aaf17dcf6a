//! Replicas that cooperate: each fingerprint is owned by one live replica, so group commit sees
//! all of a fingerprint's traffic and replicas stop colliding on the same RRs.
//!
//! - [`membership`]: a Lease per replica in the controller namespace, and a watch of them all
//!   that keeps the [`ring::Ring`] of live members.
//! - [`ring`]: rendezvous hashing of the fingerprint over the members.
//! - [`forward`]: the hop to the owner (wire format, bounded keep-alive client, deadline).
//!
//! Correctness never depends on the ring: a receiver that cannot reach the owner records the
//! signal itself, and replicas that disagree about the members both write, under the same
//! resourceVersion preconditions and deterministic names as a single replica. A forwarded
//! signal is processed by the owner and never forwarded again.

pub mod forward;
pub mod membership;
pub mod ring;

use std::sync::Arc;

use http::HeaderValue;
use k8s_openapi::api::coordination::v1::Lease;
use metrics::{Counter, Gauge, Histogram};
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::fingerprint::Fingerprint;
use crate::ingest::Signal;
use crate::shutdown::Shutdown;
use crate::telemetry::names;
pub use forward::{Fallback, Forwarded};

/// This replica's place in the ring.
pub struct Cluster {
    /// The peer address this replica advertises.
    me: String,
    view: membership::View,
    forwarder: forward::Forwarder,
}

impl Cluster {
    /// Joins the ring as `advertise`: keeps this replica's Lease in `namespace` (named after
    /// `pod_name`) until intake stops, and watches the others until the end. The returned
    /// tasks end with `shutdown`.
    pub fn join(
        config: &ClusterConfig,
        client: kube::Client,
        namespace: &str,
        advertise: String,
        pod_name: Option<&str>,
        call_timeout: std::time::Duration,
        shutdown: &Shutdown,
    ) -> (Arc<Cluster>, Vec<JoinHandle<()>>) {
        let telemetry = Telemetry::new();
        let view = membership::View::default();
        let api: kube::Api<Lease> = kube::Api::namespaced(client, namespace);
        let settings = membership::Settings {
            namespace: namespace.to_owned(),
            lease_name: membership::lease_name(pod_name),
            advertise: advertise.clone(),
            lease_duration: config.lease_duration,
            renew_interval: config.renew_interval,
            call_timeout,
        };
        tracing::info!(
            lease = settings.lease_name,
            advertise,
            namespace = settings.namespace,
            "joining the cluster ring"
        );
        let tasks = vec![
            tokio::spawn(membership::keep_lease(
                api.clone(),
                settings,
                shutdown.intake(),
            )),
            tokio::spawn(membership::watch(
                api,
                advertise.clone(),
                view.clone(),
                telemetry.clone(),
                shutdown.last(),
            )),
        ];
        let forwarder = forward::Forwarder::new(
            forward::Limits {
                timeout: config.forward_timeout,
                max_in_flight_per_peer: config.max_in_flight_per_peer,
            },
            telemetry,
        );
        let cluster = Cluster {
            me: advertise,
            view,
            forwarder,
        };
        (Arc::new(cluster), tasks)
    }

    /// The peer address of `fingerprint`'s owner, `None` when it is this replica.
    pub fn owner(&self, fingerprint: &Fingerprint) -> Option<Arc<str>> {
        let ring = self.view.load();
        match ring.owner(fingerprint) {
            Some(member) if *member.addr != *self.me => Some(member.addr.clone()),
            _ => None,
        }
    }

    /// Forwards `signal` to `owner` (see [`forward::Forwarder::forward`]).
    pub async fn forward(
        &self,
        owner: &str,
        signal: &Signal,
        authorization: Option<&HeaderValue>,
    ) -> Forwarded {
        self.forwarder.forward(owner, signal, authorization).await
    }

    /// The live members this replica sees, itself included.
    pub fn members(&self) -> Vec<String> {
        self.view
            .load()
            .members()
            .iter()
            .map(|m| m.addr.to_string())
            .collect()
    }
}

/// The cluster's metric handles.
#[derive(Clone)]
pub struct Telemetry {
    /// `gateway_cluster_members`.
    pub members: Gauge,
    forwarded: [Counter; 3],
    fallbacks: [Counter; 3],
    /// `gateway_forward_duration_seconds`.
    pub forward_duration: Histogram,
}

/// `outcome` label values of `gateway_forwarded_signals_total`.
pub const FORWARD_OUTCOMES: [&str; 3] = ["ok", "error", "unanswered"];
/// `reason` label values of `gateway_local_fallbacks_total`.
pub const FALLBACK_REASONS: [&str; 3] = ["unreachable", "busy", "refused"];

impl Telemetry {
    /// Registers the handles.
    pub fn new() -> Self {
        crate::telemetry::prometheus();
        Telemetry {
            members: metrics::gauge!(names::CLUSTER_MEMBERS),
            forwarded: FORWARD_OUTCOMES
                .map(|outcome| metrics::counter!(names::FORWARDED_SIGNALS, "outcome" => outcome)),
            fallbacks: FALLBACK_REASONS
                .map(|reason| metrics::counter!(names::LOCAL_FALLBACKS, "reason" => reason)),
            forward_duration: metrics::histogram!(names::FORWARD_DURATION),
        }
    }

    fn forwarded(&self, outcome: &str) {
        if let Some(slot) = FORWARD_OUTCOMES.iter().position(|o| *o == outcome) {
            self.forwarded[slot].increment(1);
        }
    }

    fn fallback(&self, reason: Fallback) {
        if let Some(slot) = FALLBACK_REASONS.iter().position(|r| *r == reason.label()) {
            self.fallbacks[slot].increment(1);
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}
