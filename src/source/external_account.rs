//! Workload identity federation: an `external_account` credentials file.
//!
//! A token from another identity provider (a Kubernetes projected service
//! account token, a CI system's OIDC token, ...) is exchanged at Google's
//! Security Token Service for a Google access token. When the file names a
//! `service_account_impersonation_url`, that token is then traded for a
//! service account's token (see [`super::impersonate`]).
//!
//! The subject token is read again at every mint: Kubernetes rotates
//! projected tokens, and a stale one would be refused.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use super::impersonate::{Impersonated, MAX_TOKEN_LIFETIME};
use super::{key_problem, oauth_token_from, Credential, CredentialSource, SourceError, CLOUD_PLATFORM_SCOPE};
use crate::http::HttpClient;
use crate::http::{form, form_escape, is_http_url};
use crate::secret::Secret;

/// Google's Security Token Service, when the file names none.
pub(crate) const DEFAULT_TOKEN_URL: &str = "https://sts.googleapis.com/v1/token";
const STS_STEP: &str = "exchanging the subject token at the Security Token Service";
const FETCH_STEP: &str = "fetching the subject token";
/// Subject tokens are a few kilobytes; anything this big is the wrong file.
const MAX_SUBJECT_TOKEN: u64 = 1 << 20;

#[derive(Deserialize)]
struct Fields {
    audience: Option<String>,
    subject_token_type: Option<String>,
    token_url: Option<String>,
    credential_source: Option<SourceFields>,
    service_account_impersonation_url: Option<String>,
    service_account_impersonation: Option<ImpersonationFields>,
    workforce_pool_user_project: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

#[derive(Deserialize)]
struct SourceFields {
    file: Option<String>,
    url: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    format: Option<FormatFields>,
    environment_id: Option<String>,
    executable: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct FormatFields {
    #[serde(rename = "type")]
    kind: Option<String>,
    subject_token_field_name: Option<String>,
}

#[derive(Deserialize)]
struct ImpersonationFields {
    token_lifetime_seconds: Option<u64>,
}

/// Where the subject token comes from.
enum SubjectSource {
    File(PathBuf),
    Url {
        url: String,
        headers: Vec<(String, Secret<String>)>,
    },
    /// Handed over in memory: the pod's service account token that the
    /// kubelet passes to the credential provider.
    Given(Secret<String>),
}

/// The subject token type of a Kubernetes service account token (a JWT).
pub(super) const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// How the subject token is stored.
#[derive(Debug, PartialEq, Eq)]
enum TokenFormat {
    /// The whole content, trimmed.
    Text,
    /// A string field of a JSON object.
    Json { field: String },
}

/// The Security Token Service exchange of an `external_account` file.
pub(crate) struct ExternalAccount {
    path: PathBuf,
    audience: String,
    subject_token_type: String,
    token_url: String,
    subject: SubjectSource,
    format: TokenFormat,
    /// Sent as `options={"userProject":...}` (workforce pools without a client id).
    user_project: Option<String>,
    /// `client_id` and `client_secret`, sent as HTTP basic authentication.
    client: Option<(String, Secret<String>)>,
    http: HttpClient,
}

/// Builds the source an `external_account` file describes: the exchange, and
/// on top of it the impersonation the file asks for, if any. `token_lifetime`
/// (the `--token-lifetime` flag) overrides the file's own lifetime.
pub(crate) fn from_file(
    path: &Path,
    text: &str,
    token_lifetime: Option<Duration>,
    http: &HttpClient,
) -> Result<Arc<dyn CredentialSource>, SourceError> {
    let fields: Fields = serde_json::from_str(text)
        .map_err(|e| key_problem(path, format!("not a valid external_account file ({e})")))?;
    let impersonation_url = fields.service_account_impersonation_url.clone().filter(|u| !u.is_empty());
    let file_lifetime = match fields.service_account_impersonation.as_ref().and_then(|i| i.token_lifetime_seconds) {
        Some(secs) if secs == 0 || Duration::from_secs(secs) > MAX_TOKEN_LIFETIME => {
            return Err(key_problem(
                path,
                format!(
                "field `service_account_impersonation.token_lifetime_seconds` is {secs}; it must be between 1 and {}",
                MAX_TOKEN_LIFETIME.as_secs()
            ),
            ))
        }
        secs => secs.map(Duration::from_secs),
    };
    let exchange = Arc::new(ExternalAccount::from_fields(path, fields, http.clone())?);
    // Fail at start-up, with exit code 2, if the token file is not there:
    // that is a mount or path mistake, not a passing failure.
    if let SubjectSource::File(_) = exchange.subject {
        exchange.read_subject_token_file()?;
    }
    let Some(url) = impersonation_url else {
        return Ok(exchange);
    };
    let lifetime = token_lifetime.or(file_lifetime).unwrap_or(super::impersonate::DEFAULT_TOKEN_LIFETIME);
    let imp = Impersonated::with_url(exchange, &url, &[], lifetime, http.clone()).ok_or_else(|| {
        key_problem(
            path,
            format!("field `service_account_impersonation_url` {url:?} is not a generateAccessToken URL for a service account email (https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/EMAIL:generateAccessToken)"),
        )
    })?;
    Ok(Arc::new(imp))
}

impl ExternalAccount {
    /// Exchanges a token given in memory (a pod's service account token) at
    /// `token_url` for the workload identity pool provider `audience`.
    pub(crate) fn with_token(audience: &str, token_url: &str, token: Secret<String>, http: HttpClient) -> Self {
        Self {
            path: PathBuf::from("the kubelet's request"),
            audience: audience.to_string(),
            subject_token_type: JWT_TOKEN_TYPE.to_string(),
            token_url: token_url.to_string(),
            subject: SubjectSource::Given(token),
            format: TokenFormat::Text,
            user_project: None,
            client: None,
            http,
        }
    }

    fn from_fields(path: &Path, f: Fields, http: HttpClient) -> Result<Self, SourceError> {
        let problem = |p: String| key_problem(path, p);
        let need = |v: Option<String>, name: &str| {
            v.filter(|s| !s.is_empty()).ok_or_else(|| {
                problem(format!(
                    "missing field `{name}`; create the file again with `gcloud iam workload-identity-pools create-cred-config`"
                ))
            })
        };
        let audience = need(f.audience, "audience")?;
        let subject_token_type = need(f.subject_token_type, "subject_token_type")?;
        let token_url = f.token_url.filter(|u| !u.is_empty()).unwrap_or_else(|| DEFAULT_TOKEN_URL.to_string());
        if !is_http_url(&token_url) {
            return Err(problem(format!("field `token_url` {token_url:?} is not an http(s) URL")));
        }
        let cs = f.credential_source.ok_or_else(|| problem("missing field `credential_source`".into()))?;
        if cs.environment_id.is_some() {
            return Err(problem(
                "credential_source.environment_id (AWS) is not supported; use a `file` or `url` credential source"
                    .into(),
            ));
        }
        if cs.executable.is_some() {
            return Err(problem(
                "credential_source.executable is not supported; use a `file` or `url` credential source".into(),
            ));
        }
        let subject = match (cs.file.filter(|s| !s.is_empty()), cs.url.filter(|s| !s.is_empty())) {
            (Some(file), None) => SubjectSource::File(PathBuf::from(file)),
            (None, Some(url)) if is_http_url(&url) => SubjectSource::Url {
                url,
                headers: cs.headers.unwrap_or_default().into_iter().map(|(k, v)| (k, Secret::new(v))).collect(),
            },
            (None, Some(url)) => {
                return Err(problem(format!("field `credential_source.url` {url:?} is not an http(s) URL")))
            }
            (Some(_), Some(_)) => {
                return Err(problem("credential_source has both `file` and `url`; keep one".into()));
            }
            (None, None) => return Err(problem("credential_source needs a `file` or a `url`".into())),
        };
        let format = match cs.format {
            None => TokenFormat::Text,
            Some(FormatFields { kind, subject_token_field_name }) => match kind.as_deref() {
                None | Some("") | Some("text") => TokenFormat::Text,
                Some("json") => TokenFormat::Json {
                    field: subject_token_field_name.filter(|s| !s.is_empty()).ok_or_else(|| {
                        problem("credential_source.format is json but has no `subject_token_field_name`".into())
                    })?,
                },
                Some(other) => {
                    return Err(problem(format!(
                        "credential_source.format.type {other:?} is not supported; use \"text\" or \"json\""
                    )))
                }
            },
        };
        let user_project = f.workforce_pool_user_project.filter(|s| !s.is_empty());
        if user_project.is_some() && !is_workforce_audience(&audience) {
            return Err(problem(
                "field `workforce_pool_user_project` is only for workforce pools (audience //iam.googleapis.com/locations/LOCATION/workforcePools/...)".into(),
            ));
        }
        let client = match (f.client_id.filter(|s| !s.is_empty()), f.client_secret.filter(|s| !s.is_empty())) {
            (Some(id), Some(secret)) => Some((id, Secret::new(secret))),
            _ => None,
        };
        Ok(Self {
            path: path.to_path_buf(),
            audience,
            subject_token_type,
            token_url,
            subject,
            format,
            user_project,
            client,
            http,
        })
    }

    fn origin(&self) -> String {
        match &self.subject {
            SubjectSource::File(p) => p.display().to_string(),
            SubjectSource::Url { url, .. } => url.clone(),
            SubjectSource::Given(_) => "the pod's service account token".to_string(),
        }
    }

    fn subject_problem(&self, problem: impl Into<String>) -> SourceError {
        SourceError::SubjectToken { origin: self.origin(), config: self.path.clone(), problem: problem.into() }
    }

    /// Reads the token file and extracts the token as the format says.
    fn read_subject_token_file(&self) -> Result<Secret<String>, SourceError> {
        let SubjectSource::File(file) = &self.subject else {
            unreachable!("only called for file sources");
        };
        let mut raw = Vec::new();
        std::fs::File::open(file)
            .and_then(|f| f.take(MAX_SUBJECT_TOKEN + 1).read_to_end(&mut raw))
            .map_err(|e| self.subject_problem(super::unreadable(&e)))?;
        if raw.len() as u64 > MAX_SUBJECT_TOKEN {
            return Err(self.subject_problem("larger than 1 MiB; this is not a token file"));
        }
        self.extract(&raw)
    }

    /// Applies the format to a file's content or a URL's answer. Problems
    /// are described without quoting the content, which is a credential.
    fn extract(&self, raw: &[u8]) -> Result<Secret<String>, SourceError> {
        let text = std::str::from_utf8(raw).map_err(|_| self.subject_problem("not UTF-8 text"))?.trim();
        let token = match &self.format {
            TokenFormat::Text => text.to_string(),
            TokenFormat::Json { field } => {
                let v: serde_json::Value = serde_json::from_str(text)
                    .map_err(|_| self.subject_problem("not valid JSON (credential_source.format.type is json)"))?;
                v.get(field).and_then(|t| t.as_str()).map(str::to_string).ok_or_else(|| {
                    self.subject_problem(format!(
                        "no string field `{field}` (credential_source.format.subject_token_field_name)"
                    ))
                })?
            }
        };
        if token.is_empty() {
            return Err(self.subject_problem("the token is empty"));
        }
        Ok(Secret::new(token))
    }

    async fn subject_token(&self) -> Result<Secret<String>, SourceError> {
        let (url, headers) = match &self.subject {
            SubjectSource::File(_) => return self.read_subject_token_file(),
            SubjectSource::Given(token) => return Ok(token.clone()),
            SubjectSource::Url { url, headers } => (url, headers),
        };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.expose().as_str())).collect();
        let resp =
            self.http.get(url, &headers).await.map_err(|source| SourceError::Http { step: FETCH_STEP, source })?;
        if !resp.status.is_success() {
            return Err(SourceError::endpoint(FETCH_STEP, url, &resp));
        }
        self.extract(&resp.body)
    }

    /// The form the Security Token Service expects (RFC 8693 token exchange).
    fn sts_body(&self, subject_token: &Secret<String>) -> String {
        let options = self
            .user_project
            .as_ref()
            // With client authentication the client id determines the project.
            .filter(|_| self.client.is_none())
            .map(|p| serde_json::json!({ "userProject": p }).to_string());
        let mut pairs = vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("audience", self.audience.as_str()),
            ("scope", CLOUD_PLATFORM_SCOPE),
            ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
            ("subject_token", subject_token.expose().as_str()),
            ("subject_token_type", self.subject_token_type.as_str()),
        ];
        if let Some(o) = &options {
            pairs.push(("options", o.as_str()));
        }
        form(&pairs)
    }

    /// `Authorization: Basic` for files that carry a client id and secret.
    fn basic_auth(&self) -> Option<Secret<String>> {
        let (id, secret) = self.client.as_ref()?;
        let plain = Secret::new(format!("{}:{}", form_escape(id), form_escape(secret.expose())));
        Some(Secret::new(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(plain.expose()))))
    }
}

/// Workforce pool audiences: `//iam.googleapis.com/locations/LOCATION/workforcePools/...`.
fn is_workforce_audience(audience: &str) -> bool {
    audience
        .strip_prefix("//iam.googleapis.com/locations/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(location, rest)| !location.is_empty() && rest.starts_with("workforcePools/"))
}

#[async_trait::async_trait]
impl CredentialSource for ExternalAccount {
    fn describe(&self) -> String {
        format!(
            "external account {} (audience {}, subject token from {})",
            self.path.display(),
            self.audience,
            self.origin()
        )
    }

    async fn credential(&self) -> Result<Credential, SourceError> {
        let subject_token = self.subject_token().await?;
        let auth = self.basic_auth();
        let resp = self
            .http
            .post_form(&self.token_url, self.sts_body(&subject_token), auth.as_ref().map(|a| a.expose().as_str()))
            .await
            .map_err(|source| SourceError::Http { step: STS_STEP, source })?;
        oauth_token_from(STS_STEP, &self.token_url, resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http() -> HttpClient {
        HttpClient::new(Duration::from_secs(1)).unwrap()
    }

    fn parse(json: serde_json::Value) -> Result<ExternalAccount, SourceError> {
        let fields: Fields = serde_json::from_value(json).unwrap();
        ExternalAccount::from_fields(Path::new("/etc/wif.json"), fields, http())
    }

    fn gke_file(token_path: &str) -> serde_json::Value {
        serde_json::json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/k8s",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": {"file": token_path, "format": {"type": "text"}},
        })
    }

    fn form(body: &str) -> BTreeMap<String, String> {
        body.split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                let decode = |s: &str| {
                    let s = s.replace('+', " ");
                    let mut out = Vec::new();
                    let b = s.as_bytes();
                    let mut i = 0;
                    while i < b.len() {
                        if b[i] == b'%' {
                            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                            i += 3;
                        } else {
                            out.push(b[i]);
                            i += 1;
                        }
                    }
                    String::from_utf8(out).unwrap()
                };
                (decode(k), decode(v))
            })
            .collect()
    }

    #[test]
    fn parses_a_file_sourced_config() {
        let ea = parse(gke_file("/var/run/secrets/tokens/gcp")).unwrap();
        assert!(matches!(&ea.subject, SubjectSource::File(p) if p == Path::new("/var/run/secrets/tokens/gcp")));
        assert_eq!(ea.format, TokenFormat::Text);
        assert_eq!(ea.token_url, "https://sts.googleapis.com/v1/token");
        assert!(ea.describe().contains("subject token from /var/run/secrets/tokens/gcp"), "{}", ea.describe());

        let mut json = gke_file("/t");
        json.as_object_mut().unwrap().remove("token_url");
        json["credential_source"]["format"] =
            serde_json::json!({"type": "json", "subject_token_field_name": "id_token"});
        let ea = parse(json).unwrap();
        assert_eq!(ea.token_url, DEFAULT_TOKEN_URL, "the token URL defaults to Google's STS");
        assert_eq!(ea.format, TokenFormat::Json { field: "id_token".into() });
    }

    #[test]
    fn parses_a_url_sourced_config() {
        let mut json = gke_file("");
        json["credential_source"] = serde_json::json!({
            "url": "http://169.254.169.254/metadata/identity/oauth2/token?resource=x",
            "headers": {"Metadata": "True"},
            "format": {"type": "json", "subject_token_field_name": "access_token"},
        });
        let ea = parse(json).unwrap();
        match &ea.subject {
            SubjectSource::Url { url, headers } => {
                assert!(url.starts_with("http://169.254.169.254/"));
                assert_eq!(headers[0].0, "Metadata");
                assert_eq!(headers[0].1.expose(), "True");
            }
            _ => panic!("expected a URL source"),
        }
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases = [
            (
                serde_json::json!({"audience": "a", "credential_source": {"file": "/t"}}),
                "missing field `subject_token_type`",
            ),
            (
                serde_json::json!({"subject_token_type": "t", "credential_source": {"file": "/t"}}),
                "missing field `audience`",
            ),
            (serde_json::json!({"audience": "a", "subject_token_type": "t"}), "missing field `credential_source`"),
            (
                serde_json::json!({"audience": "a", "subject_token_type": "t", "credential_source": {}}),
                "needs a `file` or a `url`",
            ),
            (
                serde_json::json!({"audience": "a", "subject_token_type": "t", "credential_source": {"environment_id": "aws1"}}),
                "(AWS) is not supported",
            ),
            (
                serde_json::json!({"audience": "a", "subject_token_type": "t", "credential_source": {"executable": {"command": "/x"}}}),
                "executable is not supported",
            ),
            (
                serde_json::json!({"audience": "a", "subject_token_type": "t", "credential_source": {"file": "/t", "format": {"type": "json"}}}),
                "no `subject_token_field_name`",
            ),
            (
                serde_json::json!({"audience": "a", "subject_token_type": "t", "credential_source": {"file": "/t", "format": {"type": "xml"}}}),
                "format.type \"xml\" is not supported",
            ),
            (
                serde_json::json!({"audience": "a", "subject_token_type": "t", "token_url": "sts.googleapis.com", "credential_source": {"file": "/t"}}),
                "field `token_url` \"sts.googleapis.com\" is not an http(s) URL",
            ),
            (
                serde_json::json!({"audience": "a", "subject_token_type": "t", "workforce_pool_user_project": "p", "credential_source": {"file": "/t"}}),
                "only for workforce pools",
            ),
        ];
        for (json, expected) in cases {
            let err = parse(json.clone()).err().unwrap_or_else(|| panic!("{json} was accepted"));
            let text = err.to_string();
            assert!(text.starts_with("key file /etc/wif.json: "), "{text}");
            assert!(text.contains(expected), "{json}: {text:?} lacks {expected:?}");
            assert!(!err.is_retryable());
        }
    }

    #[test]
    fn sts_request_is_a_token_exchange() {
        let ea = parse(gke_file("/t")).unwrap();
        let body = form(&ea.sts_body(&Secret::new("eyJ.subject.token".into())));
        assert_eq!(body["grant_type"], "urn:ietf:params:oauth:grant-type:token-exchange");
        assert_eq!(
            body["audience"],
            "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/k8s"
        );
        assert_eq!(body["scope"], CLOUD_PLATFORM_SCOPE);
        assert_eq!(body["requested_token_type"], "urn:ietf:params:oauth:token-type:access_token");
        assert_eq!(body["subject_token"], "eyJ.subject.token");
        assert_eq!(body["subject_token_type"], "urn:ietf:params:oauth:token-type:jwt");
        assert!(!body.contains_key("options"));
        assert!(ea.basic_auth().is_none());
    }

    #[test]
    fn workforce_pools_send_the_user_project_unless_a_client_authenticates() {
        let mut json = gke_file("/t");
        json["audience"] = "//iam.googleapis.com/locations/global/workforcePools/pool/providers/oidc".into();
        json["workforce_pool_user_project"] = "123456".into();
        let ea = parse(json.clone()).unwrap();
        let body = form(&ea.sts_body(&Secret::new("t".into())));
        assert_eq!(body["options"], r#"{"userProject":"123456"}"#);

        json["client_id"] = "id".into();
        json["client_secret"] = "s&cret".into();
        let ea = parse(json).unwrap();
        assert!(!form(&ea.sts_body(&Secret::new("t".into()))).contains_key("options"));
        let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("id:s%26cret"));
        assert_eq!(ea.basic_auth().unwrap().expose(), &expected);
    }

    #[test]
    fn subject_tokens_are_read_fresh_and_by_format() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        let ea = parse(gke_file(token.to_str().unwrap())).unwrap();

        let err = ea.read_subject_token_file().unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("reading the subject token from {}: no such file", token.display())),
            "{text}"
        );
        assert!(text.contains("/etc/wif.json"), "the message names the credentials file: {text}");
        assert_eq!(err.metric_label(), "subject_token");

        std::fs::write(&token, "first\n").unwrap();
        assert_eq!(ea.read_subject_token_file().unwrap().expose(), "first");
        std::fs::write(&token, "second").unwrap();
        assert_eq!(ea.read_subject_token_file().unwrap().expose(), "second", "read again, not cached");
        std::fs::write(&token, "  \n").unwrap();
        assert!(ea.read_subject_token_file().unwrap_err().to_string().contains("the token is empty"));

        let mut json = gke_file(token.to_str().unwrap());
        json["credential_source"]["format"] =
            serde_json::json!({"type": "json", "subject_token_field_name": "id_token"});
        let ea = parse(json).unwrap();
        std::fs::write(&token, r#"{"id_token":"eyJ.json","other":1}"#).unwrap();
        assert_eq!(ea.read_subject_token_file().unwrap().expose(), "eyJ.json");
        std::fs::write(&token, r#"{"token":"eyJ.secret"}"#).unwrap();
        let err = ea.read_subject_token_file().unwrap_err().to_string();
        assert!(err.contains("no string field `id_token`"), "{err}");
        assert!(!err.contains("eyJ.secret"), "the content is never quoted: {err}");
        std::fs::write(&token, "eyJ.not-json").unwrap();
        let err = ea.read_subject_token_file().unwrap_err().to_string();
        assert!(err.contains("not valid JSON") && !err.contains("eyJ.not-json"), "{err}");
    }

    #[test]
    fn impersonation_url_and_lifetime_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t").unwrap();
        let mut json = gke_file(token.to_str().unwrap());
        json["service_account_impersonation_url"] =
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/puller@project-1.iam.gserviceaccount.com:generateAccessToken".into();
        json["service_account_impersonation"] = serde_json::json!({"token_lifetime_seconds": 600});
        let path = Path::new("/etc/wif.json");
        let source = from_file(path, &json.to_string(), None, &http()).unwrap();
        assert!(
            source.describe().ends_with("impersonating puller@project-1.iam.gserviceaccount.com"),
            "{}",
            source.describe()
        );

        json["service_account_impersonation"] = serde_json::json!({"token_lifetime_seconds": 50000});
        let err = from_file(path, &json.to_string(), None, &http()).err().unwrap().to_string();
        assert!(err.contains("token_lifetime_seconds` is 50000; it must be between 1 and 43200"), "{err}");

        json["service_account_impersonation"] = serde_json::json!({});
        json["service_account_impersonation_url"] = "https://example.com/token".into();
        let err = from_file(path, &json.to_string(), None, &http()).err().unwrap().to_string();
        assert!(err.contains("is not a generateAccessToken URL"), "{err}");
    }

    #[test]
    fn a_missing_token_file_fails_at_start_up() {
        let err = from_file(Path::new("/etc/wif.json"), &gke_file("/nonexistent/token").to_string(), None, &http())
            .err()
            .unwrap();
        assert!(matches!(err, SourceError::SubjectToken { .. }), "{err}");
    }
}
