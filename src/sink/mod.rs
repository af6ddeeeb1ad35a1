//! Sinks: where the rendered auths document is written.
//!
//! Every destination implements [`Sink`]; the refresh loop writes the same
//! document to each and treats their failures independently.

mod args;
mod file;
mod key;
pub(crate) mod managed;
mod secret;

use std::time::SystemTime;

// What a write did is the same for a Secret as for a file.
pub(crate) use crate::atomic_write::WriteOutcome;
pub(crate) use args::Args;
pub(crate) use file::FileSettings;
pub(crate) use file::FileSink;
pub(crate) use key::SecretKey;
pub(crate) use key::DOCKERCONFIGJSON_KEY;
pub(crate) use secret::{SecretSink, SecretTarget};

use k8s_openapi::api::core::v1::ObjectReference;

use crate::cluster::Throttle;
use crate::render::AuthsDocument;

/// A destination for the auths document.
#[async_trait::async_trait]
pub(crate) trait Sink: Send + Sync {
    /// Names the destination in logs and metrics ("secret ci/gcr-pull").
    fn name(&self) -> &str;

    /// Writes the document. Implementations must leave the previous content
    /// intact when they fail.
    async fn write(&self, doc: &AuthsDocument, expires_at: Option<SystemTime>) -> Result<WriteOutcome, SinkError>;

    /// The Kubernetes object that Events about this sink are attached to.
    fn object_ref(&self) -> Option<ObjectReference> {
        None
    }

    /// Stops whatever the sink writes in the background (fan-out keeps new
    /// namespaces supplied), until the next [`Sink::write`]: this replica
    /// no longer leads. Sinks that write only when asked need not act.
    fn stand_down(&self) {}
}

/// Sends one request of a write to the API server: through `throttle` when
/// one is given (only requests pass it: deciding that nothing needs writing
/// is free), and on failure an error of `sink` that names the object the
/// request was about, `resource` (`secrets/gcr-pull`,
/// `serviceaccounts/default`) in `namespace`. Every request regcred makes to
/// keep a Secret or a ServiceAccount goes this way.
pub(crate) async fn send<T>(
    throttle: Option<&Throttle>,
    sink: &str,
    verb: &'static str,
    resource: &str,
    namespace: &str,
    request: impl std::future::Future<Output = kube::Result<T>>,
) -> Result<T, SinkError> {
    let _permit = match throttle {
        Some(t) => Some(t.enter().await),
        None => None,
    };
    request.await.map_err(|e| SinkError::from_kube(sink, verb, resource, namespace, e))
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{sink}: forbidden: regcred's service account cannot `{verb}` {resource} in namespace {namespace}; grant it with a Role")]
    Forbidden { sink: String, verb: &'static str, resource: String, namespace: String },
    #[error("{sink}: namespace {namespace} does not exist")]
    NamespaceNotFound { sink: String, namespace: String },
    #[error("{sink}: the existing Secret has type {found}, but --secret-key {key} needs type {wanted}; a Secret's type cannot be changed: delete the Secret (regcred recreates it) or choose another --secret-key")]
    TypeMismatch { sink: String, found: String, wanted: &'static str, key: String },
    #[error("{sink}: the API server rejected the Secret ({code} {reason}): {message}")]
    Rejected { sink: String, code: u16, reason: String, message: String },
    #[error("{sink}: the API server answered {code} {reason}: {message}")]
    Api { sink: String, code: u16, reason: String, message: String, retry_after: Option<std::time::Duration> },
    #[error("{sink}: the Secret is labelled regcred.dev/managed=false, so regcred leaves it alone; remove the label (or delete the Secret) to let regcred keep it")]
    OptedOut { sink: String },
    #[error("{sink}: {attempts} conflicting updates in a row; another writer keeps changing the Secret")]
    ConflictStorm { sink: String, attempts: u32 },
    #[error("{sink}: cannot reach the API server: {message}")]
    Transport { sink: String, message: String },
    #[error("{sink}: request timed out after {timeout:?}")]
    Timeout { sink: String, timeout: std::time::Duration },
    #[error("{sink}: {message}")]
    Io { sink: String, message: String },
    #[error("{sink}: {failed} of {total} namespaces failed, for example {first}")]
    Partial { sink: String, failed: usize, total: usize, first: String, retryable: bool },
}

impl SinkError {
    /// Turns a Kubernetes client error about `verb` on `resource` (for
    /// example `secrets/gcr-pull`) into one that says what to do about it.
    pub fn from_kube(sink: &str, verb: &'static str, resource: &str, namespace: &str, err: kube::Error) -> SinkError {
        let sink = sink.to_string();
        if let Some(timeout) = crate::cluster::missed_deadline(&err) {
            return SinkError::Timeout { sink, timeout };
        }
        let kube::Error::Api(status) = err else {
            return SinkError::Transport { sink, message: err.to_string() };
        };
        let (code, reason, message) = (status.code, status.reason.clone(), status.message.clone());
        // The API server says how long to wait in the Status as well as in
        // the Retry-After header (which the client's request policy obeys).
        let retry_after = status
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0)
            .map(|s| std::time::Duration::from_secs(s.into()).min(crate::cluster::MAX_RETRY_AFTER));
        match (code, verb) {
            (403, _) => {
                SinkError::Forbidden { sink, verb, resource: resource.to_string(), namespace: namespace.to_string() }
            }
            (404, "create") => SinkError::NamespaceNotFound { sink, namespace: namespace.to_string() },
            (422, _) | (400, _) => SinkError::Rejected { sink, code, reason, message },
            _ => SinkError::Api { sink, code, reason, message, retry_after },
        }
    }

    /// Whether a later attempt can succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Forbidden { .. }
            | SinkError::NamespaceNotFound { .. }
            | SinkError::TypeMismatch { .. }
            | SinkError::OptedOut { .. }
            | SinkError::Rejected { .. } => false,
            // 401 too: a rotated service account token is read again.
            SinkError::Api { code, .. } => crate::http::is_retryable_status(*code) || *code == 401,
            SinkError::ConflictStorm { .. }
            | SinkError::Transport { .. }
            | SinkError::Timeout { .. }
            | SinkError::Io { .. } => true,
            SinkError::Partial { retryable, .. } => *retryable,
        }
    }

    /// Whether the sink retries the failed parts by itself (fan-out retries
    /// each failing namespace on its own backoff), so the refresh loop need
    /// not offer it the same document again before the next resync.
    pub fn retried_by_sink(&self) -> bool {
        matches!(self, SinkError::Partial { .. })
    }

    /// The delay the API server asked for, if any.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            SinkError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A fixed label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SinkError::Forbidden { .. } => "forbidden",
            SinkError::NamespaceNotFound { .. } => "namespace_not_found",
            SinkError::TypeMismatch { .. } => "type_mismatch",
            SinkError::OptedOut { .. } => "opted_out",
            SinkError::Rejected { .. } => "rejected",
            SinkError::Api { code, .. } if *code >= 500 => "api_5xx",
            SinkError::Api { .. } => "api_4xx",
            SinkError::ConflictStorm { .. } => "conflict",
            SinkError::Transport { .. } => "transport",
            SinkError::Timeout { .. } => "timeout",
            SinkError::Io { .. } => "io",
            SinkError::Partial { .. } => "partial",
        }
    }
}
