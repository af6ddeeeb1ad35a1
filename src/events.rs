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
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use kube::Api;
use tracing::{debug, warn};

/// Consecutive retryable failures before a Warning is published.
pub(crate) const FAILURES_BEFORE_EVENT: u32 = 3;

/// The `reportingController` of every Event.
pub(crate) const REPORTER: &str = "regcred";

/// Publishes Events and remembers which objects are currently reported as failing.
///
/// Each Event is a new object. kube-runtime's `Recorder` is not used: it
/// folds repeats into one Event by reason and object, keeping the first
/// note, so a Secret that went from "forbidden" to "wrong type" would still
/// say "forbidden". regcred publishes once per distinct failure instead.
pub(crate) struct Events {
    client: kube::Client,
    instance: String,
    rotation_events: bool,
    failing: Mutex<HashMap<(String, Failure), Streak>>,
}

/// A run of failures of one kind on one object.
#[derive(Default)]
struct Streak {
    failures: u32,
    /// The note of the Warning that is out, if any.
    reported: Option<String>,
}

/// What happened, in the words an Event uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Failure {
    /// Writing the Secret failed.
    Write,
    /// Minting the credential failed, so the Secret will go stale.
    Mint,
}

impl Events {
    pub(crate) fn new(client: kube::Client, rotation_events: bool) -> Self {
        // The pod name (HOSTNAME in a pod) tells replicas apart.
        let instance = std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or(REPORTER.into());
        Self { client, instance, rotation_events, failing: Mutex::default() }
    }

    /// Records a failure; publishes a Warning when it is permanent or has
    /// repeated [`FAILURES_BEFORE_EVENT`] times, once per failing streak and
    /// again whenever the failure's message changes.
    pub(crate) async fn failed(&self, object: &ObjectReference, what: Failure, retryable: bool, note: &str) {
        let note = truncate_note(note);
        let publish = {
            let mut failing = self.failing.lock().expect("events lock");
            let streak = failing.entry(key(object, what)).or_default();
            streak.failures += 1;
            let due = (!retryable || streak.failures >= FAILURES_BEFORE_EVENT)
                && streak.reported.as_deref() != Some(note.as_str());
            if due {
                streak.reported = Some(note.clone());
            }
            due
        };
        if publish {
            let (reason, action) = match what {
                Failure::Write => ("WriteFailed", "Update"),
                Failure::Mint => ("RefreshFailed", "Refresh"),
            };
            self.publish(object, "Warning", reason, action, note).await;
        }
    }

    /// Records a success; publishes `Recovered` if a Warning was out.
    pub(crate) async fn succeeded(&self, object: &ObjectReference, what: Failure, changed: bool) {
        let was_reported = self
            .failing
            .lock()
            .expect("events lock")
            .remove(&key(object, what))
            .is_some_and(|streak| streak.reported.is_some());
        if was_reported {
            self.publish(object, "Normal", "Recovered", "Update", "the Secret holds a fresh credential again".into())
                .await;
        } else if changed && what == Failure::Write && self.rotation_events {
            self.publish(object, "Normal", "Rotated", "Update", "wrote a freshly minted credential".into()).await;
        }
    }

    /// Publishes a change of leader, on the Lease.
    pub(crate) async fn leader(&self, lease: &ObjectReference, note: &str) {
        self.publish(lease, "Normal", "LeaderElection", "Lead", note.to_string()).await;
    }

    async fn publish(&self, object: &ObjectReference, type_: &str, reason: &str, action: &str, note: String) {
        let namespace = object.namespace.clone().unwrap_or_default();
        let now = Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                // The scheme client-go and kube-runtime use: unique per publish.
                name: Some(format!("{}.{:x}", object.name.as_deref().unwrap_or(REPORTER), now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            note: Some(note),
            regarding: Some(object.clone()),
            reporting_controller: Some(REPORTER.into()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match api.create(&crate::cluster::post_params(), &event).await {
            Ok(_) => debug!(reason, object = %object_name(object), "published event"),
            // Events are best effort: failing to report must not stop refreshing.
            Err(e) => warn!(reason, object = %object_name(object), error = %api_message(&e), "cannot publish event"),
        }
    }
}

/// The API server's own words for a failed request, not a Rust struct.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} {}: {}", status.code, status.reason, status.message),
        other => other.to_string(),
    }
}

/// The API caps notes at 1 kB.
fn truncate_note(note: &str) -> String {
    let mut end = note.len().min(1024);
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note[..end].to_string()
}

fn object_name(o: &ObjectReference) -> String {
    format!("{}/{}", o.namespace.as_deref().unwrap_or(""), o.name.as_deref().unwrap_or(""))
}

fn key(o: &ObjectReference, what: Failure) -> (String, Failure) {
    (object_name(o), what)
}
