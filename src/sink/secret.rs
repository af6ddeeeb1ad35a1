//! A Kubernetes Secret sink.
//!
//! regcred owns one data key, its label and the expiry annotation;
//! everything else on the Secret belongs to someone else and is kept. Each
//! write reads the Secret and writes it with [`super::managed::ensure`]:
//! a merge patch conditional on the `resourceVersion` that was read, where a
//! 409 means "read again and retry", never "overwrite".

use std::time::SystemTime;

use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::Api;

use super::managed::{self, secret_ref, Known, Owned, Target};
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
