//! The one way regcred makes a Secret hold its current document, used by
//! the single-Secret sink and by namespace fan-out.
//!
//! regcred's parts of a Secret (one data key, its label, the expiry
//! annotation) are written as a JSON merge patch that names nothing else,
//! so every other key, label and annotation is kept, and that carries the
//! `resourceVersion` regcred last saw, so the API server refuses it (409)
//! if anyone changed the Secret since: regcred then reads it again and
//! retries, up to [`MAX_CONFLICTS`] times. A Secret that does not exist is
//! created with regcred's parts only.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::Patch;
use kube::Api;
use serde_json::json;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::secret::{
    expiry_annotation, is_managed, is_opted_out, new_managed, EXPIRES_AT_ANNOTATION, MANAGED_LABEL, MANAGED_VALUE,
};
use super::{SecretKey, SinkError, WriteOutcome};
use crate::cluster;
use crate::render::AuthsDocument;

/// Conflicting writes tolerated in one write before it counts as failed
/// (the caller then retries with backoff). Also the limit of ServiceAccount
/// patching.
pub(crate) const MAX_CONFLICTS: u32 = 5;

/// What regcred last saw of a Secret: enough to decide whether to write,
/// and to write conditionally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub resource_version: String,
    pub type_: String,
    /// It carries regcred's label (or 0.1.0's manager label).
    pub managed: bool,
    /// Labelled `regcred.dev/managed: "false"`: regcred must leave it alone.
    pub opted_out: bool,
    /// Hash of the owned key's bytes plus the expiry annotation.
    pub content: Option<u64>,
}

impl Seen {
    /// What matters of `secret` when regcred owns its data key `key`.
    pub(crate) fn of(secret: &Secret, key: &SecretKey) -> Seen {
        let owned = secret.data.as_ref().and_then(|d| d.get(key.as_str())).map(|b| b.0.as_slice());
        let expires =
            secret.metadata.annotations.as_ref().and_then(|a| a.get(EXPIRES_AT_ANNOTATION)).map(String::as_str);
        Seen {
            resource_version: secret.metadata.resource_version.clone().unwrap_or_default(),
            type_: secret.type_.clone().unwrap_or_else(|| "Opaque".into()),
            managed: is_managed(secret.metadata.labels.as_ref()),
            opted_out: is_opted_out(secret.metadata.labels.as_ref()),
            content: owned.map(|o| content_hash(o, expires)),
        }
    }
}

/// What the writer knows before it starts.
#[derive(Clone, Debug)]
pub(crate) enum Known {
    /// Nothing: read the Secret first.
    Unknown,
    /// It does not exist.
    Absent,
    Seen(Seen),
}

/// regcred's parts of a Secret, ready to write.
#[derive(Debug)]
pub(crate) struct Owned {
    /// Serialises as base64, as Secret data must.
    doc: ByteString,
    expires_at: Option<String>,
    content: u64,
}

impl Owned {
    pub(crate) fn new(doc: &AuthsDocument, expires_at: Option<SystemTime>) -> Self {
        let expires_at = expires_at.map(expiry_annotation);
        Owned {
            content: content_hash(doc.expose_bytes(), expires_at.as_deref()),
            doc: ByteString(doc.expose_bytes().to_vec()),
            expires_at,
        }
    }

    /// Whether a Secret seen as `seen` already holds these parts.
    pub(crate) fn is_held_by(&self, seen: &Seen) -> bool {
        seen.managed && seen.content == Some(self.content)
    }
}

fn content_hash(owned: &[u8], expires_at: Option<&str>) -> u64 {
    let mut h = DefaultHasher::new();
    owned.hash(&mut h);
    expires_at.hash(&mut h);
    h.finish()
}

/// One Secret regcred keeps.
pub(crate) struct Target<'a> {
    pub api: &'a Api<Secret>,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The data key regcred owns; it decides the Secret's type.
    pub key: &'a SecretKey,
    /// The sink's name in messages ("secret ci/gcr-pull").
    pub sink: &'a str,
}

/// What a write did, and what the Secret looks like after it (`None` when
/// nothing was read or written that the caller does not know).
pub(crate) struct Written {
    pub outcome: WriteOutcome,
    pub seen: Option<Seen>,
}

/// Makes the Secret hold `owned`, starting from what the caller `known`.
/// Requests pass `throttle` when one is given.
pub(crate) async fn ensure(
    target: &Target<'_>,
    owned: &Owned,
    mut known: Known,
    throttle: Option<&Throttle>,
) -> Result<Written, SinkError> {
    let mut read = None;
    for _ in 0..MAX_CONFLICTS {
        match known {
            Known::Unknown => {
                let current = send(target, throttle, "get", target.api.get_opt(target.name)).await?;
                read = current.as_ref().map(|s| Seen::of(s, target.key));
                known = read.clone().map_or(Known::Absent, Known::Seen);
            }
            Known::Absent => {
                let secret =
                    new_managed(target.namespace, target.name, target.key, &owned.doc.0, owned.expires_at.as_deref());
                match send(target, throttle, "create", target.api.create(&cluster::post_params(), &secret)).await {
                    Ok(created) => {
                        return Ok(Written {
                            outcome: WriteOutcome::Created,
                            seen: Some(Seen::of(&created, target.key)),
                        })
                    }
                    // Someone created it between our read and our write: read again.
                    Err(SinkError::Api { code: 409, .. }) => known = Known::Unknown,
                    Err(e) => return Err(e),
                }
            }
            Known::Seen(ref seen) if seen.opted_out => {
                return Err(SinkError::OptedOut { sink: target.sink.to_string() });
            }
            Known::Seen(ref seen) if seen.type_ != target.key.secret_type() => {
                return Err(SinkError::TypeMismatch {
                    sink: target.sink.to_string(),
                    found: seen.type_.clone(),
                    wanted: target.key.secret_type(),
                    key: target.key.to_string(),
                });
            }
            Known::Seen(ref seen) if owned.is_held_by(seen) => {
                return Ok(Written { outcome: WriteOutcome::Unchanged, seen: read });
            }
            Known::Seen(ref seen) => {
                let patch = json!({
                    "metadata": {
                        "resourceVersion": seen.resource_version,
                        "labels": { MANAGED_LABEL: MANAGED_VALUE },
                        "annotations": { EXPIRES_AT_ANNOTATION: owned.expires_at },
                    },
                    "data": { target.key.as_str(): &owned.doc },
                });
                let params = cluster::patch_params();
                match send(target, throttle, "patch", target.api.patch(target.name, &params, &Patch::Merge(&patch)))
                    .await
                {
                    Ok(updated) => {
                        return Ok(Written {
                            outcome: WriteOutcome::Updated,
                            seen: Some(Seen::of(&updated, target.key)),
                        })
                    }
                    Err(SinkError::Api { code: 409, .. }) => known = Known::Unknown,
                    // Deleted between our read and our write: create it.
                    Err(SinkError::Api { code: 404, .. }) => known = Known::Absent,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(SinkError::ConflictStorm { sink: target.sink.to_string(), attempts: MAX_CONFLICTS })
}

/// Sends one request of a write, through `throttle` when one is given. Only
/// requests pass the throttle: deciding that nothing needs writing is free.
async fn send<T>(
    target: &Target<'_>,
    throttle: Option<&Throttle>,
    verb: &'static str,
    request: impl std::future::Future<Output = kube::Result<T>>,
) -> Result<T, SinkError> {
    let _permit = match throttle {
        Some(t) => Some(t.enter().await),
        None => None,
    };
    request
        .await
        .map_err(|e| SinkError::from_kube(target.sink, verb, &format!("secrets/{}", target.name), target.namespace, e))
}

/// A bound on requests in flight and a rate limit (fan-out's
/// `--max-concurrent-writes` and `--max-requests-per-second`).
pub(crate) struct Throttle {
    permits: Semaphore,
    limiter: RateLimiter,
}

impl Throttle {
    pub(crate) fn new(max_in_flight: usize, per_second: u32) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Throttle {
            permits: Semaphore::new(max_in_flight),
            limiter: RateLimiter::new(per_second, u32::try_from(max_in_flight).unwrap_or(u32::MAX)),
        }
    }

    /// Waits until one more request may go; it is in flight while the
    /// permit lives.
    pub(crate) async fn enter(&self) -> SemaphorePermit<'_> {
        let permit = self.permits.acquire().await.expect("semaphore never closed");
        self.limiter.acquire().await;
        permit
    }
}

/// Spaces requests at most `per_second` apart on average, allowing a burst.
struct RateLimiter {
    interval: Duration,
    burst: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl RateLimiter {
    fn new(per_second: u32, burst: u32) -> Self {
        let interval = if per_second == 0 { Duration::ZERO } else { Duration::from_secs(1) / per_second };
        RateLimiter { interval, burst: interval.saturating_mul(burst), next: Mutex::new(tokio::time::Instant::now()) }
    }

    async fn acquire(&self) {
        if self.interval.is_zero() {
            return;
        }
        let at = {
            let mut next = self.next.lock().expect("lock");
            let now = tokio::time::Instant::now();
            let earliest = now.checked_sub(self.burst).unwrap_or(now);
            let at = (*next).max(earliest);
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_spaces_requests_after_a_burst() {
        let limiter = RateLimiter::new(10, 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        let start = tokio::time::Instant::now();
        for _ in 0..7 {
            limiter.acquire().await;
        }
        // Two come from the burst allowance; the other five are 100 ms apart.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(400) && took <= Duration::from_millis(500), "{took:?}");
    }

    #[test]
    fn content_hash_covers_the_document_and_the_expiry() {
        assert_eq!(content_hash(b"a", Some("t")), content_hash(b"a", Some("t")));
        assert_ne!(content_hash(b"a", Some("t")), content_hash(b"b", Some("t")));
        assert_ne!(content_hash(b"a", Some("t")), content_hash(b"a", Some("u")));
        assert_ne!(content_hash(b"a", Some("t")), content_hash(b"a", None));
    }

    #[test]
    fn a_secret_holds_regcreds_parts_only_when_marked_and_equal() {
        let credential = crate::credential::Credential {
            username: "u".into(),
            password: crate::secret::Secret::new("p".into()),
            expires_at: None,
        };
        let doc = crate::render::render(&credential, &crate::registry::RegistryHost::defaults()).unwrap();
        let owned = Owned::new(&doc, None);
        let key: SecretKey = ".dockerconfigjson".parse().unwrap();
        let mut secret = Secret {
            data: Some([(".dockerconfigjson".to_string(), ByteString(doc.expose_bytes().to_vec()))].into()),
            ..Default::default()
        };
        assert!(!owned.is_held_by(&Seen::of(&secret, &key)), "not marked as regcred's");
        secret.metadata.labels = Some([(MANAGED_LABEL.to_string(), MANAGED_VALUE.to_string())].into());
        assert!(owned.is_held_by(&Seen::of(&secret, &key)));
        secret.metadata.annotations = Some([(EXPIRES_AT_ANNOTATION.to_string(), "2030-01-01T00:00:00Z".into())].into());
        assert!(!owned.is_held_by(&Seen::of(&secret, &key)), "a stale expiry is rewritten");
    }
}
