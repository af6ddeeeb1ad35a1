//! A Kubernetes Secret sink.
//!
//! regcred owns one data key, its label and the expiry annotation;
//! everything else on the Secret belongs to someone else and is kept. Each
//! write reads the Secret and writes it with [`super::managed::ensure`]:
//! a merge patch conditional on the `resourceVersion` that was read, where a
//! 409 means "read again and retry", never "overwrite".

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;
use kube::Api;

use super::managed::{self, Known, Owned, Target};
use super::{SecretKey, Sink, SinkError, WriteOutcome};
use crate::registry::{is_dns_label, is_dns_subdomain};
use crate::render::AuthsDocument;

/// A Secret to keep fresh: `[NAMESPACE/]NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretTarget {
    /// `None`: the default namespace, resolved once the Kubernetes client exists.
    pub namespace: Option<String>,
    pub name: String,
}

impl std::str::FromStr for SecretTarget {
    type Err = String;

    /// A DNS-1123 label and a DNS-1123 subdomain.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (namespace, name) = match s.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, s),
        };
        if namespace.is_some_and(|ns| !is_dns_label(ns)) || !is_dns_subdomain(name) {
            return Err("expected [NAMESPACE/]NAME with lower-case DNS names (for example ci/gcr-pull)".into());
        }
        Ok(SecretTarget { namespace: namespace.map(str::to_string), name: name.to_string() })
    }
}

/// Keeps one data key of one Secret up to date.
pub(crate) struct SecretSink {
    api: Api<Secret>,
    namespace: String,
    secret_name: String,
    key: SecretKey,
    name: String,
}

impl SecretSink {
    pub(crate) fn new(client: kube::Client, namespace: &str, name: &str, key: &SecretKey) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            secret_name: name.to_string(),
            key: key.clone(),
            name: format!("secret {namespace}/{name}"),
        }
    }
}

/// The label that says regcred keeps a key of this Secret. Its own, so that
/// regcred never contends with whoever set `app.kubernetes.io/managed-by`
/// (Helm, for the placeholders the chart creates).
pub(super) const MANAGED_LABEL: &str = "regcred.dev/managed";
/// Its value.
pub(super) const MANAGED_VALUE: &str = "true";
/// The standard manager label: set only on Secrets regcred creates, and
/// read as the ownership marker of Secrets written by regcred 0.1.0.
pub(super) const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// regcred's value of [`MANAGED_BY_LABEL`].
pub(super) const MANAGED_BY_VALUE: &str = "regcred";
/// When the credential in the Secret stops working (RFC 3339, UTC).
pub(super) const EXPIRES_AT_ANNOTATION: &str = "regcred.dev/expires-at";

/// The value of [`EXPIRES_AT_ANNOTATION`] for a credential expiring at `t`.
pub(super) fn expiry_annotation(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Whether regcred manages a Secret with these labels: its own marker, or
/// the manager label regcred 0.1.0 set (unless someone opted it out).
pub(super) fn is_managed(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels.is_some_and(|l| {
        l.get(MANAGED_LABEL).is_some_and(|v| v == MANAGED_VALUE)
            || (l.get(MANAGED_BY_LABEL).is_some_and(|v| v == MANAGED_BY_VALUE) && !l.contains_key(MANAGED_LABEL))
    })
}

/// The value of [`MANAGED_LABEL`] that tells regcred to leave a Secret
/// alone: never written, never pruned (someone else has taken it over).
pub(super) const OPTED_OUT_VALUE: &str = "false";

/// Whether someone told regcred to leave a Secret with these labels alone.
pub(super) fn is_opted_out(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels.and_then(|l| l.get(MANAGED_LABEL)).is_some_and(|v| v == OPTED_OUT_VALUE)
}

/// A new Secret holding only regcred's parts; regcred created it, so it is
/// also its `app.kubernetes.io/managed-by`.
pub(super) fn new_managed(
    namespace: &str,
    name: &str,
    key: &SecretKey,
    doc: &[u8],
    expires_at: Option<&str>,
) -> Secret {
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

#[async_trait::async_trait]
impl Sink for SecretSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn object_ref(&self) -> Option<ObjectReference> {
        Some(secret_ref(&self.namespace, &self.secret_name))
    }

    async fn write(&self, doc: &AuthsDocument, expires_at: Option<SystemTime>) -> Result<WriteOutcome, SinkError> {
        let target = Target {
            api: &self.api,
            namespace: &self.namespace,
            name: &self.secret_name,
            key: &self.key,
            sink: &self.name,
        };
        // Read first at every write: a Secret someone deleted or edited since
        // the last write is noticed here, at each resync.
        Ok(managed::ensure(&target, &Owned::new(doc, expires_at), Known::Unknown, None).await?.outcome)
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
