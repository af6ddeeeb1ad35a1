//! Kubernetes Events (events.k8s.io/v1) on the Secrets regcred keeps fresh.
//!
//! An Event is published when a Secret cannot be kept fresh (a write or a
//! mint failed permanently, or failed [`FAILURES_BEFORE_EVENT`] times in a
//! row) and once more when it recovers. Routine rotations publish nothing
//! unless `--rotation-events` asks for them. Notes are error messages, which
//! never carry credentials.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::{debug, warn};

/// Consecutive retryable failures before a Warning is published.
pub const FAILURES_BEFORE_EVENT: u32 = 3;

/// The `reportingController` of every Event.
pub const REPORTER: &str = "regcred";

/// Publishes Events and remembers which objects are currently reported as failing.
pub struct Events {
    recorder: Recorder,
    rotation_events: bool,
    timeout: std::time::Duration,
    /// Consecutive failures per object and kind, and whether a Warning is out.
    failing: Mutex<HashMap<(String, Failure), (u32, bool)>>,
}

/// What happened, in the words an Event uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    /// Writing the Secret failed.
    Write,
    /// Minting the credential failed, so the Secret will go stale.
    Mint,
}

impl Events {
    pub fn new(client: kube::Client, rotation_events: bool, timeout: std::time::Duration) -> Self {
        // The pod name (HOSTNAME in a pod) tells replicas apart.
        let instance = std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).ok();
        let reporter = Reporter { controller: REPORTER.into(), instance };
        Self { recorder: Recorder::new(client, reporter), rotation_events, timeout, failing: Mutex::default() }
    }

    /// Records a failure; publishes a Warning when it is permanent or has
    /// repeated [`FAILURES_BEFORE_EVENT`] times, once per failing streak.
    pub async fn failed(&self, object: &ObjectReference, what: Failure, retryable: bool, note: &str) {
        let publish = {
            let mut failing = self.failing.lock().expect("events lock");
            let entry = failing.entry(key(object, what)).or_insert((0, false));
            entry.0 += 1;
            let due = !entry.1 && (!retryable || entry.0 >= FAILURES_BEFORE_EVENT);
            entry.1 |= due;
            due
        };
        if publish {
            let (reason, action) = match what {
                Failure::Write => ("WriteFailed", "Update"),
                Failure::Mint => ("RefreshFailed", "Refresh"),
            };
            self.publish(object, EventType::Warning, reason, action, note).await;
        }
    }

    /// Records a success; publishes `Recovered` if a Warning was out.
    pub async fn succeeded(&self, object: &ObjectReference, what: Failure, changed: bool) {
        let was_reported =
            self.failing.lock().expect("events lock").remove(&key(object, what)).is_some_and(|(_, reported)| reported);
        if was_reported {
            self.publish(object, EventType::Normal, "Recovered", "Update", "the Secret holds a fresh credential again")
                .await;
        } else if changed && what == Failure::Write && self.rotation_events {
            self.publish(object, EventType::Normal, "Rotated", "Update", "wrote a freshly minted credential").await;
        }
    }

    async fn publish(&self, object: &ObjectReference, type_: EventType, reason: &str, action: &str, note: &str) {
        // The API caps notes at 1 kB.
        let note: String = note.chars().take(1000).collect();
        let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
        let published = tokio::time::timeout(self.timeout, self.recorder.publish(&event, object)).await;
        match published.unwrap_or_else(|_| Err(kube::Error::Service("timed out".into()))) {
            Ok(()) => debug!(reason, object = %object_name(object), "published event"),
            // Events are best effort: failing to report must not stop refreshing.
            Err(e) => warn!(reason, object = %object_name(object), error = %e, "cannot publish event"),
        }
    }
}

fn object_name(o: &ObjectReference) -> String {
    format!("{}/{}", o.namespace.as_deref().unwrap_or(""), o.name.as_deref().unwrap_or(""))
}

fn key(o: &ObjectReference, what: Failure) -> (String, Failure) {
    (object_name(o), what)
}
