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
//!
//! The names of those parts, and how regcred tells a Secret it keeps from
//! one it was told to leave alone, are defined here too: the ownership
//! vocabulary that the Secret sink and fan-out share.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, Patch};
use kube::Api;
use serde_json::json;

use super::{SecretKey, SinkError, WriteOutcome};
use crate::cluster::{self, Throttle};
use crate::render::AuthsDocument;

/// The label that says regcred keeps a key of this Secret. Its own, so that
/// regcred never contends with whoever set `app.kubernetes.io/managed-by`
/// (Helm, for the placeholders the chart creates).
const MANAGED_LABEL: &str = "regcred.dev/managed";
/// Its value.
const MANAGED_VALUE: &str = "true";
/// The standard manager label: set only on Secrets regcred creates, and
/// read as the ownership marker of Secrets written by regcred 0.1.0.
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// regcred's value of [`MANAGED_BY_LABEL`].
const MANAGED_BY_VALUE: &str = "regcred";
/// When the credential in the Secret stops working (RFC 3339, UTC).
const EXPIRES_AT_ANNOTATION: &str = "regcred.dev/expires-at";

/// The value of [`EXPIRES_AT_ANNOTATION`] for a credential expiring at `t`.
fn expiry_annotation(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Whether regcred manages a Secret with these labels: its own marker, or
/// the manager label regcred 0.1.0 set (unless someone opted it out).
fn is_managed(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels.is_some_and(|l| {
        l.get(MANAGED_LABEL).is_some_and(|v| v == MANAGED_VALUE)
            || (l.get(MANAGED_BY_LABEL).is_some_and(|v| v == MANAGED_BY_VALUE) && !l.contains_key(MANAGED_LABEL))
    })
}

/// The value of [`MANAGED_LABEL`] that tells regcred to leave a Secret
/// alone: never written, never pruned (someone else has taken it over).
const OPTED_OUT_VALUE: &str = "false";

/// Whether someone told regcred to leave a Secret with these labels alone.
fn is_opted_out(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels.and_then(|l| l.get(MANAGED_LABEL)).is_some_and(|v| v == OPTED_OUT_VALUE)
}

/// A new Secret holding only regcred's parts; regcred created it, so it is
/// also its `app.kubernetes.io/managed-by`.
fn new_managed(namespace: &str, name: &str, key: &SecretKey, doc: &[u8], expires_at: Option<&str>) -> Secret {
    let labels = [(MANAGED_BY_LABEL, MANAGED_BY_VALUE), (MANAGED_LABEL, MANAGED_VALUE)];
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            annotations: expires_at.map(|t| BTreeMap::from([(EXPIRES_AT_ANNOTATION.to_string(), t.to_string())])),
            ..Default::default()
        },
        type_: Some(key.secret_type().into()),
        data: Some(BTreeMap::from([(key.to_string(), ByteString(doc.to_vec()))])),
        ..Default::default()
    }
}

/// The object Events about the Secret `namespace/name` are attached to.
pub(crate) fn secret_ref(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

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
    /// Hash of the owned key's bytes.
    pub doc: Option<u64>,
    /// The expiry annotation, as written.
    pub expires_at: Option<String>,
}

impl Seen {
    /// What matters of `secret` when regcred owns its data key `key`.
    pub(crate) fn of(secret: &Secret, key: &SecretKey) -> Seen {
        let owned = secret.data.as_ref().and_then(|d| d.get(key.as_str())).map(|b| b.0.as_slice());
        let expires_at = secret.metadata.annotations.as_ref().and_then(|a| a.get(EXPIRES_AT_ANNOTATION)).cloned();
        Seen {
            resource_version: secret.metadata.resource_version.clone().unwrap_or_default(),
            type_: secret.type_.clone().unwrap_or_else(|| "Opaque".into()),
            managed: is_managed(secret.metadata.labels.as_ref()),
            opted_out: is_opted_out(secret.metadata.labels.as_ref()),
            doc: owned.map(doc_hash),
            expires_at,
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
    doc_hash: u64,
}

/// How far apart two annotations of the same document may be and still
/// name one expiry. An expiry is an estimate, the time the answer arrived
/// plus the whole seconds of its `expires_in`; two replicas that get the
/// same cached token from the metadata server (one after a failover)
/// estimate its expiry a second or so apart, and rewriting every Secret
/// for that second would cost a write per namespace and say nothing new.
/// A new token changes the document, so this never hides a rotation.
const SAME_EXPIRY: Duration = Duration::from_secs(5);

impl Owned {
    pub(crate) fn new(doc: &AuthsDocument, expires_at: Option<SystemTime>) -> Self {
        Owned {
            doc_hash: doc_hash(doc.expose_bytes()),
            doc: ByteString(doc.expose_bytes().to_vec()),
            expires_at: expires_at.map(expiry_annotation),
        }
    }

    /// Whether a Secret seen as `seen` already holds these parts: the same
    /// document, and an expiry annotation that names the same expiry.
    pub(crate) fn is_held_by(&self, seen: &Seen) -> bool {
        seen.managed
            && seen.doc == Some(self.doc_hash)
            && same_expiry(seen.expires_at.as_deref(), self.expires_at.as_deref())
    }
}

/// Whether two expiry annotations name the same expiry, within [`SAME_EXPIRY`].
fn same_expiry(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) if a == b => true,
        (Some(a), Some(b)) => match (humantime::parse_rfc3339(a), humantime::parse_rfc3339(b)) {
            (Ok(a), Ok(b)) => a.duration_since(b).or_else(|_| b.duration_since(a)).is_ok_and(|d| d <= SAME_EXPIRY),
            _ => false,
        },
        _ => false,
    }
}

fn doc_hash(owned: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    owned.hash(&mut h);
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
                let current = target.send(throttle, "get", target.api.get_opt(target.name)).await?;
                read = current.as_ref().map(|s| Seen::of(s, target.key));
                known = read.clone().map_or(Known::Absent, Known::Seen);
            }
            Known::Absent => {
                let secret =
                    new_managed(target.namespace, target.name, target.key, &owned.doc.0, owned.expires_at.as_deref());
                match target.send(throttle, "create", target.api.create(&cluster::post_params(), &secret)).await {
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
                match target
                    .send(throttle, "patch", target.api.patch(target.name, &params, &Patch::Merge(&patch)))
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

impl Target<'_> {
    /// Sends one request about this Secret ([`super::send`]).
    async fn send<T>(
        &self,
        throttle: Option<&Throttle>,
        verb: &'static str,
        request: impl std::future::Future<Output = kube::Result<T>>,
    ) -> Result<T, SinkError> {
        super::send(throttle, self.sink, verb, &format!("secrets/{}", self.name), self.namespace, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_a_few_seconds_apart_are_the_same_expiry() {
        let t = "2030-01-01T00:00:00Z";
        assert!(same_expiry(Some(t), Some(t)) && same_expiry(None, None));
        assert!(same_expiry(Some(t), Some("2030-01-01T00:00:01Z")), "one second later");
        assert!(same_expiry(Some("2030-01-01T00:00:05Z"), Some(t)), "five seconds earlier");
        assert!(!same_expiry(Some(t), Some("2030-01-01T00:00:06Z")));
        assert!(!same_expiry(Some(t), None) && !same_expiry(None, Some(t)));
        assert!(!same_expiry(Some("tomorrow"), Some(t)), "an annotation that is not a time is rewritten");
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
        let expiring = |t: &str| {
            let at = humantime::parse_rfc3339(t).unwrap();
            Owned::new(&doc, Some(at))
        };
        assert!(
            expiring("2030-01-01T00:00:01Z").is_held_by(&Seen::of(&secret, &key)),
            "the same expiry, estimated later"
        );
        assert!(!expiring("2030-01-01T01:00:00Z").is_held_by(&Seen::of(&secret, &key)), "a later expiry is written");
        secret.data.as_mut().unwrap().insert(".dockerconfigjson".into(), ByteString(b"{}".to_vec()));
        assert!(!expiring("2030-01-01T00:00:00Z").is_held_by(&Seen::of(&secret, &key)), "another document is written");
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn ownership_is_regcreds_own_label_or_the_0_1_0_manager_label() {
        assert!(is_managed(Some(&labels(&[(MANAGED_LABEL, "true")]))));
        assert!(is_managed(Some(&labels(&[(MANAGED_BY_LABEL, "regcred")]))), "written by 0.1.0");
        assert!(is_managed(Some(&labels(&[(MANAGED_BY_LABEL, "Helm"), (MANAGED_LABEL, "true")]))));
        assert!(!is_managed(Some(&labels(&[(MANAGED_BY_LABEL, "Helm")]))));
        assert!(!is_managed(Some(&labels(&[(MANAGED_LABEL, "false")]))));
        assert!(!is_managed(Some(&labels(&[(MANAGED_BY_LABEL, "regcred"), (MANAGED_LABEL, "false")]))), "opted out");
        assert!(is_opted_out(Some(&labels(&[(MANAGED_LABEL, "false")]))));
        assert!(!is_opted_out(Some(&labels(&[(MANAGED_LABEL, "true")]))) && !is_opted_out(None));
        assert!(!is_managed(None));
    }

    #[test]
    fn a_secret_regcred_creates_carries_both_marks_and_only_its_parts() {
        let key = |k: &str| k.parse::<SecretKey>().unwrap();
        let created = new_managed("ns", "n", &key("k"), b"{}", None);
        let l = created.metadata.labels.unwrap();
        assert_eq!(l[MANAGED_BY_LABEL], "regcred", "regcred created it");
        assert_eq!(l[MANAGED_LABEL], "true");
        assert_eq!(created.metadata.annotations, None, "no expiry for a key that never expires");
        assert_eq!(created.data.unwrap().keys().collect::<Vec<_>>(), ["k"]);
        assert_eq!(created.type_.as_deref(), Some("Opaque"));
        let pull = new_managed("ns", "n", &key(super::super::DOCKERCONFIGJSON_KEY), b"{}", None);
        assert_eq!(pull.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"), "what the kubelet reads");
    }
}
