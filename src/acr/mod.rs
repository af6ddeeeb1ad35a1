//! Azure Container Registry: a [`CredentialSource`] for one registry
//! (`NAME.azurecr.io`, `.azurecr.cn`, `.azurecr.us`).
//!
//! Two steps per credential: an Azure AD (Microsoft Entra ID) access token
//! for `https://containerregistry.azure.net` from the configured identity
//! ([`aad`]: workload identity, managed identity, client secret), then the
//! registry's own exchange of that token for an ACR refresh token
//! ([`exchange`]), which is the Docker password of the user
//! `00000000-0000-0000-0000-000000000000` and expires when its `exp`
//! claim says (3 hours).
//!
//! Hand-written on regcred's HTTP client rather than `azure_identity`. The
//! two calls are small; the SDK (1.0, default features, its three
//! credentials called from `main`) grew the release binary from 6,434,400
//! to 8,519,192 bytes (+2.0 MiB, +32 %) with 35 more crates (its own
//! reqwest stack, aws-lc-rs built with cmake beside regcred's ring, `time`,
//! compression), needs Rust 1.88 (regcred: 1.85), caches tokens (the
//! schedule must see fresh ones), insists on an https authority and a fixed
//! IMDS address (no local emulator without TLS). This module adds 82,880
//! bytes (+1.3 %); one mint (IMDS, then the exchange) against the test kit
//! took 20-30 ms at 7 MiB peak RSS. Figures from `cargo build --release -p
//! regcred` of scratch copies that call each, on the same machine.

mod aad;
mod args;
mod azure_error;
mod exchange;
mod ids;

use std::path::PathBuf;

use crate::credential::Credential;
use crate::http::HttpClient;
use crate::registry::AcrRegistry;
use crate::secret::Secret;
use crate::source::{CredentialSource, Endpoint, EndpointUrl, SourceError};

pub(crate) use aad::{Assertion, AzureIdentity, TokenFile};
pub(crate) use args::Args;
pub(crate) use ids::{ClientId, TenantId};

/// The Docker username that tells ACR the password is a refresh token.
pub(crate) const ACR_USERNAME: &str = "00000000-0000-0000-0000-000000000000";
/// The resource ACR's exchange accepts tokens for (IMDS's `resource`).
pub(crate) const ACR_RESOURCE: &str = "https://containerregistry.azure.net";
/// The same as an Azure AD v2 scope.
pub(crate) const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";
/// Microsoft Entra ID in Azure's public cloud.
pub(crate) const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The managed identity endpoint of Azure's Instance Metadata Service.
pub(crate) const IMDS_ENDPOINT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// Which Azure identity to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum IdentityKind {
    /// Workload identity if its token file is configured, else a client
    /// secret if one is, else the managed identity.
    Auto,
    /// A federated service account token (AKS workload identity).
    WorkloadIdentity,
    /// The VM's managed identity, through IMDS.
    ManagedIdentity,
    /// An app registration's client secret (AZURE_CLIENT_SECRET).
    ClientSecret,
}

/// What [`discover`] needs: the ACR source's own settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub(crate) identity: IdentityKind,
    pub(crate) client_id: Option<ClientId>,
    pub(crate) tenant_id: Option<TenantId>,
    pub(crate) federated_token_file: Option<PathBuf>,
    /// Whether the token file's path came from `AZURE_FEDERATED_TOKEN_FILE`
    /// (errors then name the variable).
    pub(crate) token_file_from_env: bool,
    pub(crate) client_secret: Option<Secret<String>>,
    pub(crate) authority_host: Endpoint,
    pub(crate) imds_endpoint: EndpointUrl,
    /// Where the registry's token server is, instead of `https://HOST`.
    pub(crate) registry_endpoint: Option<Endpoint>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            identity: IdentityKind::Auto,
            client_id: None,
            tenant_id: None,
            federated_token_file: None,
            token_file_from_env: false,
            client_secret: None,
            authority_host: PUBLIC_AUTHORITY.parse().expect("a valid endpoint"),
            imds_endpoint: IMDS_ENDPOINT.parse().expect("a valid URL"),
            registry_endpoint: None,
        }
    }
}

/// The credential of one ACR registry.
pub(crate) struct AcrSource {
    host: AcrRegistry,
    identity: AzureIdentity,
    /// The registry's `/oauth2/exchange`.
    exchange_url: String,
    http: HttpClient,
}

impl AcrSource {
    /// A source for `host` with an identity already chosen.
    pub(crate) fn new(
        host: AcrRegistry,
        identity: AzureIdentity,
        registry_endpoint: Option<&Endpoint>,
        http: HttpClient,
    ) -> Self {
        let base = registry_endpoint.map(Endpoint::to_string).unwrap_or_else(|| format!("https://{host}"));
        AcrSource { exchange_url: format!("{base}/oauth2/exchange"), host, identity, http }
    }

    /// A source for `host` that presents a pod's service account token (the
    /// kubelet's credential provider request, KEP-4412) as the app
    /// `client_id`'s federated credential: the identity the pod's service
    /// account names (`azure.workload.identity/client-id`, or Azure's
    /// plugin's `kubernetes.azure.com/acr-client-id`).
    pub(crate) fn for_pod(
        host: AcrRegistry,
        client_id: ClientId,
        tenant_id: TenantId,
        token: Secret<String>,
        settings: &Settings,
        http: HttpClient,
    ) -> Self {
        let identity = AzureIdentity::WorkloadIdentity {
            client_id,
            tenant_id,
            assertion: Assertion::Given(token),
            authority: settings.authority_host.clone(),
        };
        AcrSource::new(host, identity, settings.registry_endpoint.as_ref(), http)
    }
}

#[async_trait::async_trait]
impl CredentialSource for AcrSource {
    fn describe(&self) -> String {
        format!("ACR {} with {}", self.host, self.identity.describe())
    }

    async fn credential(&self) -> Result<Credential, SourceError> {
        // Errors do not name the host: the refresh loop and the app name
        // each credential group's hosts and provider.
        let aad_token = self.identity.token(&self.http).await?;
        exchange::exchange(&self.http, &self.exchange_url, &self.host, self.identity.tenant(), &aad_token).await
    }
}

/// Builds the source of `host` from the settings, choosing the identity as
/// [`IdentityKind::Auto`] says unless the settings name one. A workload
/// identity's token file is read once here, so that a wrong path stops
/// regcred at start-up instead of failing every refresh.
pub(crate) fn discover(host: AcrRegistry, settings: &Settings, http: HttpClient) -> Result<AcrSource, SourceError> {
    let identity = identity(settings)?;
    if let AzureIdentity::WorkloadIdentity { assertion: Assertion::File(file), .. } = &identity {
        file.read()?;
    }
    Ok(AcrSource::new(host, identity, settings.registry_endpoint.as_ref(), http))
}

/// Whether the settings name a usable identity, without reading its token
/// file (`--dry-run`).
pub(crate) fn check_identity(settings: &Settings) -> Result<(), SourceError> {
    identity(settings).map(drop)
}

fn identity(s: &Settings) -> Result<AzureIdentity, SourceError> {
    let kind = match s.identity {
        IdentityKind::Auto if s.federated_token_file.is_some() => IdentityKind::WorkloadIdentity,
        IdentityKind::Auto if s.client_secret.is_some() => IdentityKind::ClientSecret,
        IdentityKind::Auto => IdentityKind::ManagedIdentity,
        kind => kind,
    };
    let missing =
        |what: &str, hint: &str| SourceError::NoCredentials { cloud: "Azure", detail: format!("{what} needs {hint}") };
    const WI_HINT: &str = "AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE (the AKS workload identity webhook sets them in pods labelled azure.workload.identity/use=true whose service account has the annotation azure.workload.identity/client-id)";
    const SECRET_HINT: &str = "AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET";
    match kind {
        IdentityKind::WorkloadIdentity => match (&s.client_id, &s.tenant_id, &s.federated_token_file) {
            (Some(client_id), Some(tenant_id), Some(path)) => Ok(AzureIdentity::WorkloadIdentity {
                client_id: client_id.clone(),
                tenant_id: tenant_id.clone(),
                assertion: Assertion::File(TokenFile {
                    path: path.clone(),
                    var: match s.token_file_from_env {
                        true => "AZURE_FEDERATED_TOKEN_FILE",
                        false => "--azure-federated-token-file",
                    },
                }),
                authority: s.authority_host.clone(),
            }),
            _ => Err(missing("workload identity", WI_HINT)),
        },
        IdentityKind::ClientSecret => match (&s.client_id, &s.tenant_id, &s.client_secret) {
            (Some(client_id), Some(tenant_id), Some(secret)) => Ok(AzureIdentity::ClientSecret {
                client_id: client_id.clone(),
                tenant_id: tenant_id.clone(),
                secret: secret.clone(),
                authority: s.authority_host.clone(),
            }),
            _ => Err(missing("client secret authentication", SECRET_HINT)),
        },
        IdentityKind::ManagedIdentity | IdentityKind::Auto => {
            Ok(AzureIdentity::ManagedIdentity { client_id: s.client_id.clone(), endpoint: s.imds_endpoint.clone() })
        }
    }
}

#[cfg(test)]
mod tests;
