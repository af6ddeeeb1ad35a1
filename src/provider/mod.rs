//! `regcred credential-provider`: a kubelet image credential provider.
//!
//! The kubelet execs the plugin with one `CredentialProviderRequest`
//! (`credentialprovider.kubelet.k8s.io/v1`) on stdin and reads one
//! `CredentialProviderResponse` from stdout; nothing is stored in the API.
//!
//! Two identities, chosen by the kubelet's `CredentialProviderConfig`:
//! - **node**: the request carries no service account token; regcred finds
//!   credentials as everywhere else (key file, application-default
//!   credentials, the metadata server, an external_account file on the node);
//! - **pod** (KEP-4412, `tokenAttributes`): the request carries a token for
//!   the pod's own ServiceAccount, with the pool provider as its audience.
//!   regcred exchanges it at Google's STS and, when the ServiceAccount is
//!   annotated [`GOOGLE_SERVICE_ACCOUNT_ANNOTATION`], impersonates that
//!   Google service account.
//!
//! [`kubelet`] writes the kubelet's config for either; [`install`] puts the
//! binary and that config on a node.

pub(crate) mod install;
pub(crate) mod kubelet;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::http::HttpClient;
use crate::registry::RegistryHost;
use crate::secret::Secret;
use crate::source::{CredentialSource, ExternalAccount, Impersonated, SourceError, DEFAULT_TOKEN_LIFETIME};

/// The API version regcred speaks, and answers in.
pub(crate) const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";

/// The ServiceAccount annotation naming the Google service account a pod
/// pulls as: the same key GKE Workload Identity uses.
pub(crate) const GOOGLE_SERVICE_ACCOUNT_ANNOTATION: &str = "iam.gke.io/gcp-service-account";

/// How much earlier than the token's expiry the kubelet must stop using it.
pub(crate) const CACHE_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How long the kubelet may remember "no credentials" for an image on a host
/// that is not Google's: that answer never changes.
const NOT_GOOGLE_CACHE: Duration = Duration::from_secs(3600);

/// The auth keys used when no `--registry` is given: every Container
/// Registry and Artifact Registry host, as kubelet image patterns.
pub(crate) const DEFAULT_PATTERNS: &[&str] = &["gcr.io", "*.gcr.io", "*-docker.pkg.dev"];

/// The provider's own settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The workload identity pool provider (`//iam.googleapis.com/projects/
    /// N/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`)
    /// that pod tokens are exchanged for; required for pod identity.
    pub pool_provider: Option<String>,
    pub sts_endpoint: String,
    pub impersonation_endpoint: String,
    /// Impersonated tokens' lifetime.
    pub token_lifetime: Option<Duration>,
    /// The auth keys to answer with.
    pub patterns: Vec<String>,
}

/// What the kubelet sends.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Request {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub image: String,
    #[serde(default)]
    pub service_account_token: Option<Secret<String>>,
    #[serde(default)]
    pub service_account_annotations: BTreeMap<String, String>,
}

/// What regcred answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Response {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub cache_key_type: CacheKeyType,
    /// A Go duration (`3300s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_duration: Option<String>,
    /// Written by [`to_json`], the one place passwords are revealed.
    #[serde(skip)]
    pub auth: BTreeMap<String, AuthConfig>,
}

/// The kubelet's `PluginCacheKeyType`, less `Image`: regcred's answers
/// hold for a whole registry or for every image, never for one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum CacheKeyType {
    Registry,
    Global,
}

/// One registry credential in a response.
#[derive(Debug)]
pub(crate) struct AuthConfig {
    pub username: String,
    pub password: Secret<String>,
}

/// Why no credential could be given. The kubelet shows this (stderr) in its
/// logs and the pod's events, so it names the step and never a token.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the kubelet's request is not a CredentialProviderRequest: {0}")]
    BadRequest(String),
    #[error("the request carries the pod's service account token, but no --workload-identity-provider says which pool provider to exchange it at; set it in the plugin's args in the kubelet's CredentialProviderConfig")]
    NoPoolProvider,
    #[error("invalid {GOOGLE_SERVICE_ACCOUNT_ANNOTATION} annotation {0:?} on the pod's ServiceAccount: expected a service account email such as pull@PROJECT.iam.gserviceaccount.com")]
    BadAnnotation(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot write the response to stdout: {0}")]
    Output(std::io::Error),
}

impl ProviderError {
    /// 2 when the request or configuration must change, 1 for a refusal or
    /// an outage at Google.
    pub fn exit_code(&self) -> u8 {
        match self {
            ProviderError::Source(e) if e.is_retryable() => 1,
            ProviderError::Source(SourceError::Endpoint { .. }) => 1,
            ProviderError::Output(_) => 1,
            _ => 2,
        }
    }
}

/// Parses the request from the kubelet.
pub(crate) fn parse_request(input: &[u8]) -> Result<Request, ProviderError> {
    let request: Request = serde_json::from_slice(input).map_err(|e| {
        // serde's message quotes no input beyond a position; the token is safe.
        ProviderError::BadRequest(format!("{e} (expected JSON with apiVersion {API_VERSION} and an `image`)"))
    })?;
    if !request.api_version.is_empty() && request.api_version != API_VERSION {
        return Err(ProviderError::BadRequest(format!(
            "apiVersion {:?} is not supported; configure the provider with apiVersion {API_VERSION}",
            request.api_version
        )));
    }
    if !request.kind.is_empty() && request.kind != "CredentialProviderRequest" {
        return Err(ProviderError::BadRequest(format!("kind {:?} is not CredentialProviderRequest", request.kind)));
    }
    if request.image.trim().is_empty() {
        return Err(ProviderError::BadRequest("`image` is empty".into()));
    }
    Ok(request)
}

/// The registry host of an image reference, as Docker names it.
pub(crate) fn image_host(image: &str) -> &str {
    let first = image.split('/').next().unwrap_or(image);
    let is_host = image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if is_host {
        first.split(':').next().unwrap_or(first)
    } else {
        "docker.io"
    }
}

/// Whether `host` is one of Google's registries.
pub(crate) fn is_google(host: &str) -> bool {
    host.parse::<RegistryHost>().is_ok()
}

/// The credential source for this request: the pod's identity when the
/// kubelet sent its token, the node's otherwise (`node`).
pub(crate) fn source_for(
    request: &Request,
    settings: &Settings,
    node: impl FnOnce() -> Result<Arc<dyn CredentialSource>, SourceError>,
    http: &HttpClient,
) -> Result<Arc<dyn CredentialSource>, ProviderError> {
    let Some(token) = request.service_account_token.clone().filter(|t| !t.expose().is_empty()) else {
        return Ok(node()?);
    };
    let pool_provider = settings.pool_provider.as_deref().ok_or(ProviderError::NoPoolProvider)?;
    let exchange: Arc<dyn CredentialSource> =
        Arc::new(ExternalAccount::with_token(pool_provider, &settings.sts_endpoint, token, http.clone()));
    match request.service_account_annotations.get(GOOGLE_SERVICE_ACCOUNT_ANNOTATION).map(|s| s.trim()) {
        None | Some("") => Ok(exchange),
        Some(email) if is_service_account_email(email) => Ok(Arc::new(Impersonated::new(
            exchange,
            email,
            &[],
            settings.token_lifetime.unwrap_or(DEFAULT_TOKEN_LIFETIME),
            &settings.impersonation_endpoint,
            http.clone(),
        ))),
        Some(other) => Err(ProviderError::BadAnnotation(other.to_string())),
    }
}

fn is_service_account_email(s: &str) -> bool {
    s.split_once('@')
        .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.') && !s.contains(['/', ' ', ':', '?']))
}

/// How long the kubelet may cache a credential that expires at
/// `expires_at`: until [`CACHE_MARGIN`] before expiry, or half the
/// remaining life of a short-lived token; never longer than the token.
pub(crate) fn cache_duration(now: SystemTime, expires_at: Option<SystemTime>) -> Duration {
    let Some(expires_at) = expires_at else {
        // A key that never expires: re-read hourly so a rotated key is seen.
        return Duration::from_secs(3600);
    };
    let remaining = expires_at.duration_since(now).unwrap_or_default();
    if remaining > CACHE_MARGIN * 2 {
        remaining - CACHE_MARGIN
    } else {
        remaining / 2
    }
}

/// The answer for an image on a host that is not Google's: no credentials.
pub(crate) fn not_google() -> Response {
    Response {
        api_version: API_VERSION,
        kind: "CredentialProviderResponse",
        cache_key_type: CacheKeyType::Registry,
        cache_duration: Some(go_duration(NOT_GOOGLE_CACHE)),
        auth: BTreeMap::new(),
    }
}

/// The answer carrying `username`/`password` for every pattern. One answer
/// serves every Google registry (`Global`); with `cacheType: ServiceAccount`
/// the kubelet keeps one per ServiceAccount.
pub(crate) fn answer(
    settings: &Settings,
    username: &str,
    password: &Secret<String>,
    expires_at: Option<SystemTime>,
    now: SystemTime,
) -> Response {
    let auth = settings
        .patterns
        .iter()
        .map(|p| (p.clone(), AuthConfig { username: username.to_string(), password: password.clone() }))
        .collect();
    Response {
        api_version: API_VERSION,
        kind: "CredentialProviderResponse",
        cache_key_type: CacheKeyType::Global,
        cache_duration: Some(go_duration(cache_duration(now, expires_at))),
        auth,
    }
}

/// A duration as Go's `time.ParseDuration` (and so `metav1.Duration`) reads it.
fn go_duration(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// Serialises a response, revealing the password: the one place it leaves.
pub(crate) fn to_json(response: &Response) -> Vec<u8> {
    let auth: serde_json::Map<String, serde_json::Value> = response
        .auth
        .iter()
        .map(|(k, a)| (k.clone(), serde_json::json!({"username": a.username, "password": a.password.expose()})))
        .collect();
    let mut v = serde_json::to_value(response).expect("a response serialises");
    v["auth"] = serde_json::Value::Object(auth);
    serde_json::to_vec(&v).expect("JSON serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_follow_the_published_api() {
        let body = br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest",
            "image":"europe-west1-docker.pkg.dev/p/r/i:tag","serviceAccountToken":"eyJ.pod.sig",
            "serviceAccountAnnotations":{"iam.gke.io/gcp-service-account":"pull@p.iam.gserviceaccount.com"}}"#;
        let r = parse_request(body).unwrap();
        assert_eq!(r.image, "europe-west1-docker.pkg.dev/p/r/i:tag");
        assert_eq!(r.service_account_token.as_ref().unwrap().expose(), "eyJ.pod.sig");
        assert_eq!(r.service_account_annotations[GOOGLE_SERVICE_ACCOUNT_ANNOTATION], "pull@p.iam.gserviceaccount.com");
        assert!(!format!("{r:?}").contains("eyJ.pod.sig"), "the token is redacted in Debug");

        // Node identity: no token, no annotations.
        let r = parse_request(br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"gcr.io/p/i"}"#).unwrap();
        assert!(r.service_account_token.is_none() && r.service_account_annotations.is_empty());

        for bad in [
            &b"not json"[..],
            br#"{"kind":"CredentialProviderRequest"}"#,
            br#"{"image":""}"#,
            br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1alpha1","image":"gcr.io/x"}"#,
        ] {
            let e = parse_request(bad).unwrap_err();
            assert!(matches!(e, ProviderError::BadRequest(_)), "{e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn responses_use_the_published_field_names_and_values() {
        let settings = Settings {
            pool_provider: None,
            sts_endpoint: String::new(),
            impersonation_endpoint: String::new(),
            token_lifetime: None,
            patterns: DEFAULT_PATTERNS.iter().map(|s| s.to_string()).collect(),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let r = answer(
            &settings,
            "oauth2accesstoken",
            &Secret::new("ya29.t".into()),
            Some(now + Duration::from_secs(3600)),
            now,
        );
        let v: serde_json::Value = serde_json::from_slice(&to_json(&r)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "kind": "CredentialProviderResponse",
                "cacheKeyType": "Global",
                "cacheDuration": "3300s",
                "auth": {
                    "*-docker.pkg.dev": {"username": "oauth2accesstoken", "password": "ya29.t"},
                    "*.gcr.io": {"username": "oauth2accesstoken", "password": "ya29.t"},
                    "gcr.io": {"username": "oauth2accesstoken", "password": "ya29.t"},
                },
            })
        );
        assert!(!format!("{r:?}").contains("ya29.t"), "Debug never shows the password");
        let none: serde_json::Value = serde_json::from_slice(&to_json(&not_google())).unwrap();
        assert_eq!(none["cacheKeyType"], "Registry");
        assert_eq!(none["auth"], serde_json::json!({}));
    }

    #[test]
    fn cache_duration_ends_before_the_token_does() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |s| Some(now + Duration::from_secs(s));
        assert_eq!(cache_duration(now, at(3600)), Duration::from_secs(3300));
        assert_eq!(cache_duration(now, at(600)), Duration::from_secs(300), "short tokens: half their life");
        assert_eq!(cache_duration(now, at(60)), Duration::from_secs(30));
        assert_eq!(cache_duration(now, Some(now - Duration::from_secs(5))), Duration::ZERO, "expired: no caching");
        for s in [1, 59, 601, 3599, 43200] {
            assert!(cache_duration(now, at(s)) < Duration::from_secs(s), "{s}");
        }
    }

    proptest::proptest! {
        /// No request the kubelet (or anything on its stdin) sends makes
        /// regcred panic; every answer is a value or an error.
        #[test]
        fn any_request_is_answered_without_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            image in ".{0,64}",
            token in proptest::option::of(".{0,32}"),
        ) {
            let _ = parse_request(&bytes);
            let json = serde_json::json!({"apiVersion": API_VERSION, "image": image, "serviceAccountToken": token});
            if let Ok(r) = parse_request(json.to_string().as_bytes()) {
                let _ = is_google(image_host(&r.image));
            }
        }
    }

    #[test]
    fn image_hosts_are_found_as_docker_names_them() {
        assert_eq!(image_host("gcr.io/p/i:tag"), "gcr.io");
        assert_eq!(image_host("europe-west1-docker.pkg.dev/p/r/i@sha256:abc"), "europe-west1-docker.pkg.dev");
        assert_eq!(image_host("registry.example:5000/i"), "registry.example");
        assert_eq!(image_host("nginx"), "docker.io");
        assert_eq!(image_host("library/nginx:1"), "docker.io");
        assert!(is_google("gcr.io") && is_google("eu.gcr.io") && is_google("us-docker.pkg.dev"));
        assert!(!is_google("docker.io") && !is_google("evil-gcr.io"));
    }
}
