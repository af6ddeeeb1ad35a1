//! Leader election with a `coordination.k8s.io/v1` Lease: several replicas
//! of `run`, one writer.
//!
//! The rules are client-go's, so that two writers cannot overlap even when
//! the nodes' clocks disagree: every time regcred compares is its own
//! monotonic clock, never a timestamp another node wrote.
//! - A standby takes the Lease only after it has seen the same record (holder
//!   and renew time) unchanged for the record's lease duration, timed from
//!   when *it* first saw that record; a released Lease (no holder) at once.
//! - The leader renews every retry period. It counts its renew deadline from
//!   the moment it *sent* its last successful renewal, which is before the
//!   server stored it, so before any standby could have seen it; and it stops
//!   writing at that deadline, a lease duration minus a renew deadline (5 s
//!   by default) before any standby may start.
//! - Every change to the Lease is a merge patch carrying the resourceVersion
//!   it was decided on: two standbys racing for an expired Lease cannot both
//!   win (the loser gets 409 Conflict).
//!
//! A leader that loses the Lease stops its work and stands by again. On
//! shutdown it releases the Lease, so a rollout hands over at once instead
//! of after a lease duration.

mod args;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch};
use kube::Api;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::events::Events;
use crate::health::{Health, Role};
use crate::metrics::Metrics;

pub(crate) use args::{Args, LeaderTimingError};

/// Where the Lease is and how it is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The Lease's name.
    pub lease_name: String,
    /// Its namespace; `None`: the client's own.
    pub namespace: Option<String>,
    /// How long a standby waits after it last saw a renewal.
    pub lease_duration: Duration,
    /// How long the leader writes without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby looks.
    pub retry_period: Duration,
}

/// What a replica last saw of the Lease, timed by its own clock.
#[derive(Clone, Debug)]
struct Observation {
    /// The record's holder, renew time and duration: a change to any of them
    /// restarts the wait.
    record: (Option<String>, Option<String>, Option<i32>),
    /// When this replica first saw that record.
    seen_at: Instant,
}

impl Observation {
    fn holder(&self) -> Option<&str> {
        self.record.0.as_deref()
    }

    /// Until when the holder may still be writing: the record's duration
    /// after it was first seen.
    fn fresh_until(&self) -> Instant {
        let secs = self.record.2.and_then(|s| u64::try_from(s).ok()).unwrap_or(0);
        self.seen_at + Duration::from_secs(secs)
    }
}

/// Whether `me` may write the Lease at `now`: nobody holds it, `me` does,
/// or its holder has not renewed for a lease duration of `me`'s own clock.
fn may_take(observed: &Observation, me: &str, now: Instant) -> bool {
    match observed.holder() {
        None => true,
        Some(holder) if holder == me => true,
        Some(_) => now >= observed.fresh_until(),
    }
}

/// One replica's side of the election.
pub(crate) struct Elector {
    api: Api<Lease>,
    lease: ObjectReference,
    identity: String,
    settings: Settings,
    observed: Mutex<Option<Observation>>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    events: Events,
}

/// Why a look at the Lease did not end with this replica holding it.
enum Outcome {
    /// This replica holds the Lease; the request deciding it was sent then.
    Holds(Instant),
    /// Another replica holds it.
    Held,
}

impl Elector {
    /// An elector for the Lease `settings` names, in `default_namespace`
    /// unless they name one.
    pub(crate) fn new(
        client: kube::Client,
        default_namespace: &str,
        settings: Settings,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    ) -> Elector {
        let namespace = settings.namespace.clone().unwrap_or_else(|| default_namespace.to_string());
        // The pod's name tells people which replica leads; the suffix keeps
        // a restarted process from mistaking its predecessor's Lease for its
        // own (and two processes started with one name apart).
        let base = std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or("regcred".into());
        let identity = format!("{base}_{:08x}", fastrand::u32(..));
        let lease = ObjectReference {
            api_version: Some("coordination.k8s.io/v1".into()),
            kind: Some("Lease".into()),
            name: Some(settings.lease_name.clone()),
            namespace: Some(namespace.clone()),
            ..Default::default()
        };
        health.set_role(Role::Standby { holder: None, fresh_until: None });
        metrics.set_leader(false);
        Elector {
            api: Api::namespaced(client.clone(), &namespace),
            lease,
            identity,
            settings,
            observed: Mutex::new(None),
            health,
            metrics,
            events: Events::new(client, false),
        }
    }

    fn lease_name(&self) -> String {
        format!("{}/{}", self.lease.namespace.as_deref().unwrap_or(""), self.settings.lease_name)
    }

    /// Runs `work` whenever this replica leads, until `shutdown` flips.
    /// `work` gets `shutdown` and must return when it flips; when the Lease
    /// is lost, `work` is dropped (every write is atomic) and `stand_down`
    /// is called to stop whatever `work` started in the background.
    pub(crate) async fn run<W, F>(&self, mut shutdown: watch::Receiver<bool>, work: W, stand_down: impl Fn())
    where
        W: Fn(watch::Receiver<bool>) -> F,
        F: std::future::Future<Output = ()>,
    {
        info!(lease = %self.lease_name(), identity = %self.identity, "leader election: standing by until this replica holds the Lease");
        loop {
            let renewed_at = tokio::select! {
                at = self.acquire() => at,
                _ = shutdown.changed() => return,
            };
            self.became(true).await;
            let lost = tokio::select! {
                () = work(shutdown.clone()) => false,
                () = self.hold(renewed_at) => true,
            };
            if !lost {
                // Shut down while leading: hand over now.
                self.release().await;
                return;
            }
            stand_down();
            self.became(false).await;
        }
    }

    /// Looks at the Lease every retry period until this replica holds it.
    async fn acquire(&self) -> Instant {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Outcome::Holds(sent)) => return sent,
                Ok(Outcome::Held) => {}
                Err(e) => {
                    warn!(lease = %self.lease_name(), error = %e, "leader election: cannot read or take the Lease")
                }
            }
            self.report_standby();
            // client-go's jitter: a little longer than the retry period, so
            // standbys started together do not keep asking together.
            tokio::time::sleep(self.settings.retry_period.mul_f64(1.0 + 0.2 * fastrand::f64())).await;
        }
    }

    /// Renews every retry period; returns when a renewal has not succeeded
    /// for a renew deadline (counted from when the last good one was sent),
    /// or another replica holds the Lease.
    async fn hold(&self, mut renewed_at: Instant) {
        loop {
            tokio::time::sleep(self.settings.retry_period).await;
            loop {
                let deadline = renewed_at + self.settings.renew_deadline;
                let attempt = tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await;
                match attempt {
                    Ok(Ok(Outcome::Holds(sent))) => {
                        renewed_at = sent;
                        debug!(lease = %self.lease_name(), "renewed the Lease");
                        break;
                    }
                    Ok(Ok(Outcome::Held)) => {
                        warn!(lease = %self.lease_name(), "leader election: another replica holds the Lease; stopping");
                        return;
                    }
                    Ok(Err(e)) => {
                        warn!(lease = %self.lease_name(), error = %e, "leader election: cannot renew the Lease");
                    }
                    Err(_) => {}
                }
                if Instant::now() >= deadline {
                    warn!(
                        lease = %self.lease_name(),
                        renew_deadline = ?self.settings.renew_deadline,
                        "leader election: no renewal within the renew deadline; stopping before another replica may start"
                    );
                    return;
                }
                tokio::time::sleep(self.settings.retry_period.min(deadline - Instant::now())).await;
            }
        }
    }

    /// client-go's `tryAcquireOrRenew`: read the Lease, remember when its
    /// record changed, and write this replica into it if it may.
    async fn try_acquire_or_renew(&self) -> Result<Outcome, kube::Error> {
        let sent = Instant::now();
        let now = MicroTime(Timestamp::now());
        let duration = i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(lease) = self.api.get_opt(&self.settings.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.settings.lease_name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&crate::cluster::post_params(), &lease).await {
                Ok(_) => Ok(Outcome::Holds(sent)),
                // Another replica created it first.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Outcome::Held),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let observed = self.observe(&spec, holder.clone());
        if !may_take(&observed, &self.identity, Instant::now()) {
            return Ok(Outcome::Held);
        }
        let mine = holder.as_deref() == Some(self.identity.as_str());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let patch = json!({
            "metadata": {"resourceVersion": lease.metadata.resource_version},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": duration,
                "renewTime": now,
                "acquireTime": if mine { spec.acquire_time.unwrap_or_else(|| now.clone()) } else { now.clone() },
                "leaseTransitions": if mine { transitions } else { transitions.saturating_add(1) },
            }
        });
        match self.patch(&patch).await {
            Ok(()) => Ok(Outcome::Holds(sent)),
            // Changed since it was read: another replica wrote it.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Outcome::Held),
            Err(e) => Err(e),
        }
    }

    /// A merge patch of the Lease; it carries the resourceVersion it was
    /// decided on, so a Lease changed since is not overwritten (409).
    async fn patch(&self, patch: &serde_json::Value) -> Result<(), kube::Error> {
        let params = crate::cluster::patch_params();
        self.api.patch(&self.settings.lease_name, &params, &Patch::Merge(patch)).await.map(drop)
    }

    /// Records the Lease's record, restarting the wait if it changed.
    fn observe(&self, spec: &LeaseSpec, holder: Option<String>) -> Observation {
        let renew = spec.renew_time.as_ref().map(|t| t.0.to_string());
        let record = (holder, renew, spec.lease_duration_seconds);
        let mut observed = self.observed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match observed.as_ref() {
            Some(o) if o.record == record => o.clone(),
            _ => {
                let o = Observation { record, seen_at: Instant::now() };
                *observed = Some(o.clone());
                o
            }
        }
    }

    /// Tells /readyz and the metrics who leads, as this standby sees it.
    fn report_standby(&self) {
        let observed = self.observed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let (holder, fresh_until) = match observed {
            Some(o) => (o.holder().map(str::to_string), Some(o.fresh_until())),
            None => (None, None),
        };
        self.health.set_role(Role::Standby { holder, fresh_until });
    }

    /// Logs the change, and publishes it as an Event on the Lease.
    async fn became(&self, leader: bool) {
        self.metrics.set_leader(leader);
        if leader {
            info!(lease = %self.lease_name(), identity = %self.identity, "leader election: this replica leads; minting and writing");
            self.health.set_role(Role::Writer);
            self.events.leader(&self.lease, &format!("{} became leader", self.identity)).await;
        } else {
            warn!(lease = %self.lease_name(), identity = %self.identity, "leader election: this replica lost the Lease; standing by");
            self.report_standby();
            self.events.leader(&self.lease, &format!("{} stopped leading", self.identity)).await;
        }
    }

    /// Gives the Lease up, so a standby takes it at its next look rather
    /// than after a lease duration. Only if this replica still holds it.
    async fn release(&self) {
        let Ok(Some(lease)) = self.api.get_opt(&self.settings.lease_name).await else { return };
        let spec = lease.spec.unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let patch = json!({
            "metadata": {"resourceVersion": lease.metadata.resource_version},
            "spec": {"holderIdentity": null, "leaseDurationSeconds": 1, "renewTime": MicroTime(Timestamp::now())},
        });
        match self.patch(&patch).await {
            Ok(()) => info!(lease = %self.lease_name(), "leader election: released the Lease"),
            Err(e) => warn!(lease = %self.lease_name(), error = %e, "leader election: cannot release the Lease"),
        }
        self.metrics.set_leader(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(holder: Option<&str>, secs: i32, at: Instant) -> Observation {
        Observation { record: (holder.map(str::to_string), Some("t".into()), Some(secs)), seen_at: at }
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_takes_over_only_after_a_full_lease_duration_of_its_own_clock() {
        let t0 = Instant::now();
        let o = seen(Some("other"), 15, t0);
        assert!(!may_take(&o, "me", t0));
        assert!(!may_take(&o, "me", t0 + Duration::from_millis(14_999)));
        assert!(may_take(&o, "me", t0 + Duration::from_secs(15)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_or_own_lease_may_be_written_at_once() {
        let t0 = Instant::now();
        assert!(may_take(&seen(None, 15, t0), "me", t0));
        assert!(may_take(&seen(Some("me"), 15, t0), "me", t0));
    }
}
