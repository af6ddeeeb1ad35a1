//! Service-account impersonation: any OAuth source's token traded for a
//! token of another service account through IAM Credentials'
//! `generateAccessToken`.
//!
//! Used for `--impersonate`, for `impersonated_service_account` credential
//! files (gcloud's `--impersonate-service-account` ADC), and for
//! `external_account` files that name a `service_account_impersonation_url`.
//! The wrapper asks its inner source for a fresh token at every mint, so the
//! impersonated token always gets its full lifetime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::{
    key_problem, AuthorizedUser, Credential, CredentialSource, Endpoint, ServiceAccountEmail, ServiceAccountKey,
    SourceError, CLOUD_PLATFORM_SCOPE, OAUTH_USERNAME,
};
use crate::http::{HttpClient, Response};

/// IAM Credentials' public endpoint.
pub(crate) const IAM_CREDENTIALS_ENDPOINT: &str = "https://iamcredentials.googleapis.com";

/// What IAM Credentials issues when no lifetime is asked for, and what
/// Google's libraries ask for.
pub(crate) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

pub(super) use crate::credential::MAX_TOKEN_LIFETIME;

const STEP: &str = "impersonating the service account";

/// A token of `target`, minted with the inner source's token.
pub(crate) struct Impersonated {
    inner: Arc<dyn CredentialSource>,
    target: ServiceAccountEmail,
    /// Full resource names (`projects/-/serviceAccounts/EMAIL`), in chain order.
    delegates: Vec<String>,
    lifetime: Duration,
    /// The full `generateAccessToken` URL.
    url: String,
    http: HttpClient,
}

impl Impersonated {
    /// Impersonates `target` through the IAM Credentials API at `endpoint`
    /// (scheme and host, such as [`IAM_CREDENTIALS_ENDPOINT`]). Both types
    /// are checked, so the URL is the one it reads as.
    pub(crate) fn new(
        inner: Arc<dyn CredentialSource>,
        target: &ServiceAccountEmail,
        delegates: &[ServiceAccountEmail],
        lifetime: Duration,
        endpoint: &Endpoint,
        http: HttpClient,
    ) -> Self {
        let url = format!("{endpoint}/v1/projects/-/serviceAccounts/{target}:generateAccessToken");
        Self {
            inner,
            target: target.clone(),
            delegates: delegates.iter().map(|d| delegate_name(d.as_str())).collect(),
            lifetime,
            url,
            http,
        }
    }

    /// Impersonates through a full `generateAccessToken` URL, as credential
    /// files give it (`service_account_impersonation_url`). `None` if the URL
    /// does not have that shape or does not name a service account email.
    pub(crate) fn with_url(
        inner: Arc<dyn CredentialSource>,
        url: &str,
        delegates: &[String],
        lifetime: Duration,
        http: HttpClient,
    ) -> Option<Self> {
        let target = target_of(url)?;
        Some(Self {
            inner,
            target,
            delegates: delegates.iter().map(|d| delegate_name(d)).collect(),
            lifetime,
            url: url.to_string(),
            http,
        })
    }
}

#[derive(Deserialize)]
struct ImpersonatedFile {
    service_account_impersonation_url: Option<String>,
    source_credentials: Option<serde_json::Value>,
    delegates: Option<Vec<String>>,
}

/// Builds the source an `impersonated_service_account` file describes (what
/// `gcloud auth application-default login --impersonate-service-account`
/// writes). The nested `source_credentials` stay in memory.
pub(crate) fn from_impersonated_file(
    path: &Path,
    text: &str,
    lifetime: Duration,
    http: &HttpClient,
) -> Result<Arc<dyn CredentialSource>, SourceError> {
    let f: ImpersonatedFile = serde_json::from_str(text)
        .map_err(|e| key_problem(path, format!("not a valid impersonated_service_account file ({e})")))?;
    let url = f
        .service_account_impersonation_url
        .filter(|u| !u.is_empty())
        .ok_or_else(|| key_problem(path, "missing field `service_account_impersonation_url`".into()))?;
    let nested = f.source_credentials.ok_or_else(|| key_problem(path, "missing field `source_credentials`".into()))?;
    let label = PathBuf::from(format!("{} (source_credentials)", path.display()));
    let nested_text = nested.to_string();
    let inner: Arc<dyn CredentialSource> = match nested["type"].as_str() {
        Some("service_account") => Arc::new(ServiceAccountKey::embedded(&label, &nested_text, http.clone())?),
        Some("authorized_user") => Arc::new(AuthorizedUser::embedded(&label, &nested_text, http.clone())?),
        Some(other) => {
            return Err(key_problem(
                path,
                format!("source_credentials of type {other:?} are not supported; use a service_account key or authorized_user credentials"),
            ))
        }
        None => return Err(key_problem(path, "source_credentials has no field `type`".into())),
    };
    let delegates = f.delegates.unwrap_or_default();
    let imp = Impersonated::with_url(inner, &url, &delegates, lifetime, http.clone()).ok_or_else(|| {
        key_problem(
            path,
            format!("field `service_account_impersonation_url` {url:?} is not a generateAccessToken URL for a service account email (https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/EMAIL:generateAccessToken)"),
        )
    })?;
    Ok(Arc::new(imp))
}

/// The service-account email in a `.../serviceAccounts/EMAIL:generateAccessToken` URL.
fn target_of(url: &str) -> Option<ServiceAccountEmail> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return None;
    }
    let rest = url.rsplit_once("/serviceAccounts/")?.1;
    rest.strip_suffix(":generateAccessToken")?.parse().ok()
}

/// Delegates may be given as emails (the flag, gcloud's files) or as full
/// resource names (the API's own form); the API takes the latter.
fn delegate_name(delegate: &str) -> String {
    if delegate.starts_with("projects/") {
        delegate.to_string()
    } else {
        format!("projects/-/serviceAccounts/{delegate}")
    }
}

/// The `generateAccessToken` request body.
fn request_body(delegates: &[String], lifetime: Duration) -> String {
    let mut body = serde_json::json!({
        "scope": [CLOUD_PLATFORM_SCOPE],
        "lifetime": format!("{}s", lifetime.as_secs()),
    });
    if !delegates.is_empty() {
        body["delegates"] = delegates.into();
    }
    body.to_string()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateAccessTokenResponse {
    access_token: Option<String>,
    expire_time: Option<String>,
}

/// Turns IAM Credentials' answer into a credential, or into an error that
/// carries Google's text (never the token).
pub(super) fn token_from(url: &str, resp: &Response) -> Result<Credential, SourceError> {
    if !resp.status.is_success() {
        let mut refused = SourceError::endpoint(STEP, url, resp);
        if let (hyper::StatusCode::FORBIDDEN, SourceError::Endpoint { message, .. }) = (resp.status, &mut refused) {
            message.push_str(
                " (the source identity needs roles/iam.serviceAccountTokenCreator on the target service account, or on each delegate in turn)",
            );
        }
        return Err(refused);
    }
    let body = &resp.body;
    let bad =
        |problem: &str| SourceError::BadResponse { step: STEP, url: url.to_string(), problem: problem.to_string() };
    let parsed: GenerateAccessTokenResponse = serde_json::from_slice(body).map_err(|_| bad("not the expected JSON"))?;
    let token = parsed.access_token.filter(|t| !t.is_empty()).ok_or_else(|| bad("no accessToken"))?;
    let expire_time = parsed.expire_time.ok_or_else(|| bad("no expireTime"))?;
    let expires_at = parse_rfc3339(&expire_time).ok_or_else(|| bad("expireTime is not an RFC 3339 time"))?;
    let now = SystemTime::now();
    match expires_at.duration_since(now) {
        Ok(lifetime) if !lifetime.is_zero() => Ok(Credential::access_token(token, lifetime, now)),
        _ => Err(bad("the token is already expired (expireTime is in the past)")),
    }
}

/// Google writes `expireTime` in UTC with a `Z` (fractional seconds
/// optional); a `+00:00` offset is accepted too.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let utc = match s.strip_suffix("+00:00") {
        Some(base) => format!("{base}Z"),
        None => s.to_string(),
    };
    humantime::parse_rfc3339(&utc).ok()
}

#[async_trait::async_trait]
impl CredentialSource for Impersonated {
    fn describe(&self) -> String {
        format!("{}, impersonating {}", self.inner.describe(), self.target)
    }

    async fn credential(&self) -> Result<Credential, SourceError> {
        let source = self.inner.credential().await?;
        if source.username != OAUTH_USERNAME {
            // The configuration rejects --impersonate with key auth; this
            // guards against a future source that is not OAuth.
            return Err(SourceError::Unsupported(format!(
                "impersonation needs an OAuth source, but {} gives {} credentials",
                self.inner.describe(),
                source.username
            )));
        }
        let body = request_body(&self.delegates, self.lifetime);
        let resp = self
            .http
            .post_json(&self.url, source.password.expose(), body)
            .await
            .map_err(|source| SourceError::Http { step: STEP, source })?;
        token_from(&self.url, &resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: StatusCode, body: &[u8]) -> Response {
        Response { status, headers: HeaderMap::new(), body: body.to_vec().into() }
    }
    use hyper::{HeaderMap, StatusCode};

    #[test]
    fn request_body_names_scope_lifetime_and_delegates() {
        let body: serde_json::Value = serde_json::from_str(&request_body(&[], Duration::from_secs(3600))).unwrap();
        assert_eq!(body, serde_json::json!({"scope": [CLOUD_PLATFORM_SCOPE], "lifetime": "3600s"}));

        let delegates =
            vec![delegate_name("a@p.iam.gserviceaccount.com"), delegate_name("projects/-/serviceAccounts/b@p")];
        let body: serde_json::Value =
            serde_json::from_str(&request_body(&delegates, Duration::from_secs(600))).unwrap();
        assert_eq!(body["lifetime"], "600s");
        assert_eq!(
            body["delegates"],
            serde_json::json!([
                "projects/-/serviceAccounts/a@p.iam.gserviceaccount.com",
                "projects/-/serviceAccounts/b@p"
            ])
        );
    }

    #[test]
    fn target_comes_from_the_url_and_must_be_a_service_account_email() {
        let email = |s: &str| s.parse::<ServiceAccountEmail>().ok();
        let url = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/puller@project-1.iam.gserviceaccount.com:generateAccessToken";
        assert_eq!(target_of(url), email("puller@project-1.iam.gserviceaccount.com"));
        let local = "http://127.0.0.1:9/v1/projects/-/serviceAccounts/123-compute@developer.gserviceaccount.com:generateAccessToken";
        assert_eq!(target_of(local), email("123-compute@developer.gserviceaccount.com"));
        assert_eq!(target_of("http://127.0.0.1:9/v1/projects/-/serviceAccounts/x@y:generateAccessToken"), None);
        assert_eq!(target_of("https://h/v1/projects/-/serviceAccounts/a@b.c#x:generateAccessToken"), None);
        assert_eq!(target_of("https://example.com/v1/projects/-/serviceAccounts/x@y:signJwt"), None);
        assert_eq!(target_of("ftp://h/v1/projects/-/serviceAccounts/x@y:generateAccessToken"), None);
        assert_eq!(target_of("https://h/v1/projects/-/serviceAccounts/:generateAccessToken"), None);
    }

    #[test]
    fn flag_endpoint_builds_the_api_url() {
        let http = HttpClient::new(Duration::from_secs(1)).unwrap();
        let inner: Arc<dyn CredentialSource> = Arc::new(super::super::MetadataServer::from_env(http.clone()));
        let target: ServiceAccountEmail = "puller@project-1.iam.gserviceaccount.com".parse().unwrap();
        let endpoint: Endpoint = "http://127.0.0.1:8/".parse().unwrap();
        let imp = Impersonated::new(inner, &target, &[], DEFAULT_TOKEN_LIFETIME, &endpoint, http);
        assert_eq!(imp.url, format!("http://127.0.0.1:8/v1/projects/-/serviceAccounts/{target}:generateAccessToken"));
        assert!(imp.describe().ends_with(&format!(", impersonating {target}")), "{}", imp.describe());
    }

    fn imp_file(source_credentials: serde_json::Value) -> String {
        serde_json::json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/puller@project-1.iam.gserviceaccount.com:generateAccessToken",
            "delegates": ["d@p.iam.gserviceaccount.com"],
            "source_credentials": source_credentials,
        })
        .to_string()
    }

    #[test]
    fn impersonated_service_account_files_build_from_memory() {
        let http = HttpClient::new(Duration::from_secs(1)).unwrap();
        let path = Path::new("/home/u/.config/gcloud/application_default_credentials.json");
        let user = serde_json::json!({"type": "authorized_user", "client_id": "i", "client_secret": "s", "refresh_token": "r"});
        let source = from_impersonated_file(path, &imp_file(user), DEFAULT_TOKEN_LIFETIME, &http).unwrap();
        assert_eq!(
            source.describe(),
            format!(
                "authorized_user file {} (source_credentials), impersonating puller@project-1.iam.gserviceaccount.com",
                path.display()
            )
        );

        let err =
            |text: &str| from_impersonated_file(path, text, DEFAULT_TOKEN_LIFETIME, &http).err().unwrap().to_string();
        let key = serde_json::json!({"type": "service_account", "client_email": "a@p.iam.gserviceaccount.com"});
        assert_eq!(
            err(&imp_file(key)),
            format!("key file {} (source_credentials): missing field `private_key`; download a new JSON key for the service account", path.display())
        );
        assert!(err(&imp_file(serde_json::json!({"type": "external_account"})))
            .contains("source_credentials of type \"external_account\" are not supported"));
        assert!(err(&imp_file(serde_json::json!({}))).contains("source_credentials has no field `type`"));
        assert!(err(r#"{"type":"impersonated_service_account","source_credentials":{}}"#)
            .contains("missing field `service_account_impersonation_url`"));
        assert!(err(r#"{"type":"impersonated_service_account","service_account_impersonation_url":"https://x/y"}"#)
            .contains("missing field `source_credentials`"));
    }

    #[test]
    fn responses_are_validated() {
        let ok = |body: &str| token_from("u", &answer(StatusCode::OK, body.as_bytes()));
        let in_an_hour = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600)).to_string();
        let cred = ok(&format!(r#"{{"accessToken":"ya29.imp","expireTime":"{in_an_hour}"}}"#)).unwrap();
        assert_eq!(cred.username, OAUTH_USERNAME);
        assert_eq!(cred.password.expose(), "ya29.imp");
        assert_eq!(cred.expires_at, Some(humantime::parse_rfc3339(&in_an_hour).unwrap()));
        // Further than Google ever issues: taken as the 12 h maximum.
        let far = ok(r#"{"accessToken":"t","expireTime":"2999-01-02T03:04:05Z"}"#).unwrap().expires_at.unwrap();
        let left = far.duration_since(SystemTime::now()).unwrap();
        assert!(left <= MAX_TOKEN_LIFETIME && left > MAX_TOKEN_LIFETIME - Duration::from_secs(60), "{left:?}");
        assert!(ok(r#"{"accessToken":"t","expireTime":"2999-01-02T03:04:05.123456Z"}"#).is_ok());
        assert!(ok(r#"{"accessToken":"t","expireTime":"2999-01-02T03:04:05+00:00"}"#).is_ok());

        for body in [
            "{",
            r#"{"expireTime":"2999-01-02T03:04:05Z"}"#,
            r#"{"accessToken":"t"}"#,
            r#"{"accessToken":"t","expireTime":"tomorrow"}"#,
            r#"{"accessToken":"t","expireTime":"2000-01-01T00:00:00Z"}"#,
        ] {
            let err = ok(body).unwrap_err();
            assert!(matches!(err, SourceError::BadResponse { .. }), "{body}: {err}");
            assert!(!err.to_string().contains("\"t\""), "{err}");
        }
    }

    #[test]
    fn refusals_carry_googles_text_and_a_hint() {
        let body = br#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).","status":"PERMISSION_DENIED"}}"#;
        let err = token_from("https://iam/x", &answer(StatusCode::FORBIDDEN, body)).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("impersonating the service account: https://iam/x answered 403: PERMISSION_DENIED: Permission 'iam.serviceAccounts.getAccessToken' denied"), "{text}");
        assert!(text.contains("roles/iam.serviceAccountTokenCreator"), "{text}");
        assert!(!err.is_retryable());
        assert_eq!(err.metric_label(), "endpoint_4xx");

        let err = token_from("u", &answer(StatusCode::SERVICE_UNAVAILABLE, b"")).unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(err.metric_label(), "endpoint_5xx");
    }
}
