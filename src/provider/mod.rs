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
//! Images on an Amazon ECR host (private or Public) or an Azure Container
//! Registry are answered with the node's AWS or Azure identity, for their
//! own registry. An ACR image whose request carries the pod's token is
//! answered with the Azure identity its ServiceAccount names
//! ([`ACR_CLIENT_ID_ANNOTATION`]), the token presented as that identity's
//! federated credential; an ECR image's, with the IAM role its
//! ServiceAccount names ([`ECR_ROLE_ARN_ANNOTATION`], else
//! [`ROLE_ARN_ANNOTATION`]), the token exchanged at STS
//! (`AssumeRoleWithWebIdentity`) for that role's credentials.
//!
//! [`kubelet`] writes the kubelet's config for either; [`install`] puts the
//! binary and that config on a node.

mod args;
pub(crate) mod install;
pub(crate) mod kubelet;
mod pool;
mod request;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub(crate) use args::Args;
pub(crate) use pool::PoolProvider;
pub(crate) use request::{parse_request, Request};

use crate::http::HttpClient;
use crate::registry::RegistryHost;
use crate::secret::Secret;
use crate::source::{
    CredentialSource, Endpoint, EndpointUrl, ExternalAccount, Impersonated, InvalidEmail, SourceError,
    DEFAULT_TOKEN_LIFETIME,
};

/// The API version regcred speaks, and answers in.
pub(crate) const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";

/// The ServiceAccount annotation naming the Google service account a pod
/// pulls as: the same key GKE Workload Identity uses.
pub(crate) const GOOGLE_SERVICE_ACCOUNT_ANNOTATION: &str = "iam.gke.io/gcp-service-account";

/// The ServiceAccount annotation naming the Azure identity (client id) a
/// pod pulls from ACR as: the key Azure's own credential provider reads.
pub(crate) const ACR_CLIENT_ID_ANNOTATION: &str = "kubernetes.azure.com/acr-client-id";

/// The ServiceAccount annotation naming that identity's tenant; without
/// it, the plugin's own `AZURE_TENANT_ID`.
pub(crate) const ACR_TENANT_ID_ANNOTATION: &str = "kubernetes.azure.com/acr-tenant-id";

/// The ServiceAccount annotation naming the IAM role a pod pulls from ECR
/// as, before [`ROLE_ARN_ANNOTATION`]: the key AWS's own credential
/// provider reads first.
pub(crate) const ECR_ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";

/// The IRSA annotation naming a pod's IAM role; an ECR image is pulled as
/// it when [`ECR_ROLE_ARN_ANNOTATION`] is absent.
pub(crate) const ROLE_ARN_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// How much earlier than the token's expiry the kubelet must stop using it.
pub(crate) const CACHE_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How long the kubelet may remember "no credentials" for an image on a host
/// that is not Google's: that answer never changes.
const NOT_GOOGLE_CACHE: Duration = Duration::from_secs(3600);

/// The kubelet image patterns of Amazon ECR's hosts (as AWS's own
/// `ecr-credential-provider` is configured), for a CredentialProviderConfig
/// that sends ECR images to regcred too.
pub(crate) const ECR_PATTERNS: &[&str] =
    &["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn", "*.dkr.ecr-fips.*.amazonaws.com", "public.ecr.aws"];

/// The kubelet image patterns of Azure Container Registry's hosts (as
/// Azure's own `acr-credential-provider` is configured, less the closed
/// `azurecr.de`), for a CredentialProviderConfig that sends ACR images to
/// regcred too.
pub(crate) const ACR_PATTERNS: &[&str] = &["*.azurecr.io", "*.azurecr.cn", "*.azurecr.us"];

/// The auth keys used when no `--registry` is given: every Container
/// Registry and Artifact Registry host, as kubelet image patterns.
pub(crate) const DEFAULT_PATTERNS: &[&str] = &["gcr.io", "*.gcr.io", "*-docker.pkg.dev"];

/// The provider's own settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The workload identity pool provider that pod tokens are exchanged
    /// for; required for pod identity.
    pub pool_provider: Option<PoolProvider>,
    /// `--sts-endpoint`.
    pub sts_endpoint: EndpointUrl,
    /// `--impersonation-endpoint`, for the annotation's account.
    pub impersonation_endpoint: Endpoint,
    /// Impersonated tokens' lifetime.
    pub token_lifetime: Option<Duration>,
    /// The auth keys to answer with.
    pub patterns: Vec<String>,
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
    #[error("the request's `image` {image} is not an image reference: {problem}")]
    BadImage { image: String, problem: String },
    #[error("the request's serviceAccountToken is not a Kubernetes service account token: {0}; check tokenAttributes in the kubelet's CredentialProviderConfig")]
    BadToken(&'static str),
    #[error("invalid {GOOGLE_SERVICE_ACCOUNT_ANNOTATION} annotation {value} on the pod's ServiceAccount: {problem}")]
    BadAnnotation { value: String, problem: InvalidEmail },
    #[error("invalid {key} annotation {value} on the pod's ServiceAccount: expected {expected}")]
    BadCloudAnnotation { key: &'static str, value: String, expected: &'static str },
    #[error("the request carries the pod's service account token for {host} (Azure Container Registry), but {missing}; a pod's token is never answered with the node's identity")]
    AcrPodIdentity { host: String, missing: &'static str },
    #[error("the request carries the pod's service account token for {host} ({provider}), but its ServiceAccount has neither an {ECR_ROLE_ARN_ANNOTATION} nor an {ROLE_ARN_ANNOTATION} annotation naming the IAM role to pull as; a pod's token is never answered with the node's identity")]
    EcrPodIdentity { host: String, provider: &'static str },
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
            ProviderError::Source(SourceError::Endpoint { .. } | SourceError::Refused { .. }) => 1,
            ProviderError::Output(_) => 1,
            _ => 2,
        }
    }
}

/// Whether `host` is one of Google's registries.
pub(crate) fn is_google(host: &str) -> bool {
    host.parse::<RegistryHost>().is_ok_and(|h| h.is_google())
}

/// The credential source for this request: the pod's identity when the
/// kubelet sent its token, the node's otherwise (`node`).
pub(crate) fn source_for(
    request: &Request,
    settings: &Settings,
    node: impl FnOnce() -> Result<Arc<dyn CredentialSource>, SourceError>,
    http: &HttpClient,
) -> Result<Arc<dyn CredentialSource>, ProviderError> {
    let Some(token) = &request.token else {
        return Ok(node()?);
    };
    let pool_provider = settings.pool_provider.as_ref().ok_or(ProviderError::NoPoolProvider)?;
    let exchange: Arc<dyn CredentialSource> = Arc::new(ExternalAccount::with_token(
        pool_provider.as_str(),
        settings.sts_endpoint.as_str(),
        token.secret(),
        http.clone(),
    ));
    let Some(email) = &request.impersonate else {
        return Ok(exchange);
    };
    let lifetime = settings.token_lifetime.unwrap_or(DEFAULT_TOKEN_LIFETIME);
    Ok(Arc::new(Impersonated::new(exchange, email, &[], lifetime, &settings.impersonation_endpoint, http.clone())))
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

/// The answer for an image on one registry whose credential is its own
/// (an ECR registry, an ACR registry): keyed by that host, cached per registry until
/// shortly before the token expires.
pub(crate) fn answer_registry(
    host: &str,
    username: &str,
    password: &Secret<String>,
    expires_at: Option<SystemTime>,
    now: SystemTime,
) -> Response {
    let auth =
        BTreeMap::from([(host.to_string(), AuthConfig { username: username.to_string(), password: password.clone() })]);
    Response {
        api_version: API_VERSION,
        kind: "CredentialProviderResponse",
        cache_key_type: CacheKeyType::Registry,
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
    fn responses_use_the_published_field_names_and_values() {
        let settings = Settings {
            pool_provider: None,
            sts_endpoint: crate::source::STS_ENDPOINT.parse().unwrap(),
            impersonation_endpoint: crate::source::IAM_CREDENTIALS_ENDPOINT.parse().unwrap(),
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

    /// `good`, or `good` with something hostile inserted, or anything at all.
    fn hostile(good: &'static str) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let evil = prop::sample::select(vec![
            "#", "%2F", "\\", "&alt=1", "?", "/", "/../", " ", "\n", "\r\n", "\u{0}", ":", "@", "A", "\u{ff20}",
            "\u{440}", "\u{200b}", "\u{ff0e}",
        ]);
        prop_oneof![
            Just(good.to_string()),
            (0..=good.len(), evil).prop_map(move |(i, e)| format!("{}{e}{}", &good[..i], &good[i..])),
            (0..=good.len(), 1..3000usize).prop_map(move |(i, n)| format!(
                "{}{}{}",
                &good[..i],
                "a".repeat(n),
                &good[i..]
            )),
            ".{0,80}",
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Every request the kubelet could relay, with a tenant's hostile
        /// values in its image, token and annotation, is either refused in
        /// one line (exit code 2, never quoting the token) or becomes a
        /// credential source built only from values that passed the strict
        /// parsers; nothing panics.
        #[test]
        fn any_request_is_answered_without_panic(
            image in hostile("europe-west1-docker.pkg.dev/p/r/i:tag"),
            token in proptest::option::of(hostile("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwb2QifQ.c2ln")),
            annotation in proptest::option::of(hostile("puller@project-1.iam.gserviceaccount.com")),
        ) {
            static HTTP: std::sync::LazyLock<HttpClient> =
                std::sync::LazyLock::new(|| HttpClient::new(Duration::from_secs(1)).unwrap());
            let mut json = serde_json::json!({"apiVersion": API_VERSION, "kind": "CredentialProviderRequest", "image": image});
            if let Some(t) = &token {
                json["serviceAccountToken"] = t.as_str().into();
            }
            if let Some(a) = &annotation {
                json["serviceAccountAnnotations"] = serde_json::json!({GOOGLE_SERVICE_ACCOUNT_ANNOTATION: a});
            }
            match parse_request(json.to_string().as_bytes()) {
                Ok(r) => {
                    let allowed = |s: &str, extra: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
                    if let Some(email) = &r.impersonate {
                        proptest::prop_assert!(allowed(email.as_str(), "-.@") && !email.as_str().contains(char::is_uppercase));
                    }
                    proptest::prop_assert!(r.image.host().chars().all(|c| c.is_ascii_graphic()));
                    let settings = Settings {
                        pool_provider: Some("//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kubelet".parse().unwrap()),
                        sts_endpoint: crate::source::STS_ENDPOINT.parse().unwrap(),
                        impersonation_endpoint: crate::source::IAM_CREDENTIALS_ENDPOINT.parse().unwrap(),
                        token_lifetime: None,
                        patterns: Vec::new(),
                    };
                    let node = || Err(SourceError::NotFound("no node credentials in this test".into()));
                    let source = source_for(&r, &settings, node, &HTTP);
                    proptest::prop_assert_eq!(source.is_ok(), r.token.is_some());
                    let _ = is_google(r.image.host());
                }
                Err(e) => {
                    let message = e.to_string();
                    proptest::prop_assert!(!message.contains('\n') && message.len() < 1000, "{}", message);
                    proptest::prop_assert_eq!(e.exit_code(), 2);
                    if let Some(t) = token.filter(|t| t.len() >= 8) {
                        proptest::prop_assert!(!message.contains(&t), "{}", message);
                    }
                }
            }
        }
    }

    #[test]
    fn only_google_registries_get_credentials() {
        assert!(is_google("gcr.io") && is_google("eu.gcr.io") && is_google("us-docker.pkg.dev"));
        assert!(!is_google("docker.io") && !is_google("evil-gcr.io"));
        assert!(!is_google("123456789012.dkr.ecr.us-east-1.amazonaws.com") && !is_google("public.ecr.aws"));
    }
}
