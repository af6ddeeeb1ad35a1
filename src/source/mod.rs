//! Credential sources: where the registry password comes from.
//!
//! Every source implements [`CredentialSource`]; the refresh loop knows only
//! the trait. [`discover`] picks a source from the configuration the way
//! Google's client libraries do.

mod args;
mod authorized_user;
mod email;
mod endpoint;
mod external_account;
mod impersonate;
mod json_key;
mod metadata;
mod service_account;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::StatusCode;
use serde::Deserialize;

use crate::http::{HttpClient, HttpError, Response};

pub(crate) use crate::credential::{Credential, MAX_TOKEN_LIFETIME, OAUTH_USERNAME};
pub(crate) use args::{Args, ImpersonateWithKeyAuth};
pub(crate) use authorized_user::AuthorizedUser;
pub(crate) use email::{InvalidEmail, ServiceAccountEmail};
pub(crate) use endpoint::{Endpoint, EndpointUrl};
pub(crate) use external_account::{ExternalAccount, DEFAULT_TOKEN_URL as STS_ENDPOINT};
pub(crate) use impersonate::{Impersonated, DEFAULT_TOKEN_LIFETIME, IAM_CREDENTIALS_ENDPOINT};
pub(crate) use json_key::JsonKey;
pub(crate) use metadata::MetadataServer;
pub(crate) use service_account::ServiceAccountKey;

/// Google's OAuth token endpoint, for key files and user logins that name none.
pub(crate) const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The OAuth scope registries accept tokens for.
pub(crate) const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Something that can produce a registry credential.
#[async_trait::async_trait]
pub(crate) trait CredentialSource: Send + Sync {
    /// A human description for logs ("service-account key /k.json (sa@p.iam)").
    fn describe(&self) -> String;

    /// Produces a credential. Each call must return a token with (nearly) its
    /// full lifetime: the loop calls it only when the previous one is due for
    /// replacement, so a cached token would defeat the schedule.
    async fn credential(&self) -> Result<Credential, SourceError>;
}

/// Why a credential could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A credentials file that cannot be used. `origin` says where its path
    /// came from when that was not `--key-file` (an environment variable).
    #[error("{}{}: {problem}", .origin.map(|o| format!("{o}=")).unwrap_or_else(|| "key file ".into()), .path.display())]
    KeyFile { path: PathBuf, problem: String, origin: Option<&'static str> },
    #[error("{step}: {url} answered {status}: {message}")]
    Endpoint { step: &'static str, url: String, status: u16, message: String, retry_after: Option<Duration> },
    #[error("{step}: {url} answered with an unusable token response: {problem}")]
    BadResponse { step: &'static str, url: String, problem: String },
    #[error("{step}: {source}")]
    Http {
        step: &'static str,
        #[source]
        source: HttpError,
    },
    #[error("no Google credentials found: {0}")]
    NotFound(String),
    /// The external identity's token (workload identity federation) could
    /// not be read. Retryable: the provider rewrites it (Kubernetes rotates
    /// projected tokens); at start-up the same problem stops regcred.
    #[error("reading the subject token from {origin}: {problem} (credential_source in {})", config.display())]
    SubjectToken { origin: String, config: PathBuf, problem: String },
    /// A combination regcred cannot serve.
    #[error("{0}")]
    Unsupported(String),
    /// A cloud API's refusal that names an error code (AWS's JSON and XML
    /// errors), with the code's own word on whether a retry can help (AWS
    /// throttles with 400 `ThrottlingException`).
    #[error("{step}: {url} answered {status} {code}: {message}")]
    Refused {
        step: &'static str,
        url: String,
        status: u16,
        code: String,
        message: String,
        retryable: bool,
        retry_after: Option<Duration>,
    },
    /// A projected token file another cloud's credentials are read from
    /// (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AZURE_FEDERATED_TOKEN_FILE`; `var`
    /// names where its path came from): retried, as the kubelet rewrites it.
    #[error("{var}={}: {problem}", .path.display())]
    TokenFile { var: &'static str, path: PathBuf, problem: String },
    /// Another cloud's credentials could not be found (Google's say so in
    /// [`SourceError::NotFound`]).
    #[error("no {cloud} credentials found: {detail}")]
    NoCredentials { cloud: &'static str, detail: String },
}

impl SourceError {
    /// An endpoint's refusal, with Google's own error text (never the
    /// request, which may carry a token) and any `Retry-After`.
    pub(crate) fn endpoint(step: &'static str, url: &str, resp: &Response) -> SourceError {
        SourceError::Endpoint {
            step,
            url: url.to_string(),
            status: resp.status.as_u16(),
            message: google_error_message(&resp.body, resp.status),
            retry_after: crate::http::retry_after(&resp.headers),
        }
    }

    /// Whether trying again later can succeed. Bad keys and 4xx answers
    /// (other than 408/429) will not fix themselves.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::KeyFile { .. }
            | SourceError::NotFound(_)
            | SourceError::Unsupported(_)
            | SourceError::NoCredentials { .. } => false,
            SourceError::Refused { retryable, .. } => *retryable,
            SourceError::SubjectToken { .. } | SourceError::TokenFile { .. } => true,
            SourceError::Endpoint { status, .. } => crate::http::is_retryable_status(*status),
            SourceError::BadResponse { .. } | SourceError::Http { .. } => true,
        }
    }

    /// The delay the peer asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::Endpoint { retry_after, .. } | SourceError::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short label for metrics, without any detail that could vary.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SourceError::KeyFile { .. } => "key_file",
            SourceError::Endpoint { status, .. } if *status >= 500 => "endpoint_5xx",
            SourceError::Endpoint { status: 429, .. } => "endpoint_429",
            SourceError::Endpoint { .. } => "endpoint_4xx",
            SourceError::BadResponse { .. } => "bad_response",
            SourceError::Http { source: HttpError::Timeout { .. }, .. } => "timeout",
            SourceError::Http { .. } => "transport",
            SourceError::NotFound(_) => "not_found",
            SourceError::SubjectToken { .. } | SourceError::TokenFile { .. } => "subject_token",
            SourceError::Unsupported(_) => "unsupported",
            SourceError::Refused { status, .. } if *status >= 500 => "endpoint_5xx",
            SourceError::Refused { retryable: true, .. } => "endpoint_throttled",
            SourceError::Refused { .. } => "endpoint_4xx",
            SourceError::NoCredentials { .. } => "not_found",
        }
    }
}

/// What [`discover`] needs to know: the source's own settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub auth: AuthMode,
    /// `--key-file`.
    pub key_file: Option<PathBuf>,
    /// `--impersonate`: a service account to impersonate on top of the source.
    pub impersonate: Option<Impersonation>,
    /// `--token-lifetime`; `None` leaves it to credential files, else 1h.
    pub token_lifetime: Option<Duration>,
}

/// How registries authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// OAuth access token, username `oauth2accesstoken`.
    #[value(name = "oauth")]
    OAuth,
    /// The raw key JSON, username `_json_key`.
    JsonKey,
    /// The key file in base64, username `_json_key_base64`.
    JsonKeyBase64,
}

impl std::fmt::Display for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(clap::ValueEnum::to_possible_value(self).expect("no skipped variants").get_name())
    }
}

/// `--impersonate` with its delegates and endpoint, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Impersonation {
    pub target: ServiceAccountEmail,
    pub delegates: Vec<ServiceAccountEmail>,
    pub endpoint: Endpoint,
}

/// Builds the credential source the configuration asks for.
///
/// Order for `--auth oauth` without `--key-file`, as in Google's libraries:
/// `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's application-default
/// credentials file, then the metadata server (GKE Workload Identity).
/// `--impersonate` wraps whichever source that finds.
pub(crate) fn discover(config: &Settings, http: &HttpClient) -> Result<Arc<dyn CredentialSource>, SourceError> {
    let source = discover_base(config, http)?;
    let Some(imp) = &config.impersonate else {
        return Ok(source);
    };
    let lifetime = config.token_lifetime.unwrap_or(DEFAULT_TOKEN_LIFETIME);
    Ok(Arc::new(Impersonated::new(source, &imp.target, &imp.delegates, lifetime, &imp.endpoint, http.clone())))
}

fn discover_base(config: &Settings, http: &HttpClient) -> Result<Arc<dyn CredentialSource>, SourceError> {
    const ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";
    let env_file = std::env::var_os(ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
    // An error about a file named by GOOGLE_APPLICATION_CREDENTIALS says so.
    let origin = |e: SourceError| if config.key_file.is_none() { from_env(ENV)(e) } else { e };
    match config.auth {
        AuthMode::JsonKey | AuthMode::JsonKeyBase64 => {
            let path = config.key_file.clone().or(env_file).ok_or_else(|| {
                SourceError::NotFound(format!(
                    "--auth {} needs a service-account key: pass --key-file PATH (or set GOOGLE_APPLICATION_CREDENTIALS)",
                    config.auth
                ))
            })?;
            Ok(Arc::new(JsonKey::load(path, config.auth == AuthMode::JsonKeyBase64).map_err(origin)?))
        }
        AuthMode::OAuth => {
            if let Some(path) = config.key_file.clone().or(env_file) {
                return from_credentials_file(&path, config, http).map_err(origin);
            }
            if let Some(path) = gcloud_adc_file().filter(|p| p.is_file()) {
                return from_credentials_file(&path, config, http);
            }
            Ok(Arc::new(MetadataServer::from_env(http.clone()).into_fallback()))
        }
    }
}

/// gcloud's application-default credentials file.
fn gcloud_adc_file() -> Option<PathBuf> {
    let dir = match std::env::var_os("CLOUDSDK_CONFIG").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config/gcloud"),
    };
    Some(dir.join("application_default_credentials.json"))
}

const EXPECTED_TYPES: &str =
    "expected service_account, authorized_user, external_account or impersonated_service_account (or use the metadata server)";
const NOT_AN_OBJECT: &str = "expected a JSON object such as `gcloud iam service-accounts keys create` writes";

/// Reads a credentials file and picks the source its `type` names.
fn from_credentials_file(
    path: &Path,
    config: &Settings,
    http: &HttpClient,
) -> Result<Arc<dyn CredentialSource>, SourceError> {
    let text = read_key_file(path)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| key_problem(path, format!("not valid JSON ({e})")))?;
    if !json.is_object() {
        return Err(key_problem(path, format!("is not a Google credentials file: {NOT_AN_OBJECT}")));
    }
    match json.get("type").and_then(serde_json::Value::as_str) {
        Some("service_account") => Ok(Arc::new(ServiceAccountKey::parse(path, &text, http.clone())?)),
        Some("authorized_user") => Ok(Arc::new(AuthorizedUser::parse(path, &text, http.clone())?)),
        Some("impersonated_service_account") => {
            let lifetime = config.token_lifetime.unwrap_or(DEFAULT_TOKEN_LIFETIME);
            impersonate::from_impersonated_file(path, &text, lifetime, http)
        }
        Some("external_account") => external_account::from_file(path, &text, config.token_lifetime, http),
        Some(other) => Err(key_problem(path, format!("credential type {other:?} is not supported; {EXPECTED_TYPES}"))),
        None => Err(key_problem(
            path,
            format!("is not a Google credentials file: it has no `type` field; {EXPECTED_TYPES}"),
        )),
    }
}

/// Reads a key file, turning I/O failures into messages that name the file.
pub(crate) fn read_key_file(path: &Path) -> Result<String, SourceError> {
    std::fs::read_to_string(path).map_err(|e| {
        let problem = match e.kind() {
            std::io::ErrorKind::InvalidData => "not UTF-8 text; expected a JSON key file".to_string(),
            _ => unreadable(&e),
        };
        key_problem(path, problem)
    })
}

/// Why a credentials or token file cannot be read, and what to do about it.
pub(crate) fn unreadable(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file; check the path and the volume that provides it".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied; make it readable by regcred's user".to_string(),
        _ => format!("cannot read: {e}"),
    }
}

pub(crate) fn key_problem(path: &Path, problem: String) -> SourceError {
    SourceError::KeyFile { path: path.to_path_buf(), problem, origin: None }
}

/// A credentials file's `token_uri`: Google's when absent or empty, else
/// an http(s) URL (checked here, so that the error names the file).
pub(crate) fn token_uri(path: &Path, value: Option<String>) -> Result<String, SourceError> {
    match value.filter(|s| !s.is_empty()) {
        None => Ok(GOOGLE_TOKEN_URI.into()),
        Some(uri) if crate::http::is_http_url(&uri) => Ok(uri),
        Some(uri) => Err(key_problem(path, format!("field `token_uri` {uri:?} is not an http(s) URL"))),
    }
}

/// Names the environment variable a credentials file path came from.
fn from_env(var: &'static str) -> impl Fn(SourceError) -> SourceError {
    move |e| match e {
        SourceError::KeyFile { path, problem, .. } => SourceError::KeyFile { path, problem, origin: Some(var) },
        other => other,
    }
}

/// The success body of Google's token endpoints.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<i64>,
}

/// Turns a token endpoint's answer into a credential, or into an error that
/// carries Google's own error text (never the request or the token).
pub(crate) fn oauth_token_from(step: &'static str, url: &str, resp: Response) -> Result<Credential, SourceError> {
    if !resp.status.is_success() {
        return Err(SourceError::endpoint(step, url, &resp));
    }
    let bad = |problem: &str| SourceError::BadResponse { step, url: url.to_string(), problem: problem.to_string() };
    let parsed: TokenResponse = serde_json::from_slice(&resp.body).map_err(|_| bad("not the expected JSON"))?;
    let token = parsed.access_token.filter(|t| !t.is_empty()).ok_or_else(|| bad("no access_token"))?;
    let expires_in = parsed.expires_in.ok_or_else(|| bad("no expires_in"))?;
    if expires_in <= 0 {
        return Err(bad("the token is already expired (expires_in <= 0)"));
    }
    Ok(Credential::access_token(token, Duration::from_secs(expires_in.unsigned_abs()), SystemTime::now()))
}

/// Extracts the human text from Google's two error shapes:
/// OAuth (`{"error": "invalid_grant", "error_description": "..."}`) and
/// API (`{"error": {"code": 403, "message": "...", "status": "..."}}`).
pub(crate) fn google_error_message(body: &[u8], status: StatusCode) -> String {
    let fallback = || status.canonical_reason().unwrap_or("error").to_string();
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return fallback();
    };
    match &v["error"] {
        serde_json::Value::String(code) => match v["error_description"].as_str() {
            Some(desc) => format!("{code}: {desc}"),
            None => code.clone(),
        },
        serde_json::Value::Object(o) => {
            let msg = o.get("message").and_then(|m| m.as_str()).unwrap_or("");
            match o.get("status").and_then(|s| s.as_str()) {
                Some(s) => format!("{s}: {msg}"),
                None => msg.to_string(),
            }
        }
        _ => fallback(),
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_uri_is_googles_by_default_and_else_an_http_url() {
        let path = Path::new("/k.json");
        assert_eq!(token_uri(path, None).unwrap(), GOOGLE_TOKEN_URI);
        assert_eq!(token_uri(path, Some(String::new())).unwrap(), GOOGLE_TOKEN_URI);
        assert_eq!(token_uri(path, Some("http://127.0.0.1:1/t".into())).unwrap(), "http://127.0.0.1:1/t");
        let err = token_uri(path, Some("oauth2.googleapis.com/token".into())).unwrap_err().to_string();
        assert!(err.contains("/k.json") && err.contains("field `token_uri`"), "{err}");
    }

    #[test]
    fn google_errors_are_summarised() {
        let oauth = br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
        assert_eq!(google_error_message(oauth, StatusCode::BAD_REQUEST), "invalid_grant: Invalid JWT Signature.");
        let api = br#"{"error":{"code":403,"message":"Permission denied","status":"PERMISSION_DENIED"}}"#;
        assert_eq!(google_error_message(api, StatusCode::FORBIDDEN), "PERMISSION_DENIED: Permission denied");
        assert_eq!(google_error_message(b"<html>", StatusCode::BAD_GATEWAY), "Bad Gateway");
    }

    use crate::http::test_response as resp;

    #[test]
    fn token_responses_are_validated() {
        let ok = oauth_token_from("t", "u", resp(200, r#"{"access_token":"ya29.x","expires_in":3599}"#)).unwrap();
        assert_eq!(ok.username, "oauth2accesstoken");
        assert_eq!(ok.password.expose(), "ya29.x");
        let left = ok.expires_at.unwrap().duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(3590), "{left:?}");

        // Far beyond any real token (and beyond what RFC 3339 can write):
        // clamped to the 12 h Google issues at most, no panic anywhere after.
        for huge in [86_400i64, 9_000_000_000_000, i64::MAX] {
            let body = format!(r#"{{"access_token":"t","expires_in":{huge}}}"#);
            let cred = oauth_token_from("t", "u", resp(200, &body)).unwrap();
            let left = cred.expires_at.unwrap().duration_since(SystemTime::now()).unwrap();
            assert!(left <= MAX_TOKEN_LIFETIME && left > MAX_TOKEN_LIFETIME - Duration::from_secs(60), "{left:?}");
        }

        for body in [
            "{",
            r#"{"access_token":"x","expires_in":-5}"#,
            r#"{"access_token":"x","expires_in":1e300}"#,
            r#"{"access_token":"x","expires_in":99999999999999999999999}"#,
            r#"{"expires_in":3599}"#,
            r#"{"access_token":"x","expires_in":0}"#,
            r#"{"access_token":"","expires_in":10}"#,
        ] {
            let err = oauth_token_from("t", "u", resp(200, body)).unwrap_err();
            assert!(matches!(err, SourceError::BadResponse { .. }), "{body}: {err}");
            assert!(err.is_retryable());
        }
    }

    #[test]
    fn status_decides_retryability() {
        let e = |s| oauth_token_from("t", "u", resp(s, "{}")).unwrap_err();
        assert!(e(500).is_retryable());
        assert!(e(429).is_retryable());
        assert!(!e(400).is_retryable());
        assert!(!e(403).is_retryable());
    }
}
