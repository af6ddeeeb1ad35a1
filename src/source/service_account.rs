//! OAuth tokens from a service-account key file (JWT-bearer grant).
//!
//! gcp_auth parses the private key and signs; regcred builds the assertion and
//! makes the token request itself, because gcp_auth caches tokens until ~20 s
//! before expiry, retries internally without a timeout, and reduces Google's
//! error answers to "token request failed". A token minted here always has its
//! full lifetime, and a failure says what Google said.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

use super::{
    key_problem, oauth_token_from, read_key_file, Credential, CredentialSource, SourceError, CLOUD_PLATFORM_SCOPE,
};
use crate::http::form;
use crate::http::HttpClient;
use crate::secret::Secret;

const STEP: &str = "minting a token with the service-account key";

#[derive(Deserialize)]
struct KeyFields {
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

/// The parts of a key that are not secret, checked at start-up.
struct Key {
    client_email: String,
    private_key_id: Option<String>,
    token_uri: String,
    signer: gcp_auth::CustomServiceAccount,
}

/// A `service_account` key. A key file is read again at every mint, so a
/// key rotated in a mounted Secret is picked up without a restart.
pub(crate) struct ServiceAccountKey {
    /// The key file, or for an embedded key a label naming where it was found.
    path: PathBuf,
    /// A key embedded in another credentials file (`source_credentials` of an
    /// `impersonated_service_account` file): kept in memory, never written out.
    embedded: Option<Secret<String>>,
    client_email: String,
    http: HttpClient,
}

impl ServiceAccountKey {
    /// Validates the key (fields present, private key usable) so that a bad
    /// file fails at start-up with a message naming the file and the field.
    pub(crate) fn parse(path: &Path, text: &str, http: HttpClient) -> Result<Self, SourceError> {
        let key = parse_key(path, text)?;
        Ok(Self { path: path.to_path_buf(), embedded: None, client_email: key.client_email, http })
    }

    /// A key given as JSON in memory; `label` names where it came from in
    /// error messages.
    pub(crate) fn embedded(label: &Path, text: &str, http: HttpClient) -> Result<Self, SourceError> {
        let key = parse_key(label, text)?;
        Ok(Self {
            path: label.to_path_buf(),
            embedded: Some(Secret::new(text.to_string())),
            client_email: key.client_email,
            http,
        })
    }
}

fn parse_key(path: &Path, text: &str) -> Result<Key, SourceError> {
    let fields: KeyFields =
        serde_json::from_str(text).map_err(|e| key_problem(path, format!("not a valid service-account key ({e})")))?;
    let missing =
        |f: &str| key_problem(path, format!("missing field `{f}`; download a new JSON key for the service account"));
    let client_email = fields.client_email.filter(|s| !s.is_empty()).ok_or_else(|| missing("client_email"))?;
    if fields.private_key.as_deref().is_none_or(str::is_empty) {
        return Err(missing("private_key"));
    }
    // The signer only parses the PEM here; its own HTTP client is never used.
    let signer = gcp_auth::CustomServiceAccount::from_json(text)
        .map_err(|_| key_problem(path, "field `private_key` is not a valid PKCS#8 RSA private key".into()))?;
    Ok(Key {
        client_email,
        private_key_id: fields.private_key_id,
        token_uri: super::token_uri(path, fields.token_uri)?,
        signer,
    })
}

/// Builds the signed JWT assertion Google's token endpoint expects.
fn assertion(key: &Key, path: &Path) -> Result<String, SourceError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &key.private_key_id {
        header["kid"] = kid.clone().into();
    }
    let claims = serde_json::json!({
        "iss": key.client_email,
        "scope": CLOUD_PLATFORM_SCOPE,
        "aud": key.token_uri,
        "iat": now,
        "exp": now + 3600,
    });
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = key
        .signer
        .signer()
        .sign(signing_input.as_bytes())
        .map_err(|_| key_problem(path, "cannot sign with field `private_key`".into()))?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

#[async_trait::async_trait]
impl CredentialSource for ServiceAccountKey {
    fn describe(&self) -> String {
        format!("service-account key {} ({})", self.path.display(), self.client_email)
    }

    async fn credential(&self) -> Result<Credential, SourceError> {
        let text = match &self.embedded {
            Some(json) => json.expose().clone(),
            None => read_key_file(&self.path)?,
        };
        let key = parse_key(&self.path, &text)?;
        let jwt = assertion(&key, &self.path)?;
        let body = form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", &jwt)]);
        let resp = self
            .http
            .post_form(&key.token_uri, body, None)
            .await
            .map_err(|source| SourceError::Http { step: STEP, source })?;
        oauth_token_from(STEP, &key.token_uri, resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_reserved_characters() {
        assert_eq!(crate::http::form(&[("a", "x y"), ("b", "c:d/e=f&")]), "a=x+y&b=c%3Ad%2Fe%3Df%26");
        assert_eq!(crate::http::form_escape("id:with secret*"), "id%3Awith+secret*");
    }

    #[test]
    fn missing_fields_are_named() {
        let p = Path::new("/k.json");
        let err = parse_key(p, r#"{"type":"service_account","private_key":"x"}"#).err().unwrap();
        assert_eq!(
            err.to_string(),
            "key file /k.json: missing field `client_email`; download a new JSON key for the service account"
        );
        let err = parse_key(p, r#"{"type":"service_account","client_email":"a@b"}"#).err().unwrap();
        assert!(err.to_string().contains("missing field `private_key`"), "{err}");
        let err = parse_key(p, r#"{"client_email":"a@b","private_key":"not a pem"}"#).err().unwrap();
        assert!(err.to_string().contains("not a valid PKCS#8"), "{err}");
    }
}
