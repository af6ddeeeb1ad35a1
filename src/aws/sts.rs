//! AWS STS: `AssumeRoleWithWebIdentity` (IRSA: the pod's projected
//! ServiceAccount token for a role's credentials, unsigned) and `AssumeRole`
//! (a role on top of any credentials, signed: cross-account). STS answers
//! XML; regcred reads the few elements it needs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::credentials::{read_token, AwsCredentialSource, AwsCredentials};
use super::sigv4::{self, Scope, Signable};
use super::{bad_response, http_error, parse_time};
use crate::http::{form, HttpClient, Response};
use crate::secret::Secret;
use crate::source::SourceError;

/// The STS API version both calls name.
const VERSION: &str = "2011-06-15";

/// The session name regcred's roles appear under in CloudTrail.
const SESSION_NAME: &str = "regcred";

/// Where STS is: its URL and the region to sign for.
#[derive(Clone, Debug)]
pub(crate) struct StsEndpoint {
    pub url: String,
    pub region: String,
}

/// `AssumeRoleWithWebIdentity` for a role: IRSA (`AWS_ROLE_ARN` and
/// `AWS_WEB_IDENTITY_TOKEN_FILE`), or a pod's token handed to the kubelet
/// plugin.
pub(crate) struct WebIdentity {
    pub role_arn: String,
    pub token: WebIdentityToken,
    pub sts: StsEndpoint,
    pub http: HttpClient,
}

/// Where the web identity token comes from.
pub(crate) enum WebIdentityToken {
    /// A projected token file, read at every call (the kubelet rotates it).
    File(PathBuf),
    /// Handed over in memory: the pod's service account token that the
    /// kubelet passes to a credential provider (KEP-4412).
    Given(Secret<String>),
}

#[async_trait::async_trait]
impl AwsCredentialSource for WebIdentity {
    fn describe(&self) -> String {
        match &self.token {
            WebIdentityToken::File(file) => {
                format!("web identity token {} for role {} (IRSA)", file.display(), self.role_arn)
            }
            WebIdentityToken::Given(_) => format!("the pod's service account token for role {}", self.role_arn),
        }
    }

    async fn credentials(&self) -> Result<AwsCredentials, SourceError> {
        const STEP: &str = "STS AssumeRoleWithWebIdentity";
        let token = match &self.token {
            WebIdentityToken::File(file) => Secret::new(read_token(file, "AWS_WEB_IDENTITY_TOKEN_FILE")?),
            WebIdentityToken::Given(token) => token.clone(),
        };
        let body = form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", VERSION),
            ("RoleArn", &self.role_arn),
            ("RoleSessionName", SESSION_NAME),
            ("WebIdentityToken", token.expose()),
        ]);
        let resp = self.http.post_form(&self.sts.url, body, None).await.map_err(|e| http_error(STEP, e))?;
        credentials_from(STEP, &self.sts.url, resp)
    }
}

/// A role assumed with the credentials of `base` (`--aws-role-arn`).
pub(crate) struct AssumeRole {
    pub role_arn: String,
    pub base: Arc<dyn AwsCredentialSource>,
    pub sts: StsEndpoint,
    pub http: HttpClient,
}

#[async_trait::async_trait]
impl AwsCredentialSource for AssumeRole {
    fn describe(&self) -> String {
        format!("role {} assumed with {}", self.role_arn, self.base.describe())
    }

    async fn credentials(&self) -> Result<AwsCredentials, SourceError> {
        const STEP: &str = "STS AssumeRole";
        let base = self.base.credentials().await?;
        let body = form(&[
            ("Action", "AssumeRole"),
            ("Version", VERSION),
            ("RoleArn", &self.role_arn),
            ("RoleSessionName", SESSION_NAME),
        ]);
        let host = super::authority(&self.sts.url);
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let headers = sigv4::sign(
            &base,
            &Scope { service: "sts", region: &self.sts.region },
            &Signable {
                method: "POST",
                path: "/",
                query: "",
                headers: &[("content-type", content_type), ("host", &host)],
                body: body.as_bytes(),
            },
            SystemTime::now(),
        );
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let resp = self
            .http
            .call(hyper::Method::POST, &self.sts.url, &headers, body.into_bytes())
            .await
            .map_err(|e| http_error(STEP, e))?;
        credentials_from(STEP, &self.sts.url, resp)
    }
}

/// The `<Credentials>` of an STS answer, or its `<ErrorResponse>`.
fn credentials_from(step: &'static str, url: &str, resp: Response) -> Result<AwsCredentials, SourceError> {
    let body = String::from_utf8_lossy(&resp.body);
    if !resp.status.is_success() {
        return Err(xml_error(step, url, &resp, &body));
    }
    let bad = |p: &str| bad_response(step, url, p);
    let credentials = element(&body, "Credentials").ok_or_else(|| bad("no Credentials element"))?;
    let field = |name: &str| element(credentials, name).map(unescape).filter(|v| !v.is_empty());
    let access_key_id = field("AccessKeyId").ok_or_else(|| bad("no AccessKeyId"))?;
    let secret_access_key = Secret::new(field("SecretAccessKey").ok_or_else(|| bad("no SecretAccessKey"))?);
    let session_token = Some(Secret::new(field("SessionToken").ok_or_else(|| bad("no SessionToken"))?));
    let expiration = field("Expiration").ok_or_else(|| bad("no Expiration"))?;
    let expires_at = Some(parse_time(&expiration).ok_or_else(|| bad("Expiration is not an RFC 3339 time"))?);
    Ok(AwsCredentials { access_key_id, secret_access_key, session_token, expires_at })
}

/// STS's `<ErrorResponse><Error><Type/><Code/><Message/></Error>`.
fn xml_error(step: &'static str, url: &str, resp: &Response, body: &str) -> SourceError {
    let code = element(body, "Code").map(unescape);
    let Some(code) = code else {
        return super::status_error(step, url, resp);
    };
    let message = element(body, "Message").map(unescape).unwrap_or_default();
    let status = resp.status.as_u16();
    SourceError::Refused {
        step,
        url: url.to_string(),
        status,
        retryable: crate::http::is_retryable_status(status)
            || super::is_throttling(&code)
            || code == "IDPCommunicationError",
        code,
        message,
        retry_after: crate::http::retry_after(&resp.headers),
    }
}

/// The text of the first `<name>` element (no attributes: STS writes none
/// on the elements read here).
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + end].trim())
}

/// XML's five predefined entities.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::http::test_response as resp;

    #[test]
    fn reads_credentials_and_errors() {
        let ok = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult><Credentials>
    <SessionToken>FwoG&amp;x</SessionToken><SecretAccessKey>wJal</SecretAccessKey>
    <Expiration>2030-10-24T23:00:23Z</Expiration><AccessKeyId>ASIAEXAMPLE</AccessKeyId>
  </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"#;
        let c = credentials_from("s", "u", resp(200, ok)).unwrap();
        assert_eq!(c.access_key_id, "ASIAEXAMPLE");
        assert_eq!(c.session_token.unwrap().expose(), "FwoG&x");
        let err = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>
  <Code>InvalidIdentityToken</Code><Message>Incorrect token audience</Message></Error><RequestId>r</RequestId></ErrorResponse>"#;
        let e = credentials_from("s", "u", resp(400, err)).unwrap_err();
        assert_eq!(e.to_string(), "s: u answered 400 InvalidIdentityToken: Incorrect token audience");
        assert!(!e.is_retryable());
        let throttled =
            "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>";
        assert!(credentials_from("s", "u", resp(400, throttled)).unwrap_err().is_retryable());
        assert!(matches!(credentials_from("s", "u", resp(200, "<x/>")), Err(SourceError::BadResponse { .. })));
    }
}
