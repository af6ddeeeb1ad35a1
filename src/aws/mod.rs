//! Amazon Web Services: the credentials regcred finds (static keys, IRSA,
//! EKS Pod Identity, instance metadata, a role assumed on top) and the ECR
//! token sources that use them, with a hand-written SigV4 signer rather
//! than the AWS SDK (the SDK's cost is measured in the README).
//!
//! Order of the credentials, as the AWS SDKs' default chain has it, but
//! without shared config/credentials profiles (left out: a cluster has no
//! `~/.aws`): `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (a key set
//! deliberately wins, as in the SDKs), then IRSA (`AWS_ROLE_ARN` +
//! `AWS_WEB_IDENTITY_TOKEN_FILE`), then EKS Pod Identity
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI`), then IMDSv2.

mod credentials;
mod ecr;
mod sigv4;
mod sts;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::http::{HttpClient, HttpError, Response};
use crate::registry::EcrRegistry;
use crate::secret::Secret;
use crate::source::{CredentialSource, Endpoint, SourceError};

pub(crate) use credentials::AwsCredentialSource;
use credentials::{AwsCredentials, ContainerEndpoint, InstanceMetadata, StaticKeys};
use ecr::{Api, EcrSource};
use sts::{AssumeRole, StsEndpoint, WebIdentity, WebIdentityToken};

/// IMDS's link-local address.
const IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// ECR Public's API lives in us-east-1 only.
const ECR_PUBLIC_REGION: &str = "us-east-1";

/// The AWS flags. The endpoint overrides read AWS's own environment
/// variables (as the SDKs and the AWS CLI do), not `REGCRED_*` ones.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub(crate) struct Args {
    /// IAM role to assume (STS AssumeRole) with the AWS credentials found
    /// (static keys, IRSA, EKS Pod Identity, instance metadata), for ECR
    /// registries of another account. The found identity needs sts:AssumeRole on it.
    #[arg(long, env = "REGCRED_AWS_ROLE_ARN", value_name = "ARN")]
    aws_role_arn: Option<RoleArn>,

    /// ECR API to call instead of https://api.ecr.REGION.amazonaws.com.
    #[arg(long, env = "AWS_ENDPOINT_URL_ECR", value_name = "URL")]
    aws_ecr_endpoint: Option<Endpoint>,

    /// ECR Public API to call instead of https://api.ecr-public.us-east-1.amazonaws.com.
    #[arg(long, env = "AWS_ENDPOINT_URL_ECR_PUBLIC", value_name = "URL")]
    aws_ecr_public_endpoint: Option<Endpoint>,

    /// STS to call instead of https://sts.REGION.amazonaws.com (REGION from
    /// AWS_REGION; the global endpoint without it).
    #[arg(long, env = "AWS_ENDPOINT_URL_STS", value_name = "URL")]
    aws_sts_endpoint: Option<Endpoint>,

    /// The EC2 instance metadata service (IMDSv2).
    #[arg(long, env = "AWS_EC2_METADATA_SERVICE_ENDPOINT", value_name = "URL", default_value = IMDS_ENDPOINT)]
    aws_imds_endpoint: Endpoint,
}

impl Args {
    /// The AWS settings.
    pub(crate) fn into_settings(self) -> Settings {
        Settings {
            role_arn: self.aws_role_arn,
            ecr_endpoint: self.aws_ecr_endpoint,
            ecr_public_endpoint: self.aws_ecr_public_endpoint,
            sts_endpoint: self.aws_sts_endpoint,
            imds_endpoint: self.aws_imds_endpoint,
        }
    }
}

/// Where AWS credentials and tokens come from, as the flags say.
#[derive(Clone, Debug)]
pub struct Settings {
    role_arn: Option<RoleArn>,
    ecr_endpoint: Option<Endpoint>,
    ecr_public_endpoint: Option<Endpoint>,
    sts_endpoint: Option<Endpoint>,
    imds_endpoint: Endpoint,
}

/// An IAM role ARN: `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`, with
/// IAM's own rules: partition `aws`, `aws-cn` or `aws-us-gov`, a 12-digit
/// account, a role name of `[A-Za-z0-9+=,.@_-]` (at most 64), a path of
/// printable ASCII, at most 2048 bytes in all (STS's limit). The same type
/// for the flags, `AWS_ROLE_ARN` and a pod's ServiceAccount annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RoleArn(String);

/// STS's limit on `RoleArn`.
const MAX_ROLE_ARN: usize = 2048;

impl FromStr for RoleArn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name_ok = |n: &str| {
            (1..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        };
        // `[PATH/]NAME`: no empty path segment, the name by IAM's rule.
        let role_ok = |role: &str| {
            role.split('/').all(|segment| !segment.is_empty()) && role.rsplit('/').next().is_some_and(name_ok)
        };
        let ok = s.len() <= MAX_ROLE_ARN
            && s.bytes().all(|b| b.is_ascii_graphic())
            && s.strip_prefix("arn:").and_then(|r| r.split_once(":iam::")).is_some_and(|(partition, rest)| {
                matches!(partition, "aws" | "aws-cn" | "aws-us-gov")
                    && rest.split_once(":role/").is_some_and(|(account, role)| {
                        account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && role_ok(role)
                    })
            });
        if ok {
            Ok(RoleArn(s.to_string()))
        } else {
            Err("expected an IAM role ARN such as arn:aws:iam::123456789012:role/registry-puller".into())
        }
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The region STS is signed for and, without an override, reached in.
fn sts_endpoint(settings: &Settings) -> StsEndpoint {
    let region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION"));
    let url = match (&settings.sts_endpoint, &region) {
        (Some(e), _) => e.to_string(),
        (None, Some(r)) if r.starts_with("cn-") => format!("https://sts.{r}.amazonaws.com.cn"),
        (None, Some(r)) => format!("https://sts.{r}.amazonaws.com"),
        (None, None) => "https://sts.amazonaws.com".into(),
    };
    StsEndpoint { url, region: region.unwrap_or_else(|| "us-east-1".into()) }
}

/// Finds the AWS credentials, in the order the module documents; no
/// request is made until the first mint.
pub(crate) fn discover(settings: &Settings, http: &HttpClient) -> Result<Arc<dyn AwsCredentialSource>, SourceError> {
    let base = discover_base(settings, http)?;
    Ok(match &settings.role_arn {
        Some(role) => {
            Arc::new(AssumeRole { role_arn: role.to_string(), base, sts: sts_endpoint(settings), http: http.clone() })
        }
        None => base,
    })
}

fn discover_base(settings: &Settings, http: &HttpClient) -> Result<Arc<dyn AwsCredentialSource>, SourceError> {
    let missing = |detail: &str| SourceError::NoCredentials { cloud: "AWS", detail: detail.to_string() };
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret)) => {
            return Ok(Arc::new(StaticKeys(AwsCredentials {
                access_key_id,
                secret_access_key: Secret::new(secret),
                session_token: env("AWS_SESSION_TOKEN").map(Secret::new),
                expires_at: None,
            })))
        }
        (Some(_), None) => return Err(missing("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")),
        (None, Some(_)) => return Err(missing("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not")),
        (None, None) => {}
    }
    match (env("AWS_ROLE_ARN"), env("AWS_WEB_IDENTITY_TOKEN_FILE")) {
        (Some(role_arn), Some(file)) => {
            return Ok(Arc::new(WebIdentity {
                role_arn: role_arn.parse::<RoleArn>().map_err(|e| missing(&format!("AWS_ROLE_ARN: {e}")))?.to_string(),
                token: WebIdentityToken::File(PathBuf::from(file)),
                sts: sts_endpoint(settings),
                http: http.clone(),
            }))
        }
        (Some(_), None) => {
            return Err(missing("AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not (IRSA needs both)"))
        }
        (None, Some(_)) => {
            return Err(missing("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not (IRSA needs both)"))
        }
        (None, None) => {}
    }
    if let Some(url) = env("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        if !crate::http::is_http_url(&url) {
            return Err(missing("AWS_CONTAINER_CREDENTIALS_FULL_URI is not an http(s) URL"));
        }
        let token_file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from);
        return Ok(Arc::new(ContainerEndpoint { url, token_file, http: http.clone() }));
    }
    if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(missing(
            "no AWS_ACCESS_KEY_ID, no IRSA (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), no EKS Pod Identity \
             (AWS_CONTAINER_CREDENTIALS_FULL_URI), and AWS_EC2_METADATA_DISABLED=true",
        ));
    }
    Ok(Arc::new(InstanceMetadata { endpoint: settings.imds_endpoint.to_string(), http: http.clone() }))
}

/// A pod's identity, for the kubelet plugin: `token` (the pod's service
/// account token) exchanged at STS for `role` (the role its ServiceAccount
/// names). Never the node's credentials, nor `--aws-role-arn` on top: the
/// pod's role is the identity it pulls as.
pub(crate) fn for_pod(
    role: &RoleArn,
    token: Secret<String>,
    settings: &Settings,
    http: &HttpClient,
) -> Arc<dyn AwsCredentialSource> {
    Arc::new(WebIdentity {
        role_arn: role.to_string(),
        token: WebIdentityToken::Given(token),
        sts: sts_endpoint(settings),
        http: http.clone(),
    })
}

/// The token source of one private ECR registry.
pub(crate) fn ecr_source(
    registry: &EcrRegistry,
    aws: Arc<dyn AwsCredentialSource>,
    settings: &Settings,
    http: &HttpClient,
) -> Arc<dyn CredentialSource> {
    let url = settings.ecr_endpoint.as_ref().map_or_else(|| registry.api_endpoint(), Endpoint::to_string);
    Arc::new(EcrSource { api: Api::Private, url, region: registry.region.clone(), aws, http: http.clone() })
}

/// The token source of ECR Public.
pub(crate) fn ecr_public_source(
    aws: Arc<dyn AwsCredentialSource>,
    settings: &Settings,
    http: &HttpClient,
) -> Arc<dyn CredentialSource> {
    let url = settings
        .ecr_public_endpoint
        .as_ref()
        .map_or_else(|| format!("https://api.ecr-public.{ECR_PUBLIC_REGION}.amazonaws.com"), Endpoint::to_string);
    Arc::new(EcrSource { api: Api::Public, url, region: ECR_PUBLIC_REGION.into(), aws, http: http.clone() })
}

/// `HOST[:PORT]` of an http(s) URL: the `host` header a signature covers.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    // The default port is not part of the Host header HTTP clients send.
    let authority = match url.starts_with("https://") {
        true => authority.strip_suffix(":443").unwrap_or(authority),
        false => authority.strip_suffix(":80").unwrap_or(authority),
    };
    authority.to_ascii_lowercase()
}

/// AWS's throttling error codes: retried, like a 429.
fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" | "RequestLimitExceeded" | "RequestThrottled"
    )
}

fn http_error(step: &'static str, source: HttpError) -> SourceError {
    SourceError::Http { step, source }
}

fn bad_response(step: &'static str, url: &str, problem: &str) -> SourceError {
    SourceError::BadResponse { step, url: url.to_string(), problem: problem.to_string() }
}

/// A refusal without a body regcred can read: its status alone.
fn status_error(step: &'static str, url: &str, resp: &Response) -> SourceError {
    SourceError::Endpoint {
        step,
        url: url.to_string(),
        status: resp.status.as_u16(),
        message: resp.status.canonical_reason().unwrap_or("error").to_string(),
        retry_after: crate::http::retry_after(&resp.headers),
    }
}

/// An AWS JSON protocol error: `{"__type": "...#Code", "message": "..."}`
/// (or the `x-amzn-ErrorType` header), and the Pod Identity agent's
/// `{"code", "message"}`.
fn json_error(step: &'static str, url: &str, resp: &Response) -> SourceError {
    let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    let header =
        resp.headers.get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(|v| v.split(':').next().unwrap_or(v));
    let code = json["__type"].as_str().or(json["code"].as_str()).or(header);
    let Some(code) = code.map(|c| c.rsplit('#').next().unwrap_or(c).to_string()) else {
        return status_error(step, url, resp);
    };
    let message = json["message"].as_str().or(json["Message"].as_str()).unwrap_or("").to_string();
    let status = resp.status.as_u16();
    SourceError::Refused {
        step,
        url: url.to_string(),
        status,
        retryable: crate::http::is_retryable_status(status) || is_throttling(&code),
        code,
        message,
        retry_after: crate::http::retry_after(&resp.headers),
    }
}

/// An RFC 3339 time, as STS and IMDS write expirations.
fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_checked() {
        for good in [
            "arn:aws:iam::123456789012:role/puller",
            "arn:aws-cn:iam::123456789012:role/path/puller",
            "arn:aws-us-gov:iam::123456789012:role/a/b/ecr+pull=,.@_-1",
            &format!("arn:aws:iam::123456789012:role/{}", "n".repeat(64)),
        ] {
            assert_eq!(good.parse::<RoleArn>().unwrap().to_string(), good);
        }
        for bad in [
            "puller",
            "",
            "arn:aws:iam::12345:role/x",
            "arn:aws:iam::1234567890123:role/x",
            "arn:aws:iam::12345678901a:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/path/",
            "arn:aws:iam::123456789012:role//x",
            "arn:aws:s3:::b",
            "arn:aws-iso-x:iam::123456789012:role/x",
            "arn:aws:sts::123456789012:assumed-role/x/s",
            "arn:aws:iam:us-east-1:123456789012:role/x",
            "arn:aws:iam::123456789012:role/x&Action=AssumeRole",
            "arn:aws:iam::123456789012:role/x y",
            "arn:aws:iam::123456789012:role/x\n",
            "arn:aws:iam::123456789012:role/x\u{ff20}",
            "arn:aws:iam::123456789012:role/path\u{7f}/x",
            " arn:aws:iam::123456789012:role/x",
            &format!("arn:aws:iam::123456789012:role/{}", "n".repeat(65)),
            &format!("arn:aws:iam::123456789012:role/{}/x", "p".repeat(MAX_ROLE_ARN)),
        ] {
            assert!(bad.parse::<RoleArn>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_signed_host_is_the_one_sent() {
        assert_eq!(authority("https://api.ecr.us-east-1.amazonaws.com"), "api.ecr.us-east-1.amazonaws.com");
        assert_eq!(authority("http://127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(authority("https://h:443/x"), "h");
    }
}
