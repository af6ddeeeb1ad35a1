//! The Microsoft Entra ID (Azure AD) access token for the registry's
//! resource, from one of three identities, keyless first:
//!
//! * workload identity: the projected service account token in
//!   `AZURE_FEDERATED_TOKEN_FILE`, sent as a client assertion to the v2
//!   token endpoint of `AZURE_TENANT_ID` for the app `AZURE_CLIENT_ID`;
//! * managed identity: the Instance Metadata Service of the VM (the AKS
//!   node's kubelet identity, or a user-assigned identity by client id);
//! * a client secret (`AZURE_CLIENT_SECRET`) of an app registration.
//!
//! Each call asks anew: the token is exchanged at once and never kept, so
//! a cache would only hand the exchange an older token.

use std::io::Read as _;
use std::path::PathBuf;

use serde::Deserialize;

use super::azure_error::refusal;
use super::ids::{ClientId, TenantId};
use super::{ACR_RESOURCE, ACR_SCOPE};
use crate::http::{form, HttpClient, Response};
use crate::secret::Secret;
use crate::source::{Endpoint, EndpointUrl, SourceError};

/// The step named in errors about the token endpoint.
pub(crate) const AAD_STEP: &str = "Azure AD token";
/// The step named in errors about the managed identity endpoint.
pub(crate) const IMDS_STEP: &str = "Azure AD token from the managed identity endpoint (IMDS)";
/// The IMDS API version Azure's libraries use for the token endpoint.
const IMDS_API_VERSION: &str = "2018-02-01";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Service account tokens are a few kilobytes; anything this big is the wrong file.
const MAX_TOKEN_FILE: u64 = 1 << 20;

/// Where the federated token comes from, and what to call it in errors.
#[derive(Clone, Debug)]
pub(crate) struct TokenFile {
    pub(crate) path: PathBuf,
    /// Where its path came from, for messages: `AZURE_FEDERATED_TOKEN_FILE`
    /// or `--azure-federated-token-file`.
    pub(crate) var: &'static str,
}

impl TokenFile {
    /// Reads the token again (the kubelet rotates it).
    pub(crate) fn read(&self) -> Result<Secret<String>, SourceError> {
        let problem = |p: String| SourceError::TokenFile { var: self.var, path: self.path.clone(), problem: p };
        let mut raw = Vec::new();
        std::fs::File::open(&self.path)
            .and_then(|f| f.take(MAX_TOKEN_FILE + 1).read_to_end(&mut raw))
            .map_err(|e| problem(crate::source::unreadable(&e)))?;
        if raw.len() as u64 > MAX_TOKEN_FILE {
            return Err(problem("larger than 1 MiB; this is not a token file".into()));
        }
        // The content is a credential: problems are described, never quoted.
        let text = std::str::from_utf8(&raw).map_err(|_| problem("not UTF-8 text".into()))?.trim();
        if text.is_empty() {
            return Err(problem("the token is empty".into()));
        }
        Ok(Secret::new(text.to_string()))
    }
}

/// The federated token a workload identity presents.
#[derive(Debug)]
pub(crate) enum Assertion {
    /// A projected token file, read at every mint.
    File(TokenFile),
    /// Handed over in memory: the pod's service account token that the
    /// kubelet passes to a credential provider (KEP-4412).
    Given(Secret<String>),
}

impl Assertion {
    fn token(&self) -> Result<Secret<String>, SourceError> {
        match self {
            Assertion::File(file) => file.read(),
            Assertion::Given(token) => Ok(token.clone()),
        }
    }
}

/// An Azure identity that can get an access token for the registry.
#[derive(Debug)]
pub(crate) enum AzureIdentity {
    WorkloadIdentity { client_id: ClientId, tenant_id: TenantId, assertion: Assertion, authority: Endpoint },
    ManagedIdentity { client_id: Option<ClientId>, endpoint: EndpointUrl },
    ClientSecret { client_id: ClientId, tenant_id: TenantId, secret: Secret<String>, authority: Endpoint },
}

/// The success body of both token endpoints (IMDS writes its numbers as
/// strings; only the token is used).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<Secret<String>>,
}

impl AzureIdentity {
    /// For logs: the kind and the ids, never the secret.
    pub(crate) fn describe(&self) -> String {
        match self {
            AzureIdentity::WorkloadIdentity { client_id, tenant_id, assertion, .. } => {
                let token = match assertion {
                    Assertion::File(file) => file.path.display().to_string(),
                    Assertion::Given(_) => "the pod's service account token".to_string(),
                };
                format!("workload identity (client {client_id}, tenant {tenant_id}, token {token})")
            }
            AzureIdentity::ManagedIdentity { client_id: Some(id), .. } => format!("managed identity (client {id})"),
            AzureIdentity::ManagedIdentity { client_id: None, .. } => "managed identity (system-assigned)".to_string(),
            AzureIdentity::ClientSecret { client_id, tenant_id, .. } => {
                format!("client secret (client {client_id}, tenant {tenant_id})")
            }
        }
    }

    /// The tenant, when the identity names one.
    pub(crate) fn tenant(&self) -> Option<&TenantId> {
        match self {
            AzureIdentity::WorkloadIdentity { tenant_id, .. } | AzureIdentity::ClientSecret { tenant_id, .. } => {
                Some(tenant_id)
            }
            AzureIdentity::ManagedIdentity { .. } => None,
        }
    }

    /// A fresh access token for `https://containerregistry.azure.net`.
    pub(crate) async fn token(&self, http: &HttpClient) -> Result<Secret<String>, SourceError> {
        match self {
            AzureIdentity::WorkloadIdentity { client_id, tenant_id, assertion, authority } => {
                let assertion = assertion.token()?;
                let body = form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("scope", ACR_SCOPE),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", assertion.expose()),
                ]);
                post_token(http, &token_url(authority, tenant_id), body).await
            }
            AzureIdentity::ClientSecret { client_id, tenant_id, secret, authority } => {
                let body = form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("scope", ACR_SCOPE),
                    ("client_secret", secret.expose()),
                ]);
                post_token(http, &token_url(authority, tenant_id), body).await
            }
            AzureIdentity::ManagedIdentity { client_id, endpoint } => {
                let mut query = vec![("api-version", IMDS_API_VERSION), ("resource", ACR_RESOURCE)];
                if let Some(id) = client_id {
                    query.push(("client_id", id.as_str()));
                }
                let url = format!("{}?{}", endpoint.as_str(), form(&query));
                let resp = http
                    .get(&url, &[("Metadata", "true")])
                    .await
                    .map_err(|source| SourceError::Http { step: IMDS_STEP, source })?;
                access_token(IMDS_STEP, endpoint.as_str(), resp)
            }
        }
    }
}

/// `AUTHORITY/TENANT/oauth2/v2.0/token`.
fn token_url(authority: &Endpoint, tenant: &TenantId) -> String {
    format!("{authority}/{tenant}/oauth2/v2.0/token")
}

async fn post_token(http: &HttpClient, url: &str, body: String) -> Result<Secret<String>, SourceError> {
    let resp = http.post_form(url, body, None).await.map_err(|source| SourceError::Http { step: AAD_STEP, source })?;
    access_token(AAD_STEP, url, resp)
}

/// The token of a success answer, or the refusal with Azure's error text.
fn access_token(step: &'static str, url: &str, resp: Response) -> Result<Secret<String>, SourceError> {
    if !resp.status.is_success() {
        return Err(refusal(step, url, &resp));
    }
    let bad = |problem: &str| SourceError::BadResponse { step, url: url.to_string(), problem: problem.to_string() };
    let parsed: TokenResponse = serde_json::from_slice(&resp.body).map_err(|_| bad("not the expected JSON"))?;
    parsed.access_token.filter(|t| !t.expose().is_empty()).ok_or_else(|| bad("no access_token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_are_read_fresh_and_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("azure-identity-token");
        let file = TokenFile { path: path.clone(), var: "AZURE_FEDERATED_TOKEN_FILE" };
        let err = file.read().unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(&format!("AZURE_FEDERATED_TOKEN_FILE={}: no such file", path.display())), "{text}");
        assert!(err.is_retryable(), "the kubelet rewrites the file");
        assert_eq!(err.metric_label(), "subject_token");
        std::fs::write(&path, "eyJ.first\n").unwrap();
        assert_eq!(file.read().unwrap().expose(), "eyJ.first");
        std::fs::write(&path, "eyJ.second").unwrap();
        assert_eq!(file.read().unwrap().expose(), "eyJ.second", "read again, not cached");
        std::fs::write(&path, " \n").unwrap();
        assert!(file.read().unwrap_err().to_string().ends_with("the token is empty"));
        std::fs::write(&path, [0xffu8, 0xfe, b'e', b'y']).unwrap();
        assert!(file.read().unwrap_err().to_string().ends_with("not UTF-8 text"));
    }

    #[test]
    fn descriptions_name_the_identity_without_the_secret() {
        let id = AzureIdentity::ClientSecret {
            client_id: "00001111-aaaa-2222-bbbb-3333cccc4444".parse().unwrap(),
            tenant_id: "contoso.onmicrosoft.com".parse().unwrap(),
            secret: Secret::new("kit8Q~very-secret".into()),
            authority: "https://login.microsoftonline.com".parse().unwrap(),
        };
        assert_eq!(
            id.describe(),
            "client secret (client 00001111-aaaa-2222-bbbb-3333cccc4444, tenant contoso.onmicrosoft.com)"
        );
        assert!(!format!("{id:?}").contains("very-secret"), "{id:?}");
    }
}
