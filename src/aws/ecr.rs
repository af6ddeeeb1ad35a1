//! Amazon ECR's `GetAuthorizationToken`, private and public: the
//! credential sources of ECR hosts. The token is `base64("AWS:PASSWORD")`
//! and lives 12 hours; its `expiresAt` drives the refresh schedule.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use serde::Deserialize;

use super::credentials::AwsCredentialSource;
use super::sigv4::{self, Scope, Signable};
use super::{bad_response, http_error};
use crate::credential::Credential;
use crate::http::{HttpClient, Response};
use crate::source::{CredentialSource, SourceError};

/// The AWS JSON 1.1 protocol's content type.
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Which of the two APIs: they differ in target, signing name and the
/// shape of `authorizationData` (a list in ECR, one object in ECR Public).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Api {
    Private,
    Public,
}

impl Api {
    fn target(self) -> &'static str {
        match self {
            Api::Private => "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
            Api::Public => "SpencerFrontendService.GetAuthorizationToken",
        }
    }

    fn service(self) -> &'static str {
        match self {
            Api::Private => "ecr",
            Api::Public => "ecr-public",
        }
    }

    fn step(self) -> &'static str {
        match self {
            Api::Private => "ECR GetAuthorizationToken",
            Api::Public => "ECR Public GetAuthorizationToken",
        }
    }
}

/// Mints ECR authorization tokens with the credentials of `aws`.
pub(crate) struct EcrSource {
    pub api: Api,
    /// The API's URL (`https://api.ecr.REGION.amazonaws.com`, or an override).
    pub url: String,
    /// The region to sign for: the registry's (ECR Public: us-east-1).
    pub region: String,
    pub aws: Arc<dyn AwsCredentialSource>,
    pub http: HttpClient,
}

#[async_trait::async_trait]
impl CredentialSource for EcrSource {
    fn describe(&self) -> String {
        format!("{} at {} with {}", self.api.step(), self.url, self.aws.describe())
    }

    async fn credential(&self) -> Result<Credential, SourceError> {
        let step = self.api.step();
        let credentials = self.aws.credentials().await?;
        if let Some(t) = credentials.expires_at {
            tracing::debug!(access_key_id = %credentials.access_key_id, expires_at = %humantime::format_rfc3339_seconds(t), "AWS credentials");
        }
        let host = super::authority(&self.url);
        let headers = sigv4::sign(
            &credentials,
            &Scope { service: self.api.service(), region: &self.region },
            &Signable {
                method: "POST",
                path: "/",
                query: "",
                headers: &[("content-type", CONTENT_TYPE), ("host", &host), ("x-amz-target", self.api.target())],
                body: b"{}",
            },
            SystemTime::now(),
        );
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let resp = self
            .http
            .call(hyper::Method::POST, &self.url, &headers, b"{}".to_vec())
            .await
            .map_err(|e| http_error(step, e))?;
        token_from(self.api, &self.url, resp, SystemTime::now())
    }
}

/// One `authorizationData` entry.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: Option<crate::secret::Secret<String>>,
    expires_at: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrivateAnswer {
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicAnswer {
    authorization_data: AuthorizationData,
}

/// The registry credential in an answer, or the refusal it carries.
fn token_from(api: Api, url: &str, resp: Response, now: SystemTime) -> Result<Credential, SourceError> {
    let step = api.step();
    if !resp.status.is_success() {
        return Err(super::json_error(step, url, &resp));
    }
    let bad = |p: &str| bad_response(step, url, p);
    let data = match api {
        Api::Private => serde_json::from_slice::<PrivateAnswer>(&resp.body)
            .ok()
            .and_then(|a| a.authorization_data.into_iter().next()),
        Api::Public => serde_json::from_slice::<PublicAnswer>(&resp.body).ok().map(|a| a.authorization_data),
    };
    let data = data.ok_or_else(|| bad("not the expected JSON"))?;
    let token = data.authorization_token.ok_or_else(|| bad("no authorizationToken"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.expose().trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| bad("authorizationToken is not base64 text"))?;
    let (username, password) = decoded.split_once(':').ok_or_else(|| bad("authorizationToken is not USER:PASSWORD"))?;
    if username.is_empty() || password.is_empty() {
        return Err(bad("authorizationToken has an empty user or password"));
    }
    let expires_at = data.expires_at.ok_or_else(|| bad("no expiresAt"))?;
    Credential::expiring_at(username, password.to_string(), expires_at, now)
        .ok_or_else(|| bad("the token is already expired (expiresAt is not in the future)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::MAX_TOKEN_LIFETIME;
    use std::time::Duration;

    use crate::http::test_response as resp;

    const NOW: u64 = 1_800_000_000;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn reads_both_answer_shapes() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:pass word");
        let private = format!(
            r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{}.5,"proxyEndpoint":"https://x"}}]}}"#,
            NOW + 3600
        );
        let c = token_from(Api::Private, "u", resp(200, &private), now()).unwrap();
        assert_eq!((c.username.as_str(), c.password.expose().as_str()), ("AWS", "pass word"));
        assert_eq!(c.expires_at, Some(now() + Duration::from_millis(3_600_500)));
        let public = format!(r#"{{"authorizationData":{{"authorizationToken":"{token}","expiresAt":{}}}}}"#, NOW + 60);
        assert!(token_from(Api::Public, "u", resp(200, &public), now()).is_ok());
        assert!(token_from(Api::Private, "u", resp(200, &public), now()).is_err());
    }

    #[test]
    fn absurd_expiries_are_clamped_or_refused() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:p");
        let body =
            |exp: &str| format!(r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{exp}}}]}}"#);
        for huge in ["1e300", "9000000000000", "1.7976931348623157e308"] {
            let c = token_from(Api::Private, "u", resp(200, &body(huge)), now()).unwrap();
            assert_eq!(c.expires_at, Some(now() + MAX_TOKEN_LIFETIME), "{huge}");
        }
        for bad in ["0", "-1", &NOW.to_string(), "\"soon\"", "null"] {
            let e = token_from(Api::Private, "u", resp(200, &body(bad)), now()).unwrap_err();
            assert!(matches!(e, SourceError::BadResponse { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn refusals_carry_awss_code_and_throttling_is_retried() {
        let denied =
            r#"{"__type":"AccessDeniedException","message":"User: arn:aws:sts::1:assumed-role/r/s is not authorized"}"#;
        let e = token_from(Api::Private, "u", resp(400, denied), now()).unwrap_err();
        assert!(
            e.to_string().starts_with("ECR GetAuthorizationToken: u answered 400 AccessDeniedException: User:"),
            "{e}"
        );
        assert!(!e.is_retryable());
        let throttled = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
        assert!(token_from(Api::Private, "u", resp(400, throttled), now()).unwrap_err().is_retryable());
        assert!(token_from(Api::Private, "u", resp(500, "<html>"), now()).unwrap_err().is_retryable());
    }
}
