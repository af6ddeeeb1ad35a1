//! A Kubernetes Secret sink.
//!
//! regcred owns one data key, the managed-by label and the expiry annotation;
//! everything else on the Secret belongs to someone else and is kept. Updates
//! use optimistic concurrency: a replace carries the `resourceVersion` that
//! was read, and a 409 means "read again and retry", never "overwrite".

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;

use super::{Sink, SinkError, WriteOutcome};
use crate::render::AuthsDocument;

/// The label that says regcred keeps a key of this Secret. Its own, so that
/// regcred never contends with whoever set `app.kubernetes.io/managed-by`
/// (Helm, for the placeholders the chart creates).
pub const MANAGED_LABEL: &str = "regcred.dev/managed";
/// Its value.
pub const MANAGED_VALUE: &str = "true";
/// The standard manager label: set only on Secrets regcred creates, and
/// read as the ownership marker of Secrets written by regcred 0.1.0.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// regcred's value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "regcred";
/// When the credential in the Secret stops working (RFC 3339, UTC).
pub const EXPIRES_AT_ANNOTATION: &str = "regcred.dev/expires-at";

/// Conflicts tolerated within one write before it counts as failed; the
/// refresh loop then retries with backoff.
const MAX_CONFLICTS: u32 = 5;

/// Keeps one data key of one Secret up to date.
pub struct SecretSink {
    api: Api<Secret>,
    namespace: String,
    secret_name: String,
    key: String,
    secret_type: &'static str,
    name: String,
}

impl SecretSink {
    pub fn new(client: kube::Client, namespace: &str, name: &str, key: &str, secret_type: &'static str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            secret_name: name.to_string(),
            key: key.to_string(),
            secret_type,
            name: format!("secret {namespace}/{name}"),
        }
    }

    /// Runs one API call (the client puts the deadline on it).
    async fn call<T>(
        &self,
        verb: &'static str,
        fut: impl std::future::Future<Output = kube::Result<T>>,
    ) -> Result<T, SinkError> {
        fut.await.map_err(|e| {
            SinkError::from_kube(&self.name, verb, &format!("secrets/{}", self.secret_name), &self.namespace, e)
        })
    }

    /// The Secret as it should be: `current` with regcred's parts replaced.
    fn desired(&self, current: Option<&Secret>, doc: &AuthsDocument, expires_at: Option<SystemTime>) -> Secret {
        let expires_at = expires_at.map(expiry_annotation);
        match current {
            Some(current) => {
                let mut secret = current.clone();
                set_owned(&mut secret, &self.key, doc.expose_bytes(), expires_at.as_deref());
                secret
            }
            None => new_managed(
                &self.namespace,
                &self.secret_name,
                self.secret_type,
                &self.key,
                doc.expose_bytes(),
                expires_at.as_deref(),
            ),
        }
    }
}

/// The value of [`EXPIRES_AT_ANNOTATION`] for a credential expiring at `t`.
pub fn expiry_annotation(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Whether regcred manages a Secret with these labels: its own marker, or
/// the manager label regcred 0.1.0 set.
pub fn is_managed(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels.is_some_and(|l| {
        l.get(MANAGED_LABEL).is_some_and(|v| v == MANAGED_VALUE)
            || l.get(MANAGED_BY_LABEL).is_some_and(|v| v == MANAGED_BY_VALUE)
    })
}

/// Puts regcred's parts into `secret` (the owned data key, regcred's
/// label, the expiry annotation, removed for keys that never expire) and
/// leaves everything else as it is.
pub fn set_owned(secret: &mut Secret, key: &str, doc: &[u8], expires_at: Option<&str>) {
    secret.data.get_or_insert_with(BTreeMap::new).insert(key.to_string(), ByteString(doc.to_vec()));
    secret.metadata.labels.get_or_insert_with(BTreeMap::new).insert(MANAGED_LABEL.into(), MANAGED_VALUE.into());
    let annotations = &mut secret.metadata.annotations;
    match (expires_at, annotations) {
        (Some(t), annotations) => {
            annotations.get_or_insert_with(BTreeMap::new).insert(EXPIRES_AT_ANNOTATION.into(), t.to_string());
        }
        // No empty map is added: the API server drops it, and the Secret
        // would then never compare equal and be rewritten at every resync.
        (None, Some(annotations)) => {
            annotations.remove(EXPIRES_AT_ANNOTATION);
        }
        (None, None) => {}
    }
}

/// A new Secret holding only regcred's parts; regcred created it, so it is
/// also its `app.kubernetes.io/managed-by`.
pub fn new_managed(
    namespace: &str,
    name: &str,
    secret_type: &str,
    key: &str,
    doc: &[u8],
    expires_at: Option<&str>,
) -> Secret {
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into())])),
            ..Default::default()
        },
        type_: Some(secret_type.into()),
        ..Default::default()
    };
    set_owned(&mut secret, key, doc, expires_at);
    secret
}

/// The object Events about the Secret `namespace/name` are attached to.
pub fn secret_ref(namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl Sink for SecretSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn object_ref(&self) -> Option<ObjectReference> {
        Some(secret_ref(&self.namespace, &self.secret_name))
    }

    async fn write(&self, doc: &AuthsDocument, expires_at: Option<SystemTime>) -> Result<WriteOutcome, SinkError> {
        for _ in 0..MAX_CONFLICTS {
            let current = self.call("get", self.api.get_opt(&self.secret_name)).await?;
            let Some(current) = current else {
                let new = self.desired(None, doc, expires_at);
                match self.call("create", self.api.create(&PostParams::default(), &new)).await {
                    Ok(_) => return Ok(WriteOutcome::Created),
                    // Someone created it between our read and our write: read again.
                    Err(SinkError::Api { code: 409, .. }) => continue,
                    Err(e) => return Err(e),
                }
            };
            let found = current.type_.as_deref().unwrap_or("Opaque");
            if found != self.secret_type {
                return Err(SinkError::TypeMismatch {
                    sink: self.name.clone(),
                    found: found.to_string(),
                    wanted: self.secret_type,
                    key: self.key.clone(),
                });
            }
            let desired = self.desired(Some(&current), doc, expires_at);
            if desired == current {
                return Ok(WriteOutcome::Unchanged);
            }
            // `desired` carries the resourceVersion we read, so the API server
            // refuses the replace if anyone changed the Secret since.
            match self.call("update", self.api.replace(&self.secret_name, &PostParams::default(), &desired)).await {
                Ok(_) => return Ok(WriteOutcome::Updated),
                Err(SinkError::Api { code: 409, .. }) => continue,
                // Deleted between our read and our write: start over and create it.
                Err(SinkError::Api { code: 404, .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(SinkError::ConflictStorm { sink: self.name.clone(), attempts: MAX_CONFLICTS })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(!is_managed(None));
    }

    #[test]
    fn owned_parts_never_touch_the_manager_label() {
        let mut secret = Secret::default();
        secret.metadata.labels = Some(labels(&[(MANAGED_BY_LABEL, "Helm")]));
        set_owned(&mut secret, ".dockerconfigjson", b"{}", Some("2030-01-01T00:00:00Z"));
        let l = secret.metadata.labels.unwrap();
        assert_eq!(l[MANAGED_BY_LABEL], "Helm");
        assert_eq!(l[MANAGED_LABEL], "true");
        let created = new_managed("ns", "n", "Opaque", "k", b"{}", None);
        assert_eq!(created.metadata.labels.unwrap()[MANAGED_BY_LABEL], "regcred", "regcred created it");
    }
}
