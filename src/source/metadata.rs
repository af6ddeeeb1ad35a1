//! OAuth tokens from the GCE/GKE metadata server (GKE Workload Identity).
//!
//! gcp_auth hard-codes the metadata host; Google's own libraries honour
//! `GCE_METADATA_HOST` (host:port), and so does regcred. Without it regcred
//! uses the link-local address rather than `metadata.google.internal`, as
//! Google's Go library does, so that no DNS lookup stands in the way.

use super::{oauth_token_from, Credential, CredentialSource, SourceError, CLOUD_PLATFORM_SCOPE};
use crate::http::HttpClient;

const DEFAULT_HOST: &str = "169.254.169.254";
const STEP: &str = "getting a token from the metadata server";
/// Off GCE/GKE the metadata server is what regcred tried last; say so, so
/// that a developer's first run explains itself.
const FALLBACK_STEP: &str = "no --key-file, GOOGLE_APPLICATION_CREDENTIALS or gcloud application-default credentials found, so regcred asked the GKE/GCE metadata server";

/// The metadata server's default service-account token endpoint.
pub(crate) struct MetadataServer {
    host: String,
    http: HttpClient,
    step: &'static str,
}

impl MetadataServer {
    /// Uses `GCE_METADATA_HOST` when set.
    pub(crate) fn from_env(http: HttpClient) -> Self {
        let host = std::env::var("GCE_METADATA_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        Self { host: host.trim().to_string(), http, step: STEP }
    }

    /// Marks this source as the last resort of discovery, for clearer errors
    /// (wherever `GCE_METADATA_HOST` points: the other sources were looked
    /// for all the same).
    pub(crate) fn into_fallback(mut self) -> Self {
        self.step = FALLBACK_STEP;
        self
    }

    fn token_url(&self) -> String {
        format!(
            "http://{}/computeMetadata/v1/instance/service-accounts/default/token?scopes={}",
            self.host, CLOUD_PLATFORM_SCOPE
        )
    }
}

#[async_trait::async_trait]
impl CredentialSource for MetadataServer {
    fn describe(&self) -> String {
        format!("metadata server at {} (Workload Identity)", self.host)
    }

    async fn credential(&self) -> Result<Credential, SourceError> {
        let url = self.token_url();
        let resp = self
            .http
            .get(&url, &[("Metadata-Flavor", "Google")])
            .await
            .map_err(|source| SourceError::Http { step: self.step, source })?;
        // The metadata server caches tokens and hands out the same one until
        // about five minutes before expiry; the schedule copes with that
        // because it keys on the returned expiry, not on a fixed period.
        oauth_token_from(self.step, &url, resp)
    }
}
