//! AWS credentials (an access key, its secret and, for temporary ones, a
//! session token) and the sources that do not need STS: static keys from
//! the environment, the EKS Pod Identity agent (the container credentials
//! endpoint) and the EC2 instance metadata service (IMDSv2).

use std::path::PathBuf;
use std::time::SystemTime;

use serde::Deserialize;

use super::{bad_response, http_error, parse_time};
use crate::http::HttpClient;
use crate::secret::Secret;
use crate::source::SourceError;

/// One set of AWS credentials. The secret key and the session token never
/// leave their wrappers but to be signed with or sent to AWS.
#[derive(Clone, Debug)]
pub(crate) struct AwsCredentials {
    /// `AKIA...` (long-term) or `ASIA...` (temporary): not a secret, it
    /// names the key in CloudTrail and in AWS's errors.
    pub access_key_id: String,
    pub secret_access_key: Secret<String>,
    pub session_token: Option<Secret<String>>,
    /// When temporary credentials stop working.
    pub expires_at: Option<SystemTime>,
}

/// Somewhere AWS credentials come from. Each call fetches fresh ones: the
/// ECR token minted with them lives 12 h, far longer than any credentials
/// cache would help.
#[async_trait::async_trait]
pub(crate) trait AwsCredentialSource: Send + Sync {
    /// For logs: which source, and which role or key (never the secret).
    fn describe(&self) -> String;

    /// Fresh credentials.
    async fn credentials(&self) -> Result<AwsCredentials, SourceError>;
}

/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
pub(crate) struct StaticKeys(pub AwsCredentials);

#[async_trait::async_trait]
impl AwsCredentialSource for StaticKeys {
    fn describe(&self) -> String {
        format!("AWS access key {} from the environment", self.0.access_key_id)
    }

    async fn credentials(&self) -> Result<AwsCredentials, SourceError> {
        Ok(self.0.clone())
    }
}

/// The JSON both the container credentials endpoint and IMDS answer.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialsJson {
    access_key_id: Option<String>,
    secret_access_key: Option<Secret<String>>,
    token: Option<Secret<String>>,
    expiration: Option<String>,
}

impl CredentialsJson {
    fn parse(step: &'static str, url: &str, body: &[u8]) -> Result<AwsCredentials, SourceError> {
        let bad = |p: &str| bad_response(step, url, p);
        let json: CredentialsJson = serde_json::from_slice(body).map_err(|_| bad("not the expected JSON"))?;
        let access_key_id = json.access_key_id.filter(|k| !k.is_empty()).ok_or_else(|| bad("no AccessKeyId"))?;
        let secret_access_key =
            json.secret_access_key.filter(|k| !k.expose().is_empty()).ok_or_else(|| bad("no SecretAccessKey"))?;
        let expires_at = match json.expiration {
            Some(t) => Some(parse_time(&t).ok_or_else(|| bad("Expiration is not an RFC 3339 time"))?),
            None => None,
        };
        Ok(AwsCredentials { access_key_id, secret_access_key, session_token: json.token, expires_at })
    }
}

/// EKS Pod Identity: the agent's endpoint
/// (`AWS_CONTAINER_CREDENTIALS_FULL_URI`) answers the credentials of the
/// pod's association, given the projected token of
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` as the `Authorization` header.
pub(crate) struct ContainerEndpoint {
    pub url: String,
    pub token_file: Option<PathBuf>,
    pub http: HttpClient,
}

#[async_trait::async_trait]
impl AwsCredentialSource for ContainerEndpoint {
    fn describe(&self) -> String {
        format!("container credentials endpoint {} (EKS Pod Identity)", self.url)
    }

    async fn credentials(&self) -> Result<AwsCredentials, SourceError> {
        const STEP: &str = "EKS Pod Identity credentials";
        // The kubelet rotates the token: read it at every call.
        let token = match &self.token_file {
            Some(path) => Some(Secret::new(read_token(path, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")?)),
            None => None,
        };
        let headers: Vec<(&str, &str)> =
            token.as_ref().map(|t| vec![("authorization", t.expose().as_str())]).unwrap_or_default();
        let resp = self.http.get(&self.url, &headers).await.map_err(|e| http_error(STEP, e))?;
        if !resp.status.is_success() {
            return Err(super::json_error(STEP, &self.url, &resp));
        }
        CredentialsJson::parse(STEP, &self.url, &resp.body)
    }
}

/// Reads a projected token file; a missing or unreadable one is retried
/// (the kubelet rewrites it), and the message names the variable.
pub(crate) fn read_token(path: &std::path::Path, var: &'static str) -> Result<String, SourceError> {
    let problem = |problem: String| SourceError::TokenFile { var, path: path.to_path_buf(), problem };
    let token = std::fs::read_to_string(path).map_err(|e| problem(crate::source::unreadable(&e)))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(problem("the file is empty".into()));
    }
    Ok(token.to_string())
}

/// IMDSv2: a session token from `PUT /latest/api/token`, then the instance
/// profile's role name and its credentials.
pub(crate) struct InstanceMetadata {
    /// `http://169.254.169.254`, or `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub endpoint: String,
    pub http: HttpClient,
}

#[async_trait::async_trait]
impl AwsCredentialSource for InstanceMetadata {
    fn describe(&self) -> String {
        format!("EC2 instance metadata {} (IMDSv2)", self.endpoint)
    }

    async fn credentials(&self) -> Result<AwsCredentials, SourceError> {
        // The chain's last resort: its errors say so, or a pod that was
        // meant to use IRSA would see only "instance metadata ... 403".
        const STEP: &str = "EC2 instance metadata (the last AWS source tried: no AWS_ACCESS_KEY_ID, \
                            AWS_ROLE_ARN or AWS_CONTAINER_CREDENTIALS_FULL_URI is set)";
        let token_url = format!("{}/latest/api/token", self.endpoint);
        let resp = self
            .http
            .call(hyper::Method::PUT, &token_url, &[("x-aws-ec2-metadata-token-ttl-seconds", "21600")], Vec::new())
            .await
            .map_err(|e| http_error(STEP, e))?;
        if !resp.status.is_success() {
            return Err(super::status_error(STEP, &token_url, &resp));
        }
        let token = Secret::new(String::from_utf8_lossy(&resp.body).trim().to_string());
        let header = [("x-aws-ec2-metadata-token", token.expose().as_str())];
        let roles_url = format!("{}/latest/meta-data/iam/security-credentials/", self.endpoint);
        let resp = self.http.get(&roles_url, &header).await.map_err(|e| http_error(STEP, e))?;
        if resp.status == hyper::StatusCode::NOT_FOUND {
            return Err(SourceError::NoCredentials {
                cloud: "AWS",
                detail: format!("{STEP}: the instance has no IAM instance profile (IMDS lists no role)"),
            });
        }
        if !resp.status.is_success() {
            return Err(super::status_error(STEP, &roles_url, &resp));
        }
        let body = String::from_utf8_lossy(&resp.body);
        let role = body.lines().next().map(str::trim).filter(|r| !r.is_empty() && !r.contains('/'));
        let role = role.ok_or_else(|| bad_response(STEP, &roles_url, "no role name"))?.to_string();
        let url = format!("{roles_url}{role}");
        let resp = self.http.get(&url, &header).await.map_err(|e| http_error(STEP, e))?;
        if !resp.status.is_success() {
            return Err(super::status_error(STEP, &url, &resp));
        }
        CredentialsJson::parse(STEP, &url, &resp.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_json_is_validated_and_redacted() {
        let ok = br#"{"Code":"Success","AccessKeyId":"ASIAX","SecretAccessKey":"s3cr3t","Token":"tok","Expiration":"2030-01-01T00:00:00Z"}"#;
        let c = CredentialsJson::parse("s", "u", ok).unwrap();
        assert_eq!((c.access_key_id.as_str(), c.secret_access_key.expose().as_str()), ("ASIAX", "s3cr3t"));
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t") && !debug.contains("tok\""), "{debug}");
        for bad in
            [&b"{"[..], br#"{"AccessKeyId":"A"}"#, br#"{"AccessKeyId":"A","SecretAccessKey":"s","Expiration":"soon"}"#]
        {
            assert!(matches!(CredentialsJson::parse("s", "u", bad), Err(SourceError::BadResponse { .. })));
        }
    }
}
