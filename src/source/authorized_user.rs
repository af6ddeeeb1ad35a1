//! OAuth tokens from an `authorized_user` file (gcloud's application-default
//! login), by the refresh-token grant.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{key_problem, oauth_token_from, read_key_file, Credential, CredentialSource, SourceError};
use crate::http::form;
use crate::http::HttpClient;
use crate::secret::Secret;

const STEP: &str = "refreshing the authorized_user token";

#[derive(Deserialize)]
struct Fields {
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    token_uri: Option<String>,
}

/// An `authorized_user` credentials file, or the same JSON embedded in
/// another credentials file.
pub(crate) struct AuthorizedUser {
    /// The file, or for embedded JSON a label naming where it was found.
    path: PathBuf,
    /// Whether `path` is a real file to read again at every mint.
    reread: bool,
    client_id: String,
    client_secret: Secret<String>,
    refresh_token: Secret<String>,
    token_uri: String,
    http: HttpClient,
}

impl AuthorizedUser {
    /// Checks the file has every field the grant needs.
    pub(crate) fn parse(path: &Path, text: &str, http: HttpClient) -> Result<Self, SourceError> {
        Self::parse_fields(path, text, true, http)
    }

    /// The same JSON given in memory (`source_credentials` of an
    /// `impersonated_service_account` file); `label` names it in messages.
    pub(crate) fn embedded(label: &Path, text: &str, http: HttpClient) -> Result<Self, SourceError> {
        Self::parse_fields(label, text, false, http)
    }

    fn parse_fields(path: &Path, text: &str, reread: bool, http: HttpClient) -> Result<Self, SourceError> {
        let f: Fields = serde_json::from_str(text)
            .map_err(|e| key_problem(path, format!("not a valid authorized_user file ({e})")))?;
        let need = |v: Option<String>, name: &str| {
            v.filter(|s| !s.is_empty()).ok_or_else(|| {
                key_problem(path, format!("missing field `{name}`; run `gcloud auth application-default login` again"))
            })
        };
        Ok(Self {
            path: path.to_path_buf(),
            reread,
            client_id: need(f.client_id, "client_id")?,
            client_secret: Secret::new(need(f.client_secret, "client_secret")?),
            refresh_token: Secret::new(need(f.refresh_token, "refresh_token")?),
            token_uri: super::token_uri(path, f.token_uri)?,
            http,
        })
    }
}

#[async_trait::async_trait]
impl CredentialSource for AuthorizedUser {
    fn describe(&self) -> String {
        format!("authorized_user file {}", self.path.display())
    }

    async fn credential(&self) -> Result<Credential, SourceError> {
        // Re-read so that a new `gcloud auth application-default login` is
        // picked up; embedded JSON cannot change.
        let reread;
        let current = if self.reread {
            let text = read_key_file(&self.path)?;
            reread = Self::parse(&self.path, &text, self.http.clone())?;
            &reread
        } else {
            self
        };
        let body = form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &current.client_id),
            ("client_secret", current.client_secret.expose()),
            ("refresh_token", current.refresh_token.expose()),
        ]);
        let resp = self
            .http
            .post_form(&current.token_uri, body, None)
            .await
            .map_err(|source| SourceError::Http { step: STEP, source })?;
        oauth_token_from(STEP, &current.token_uri, resp)
    }
}
