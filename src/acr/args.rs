//! The flags of an ACR source, and the [`Settings`] they make. The Azure
//! identity's own variables (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
//! `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`) are read under
//! their usual names, as the AKS workload identity webhook injects them;
//! the client secret only from `AZURE_CLIENT_SECRET`, never a flag, which
//! would show it in the process list.

use std::path::PathBuf;

use super::ids::{ClientId, TenantId};
use super::{IdentityKind, Settings, IMDS_ENDPOINT, PUBLIC_AUTHORITY};
use crate::secret::Secret;
use crate::source::{Endpoint, EndpointUrl};

/// Azure identity flags, for registries on `*.azurecr.io`.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub(crate) struct Args {
    /// Which Azure identity gets the Azure AD token that ACR exchanges for a
    /// registry password. `auto`: workload identity when AZURE_FEDERATED_TOKEN_FILE
    /// is set, else a client secret when AZURE_CLIENT_SECRET is set, else the
    /// managed identity of the VM (IMDS).
    #[arg(long, env = "REGCRED_AZURE_IDENTITY", value_enum, default_value_t = IdentityKind::Auto)]
    azure_identity: IdentityKind,

    /// Client id of the app registration or managed identity (for a managed
    /// identity: a user-assigned one; without it, the system-assigned one).
    #[arg(long, env = "AZURE_CLIENT_ID", value_name = "GUID")]
    azure_client_id: Option<ClientId>,

    /// Microsoft Entra tenant of the identity (workload identity, client secret).
    #[arg(long, env = "AZURE_TENANT_ID", value_name = "TENANT")]
    azure_tenant_id: Option<TenantId>,

    /// The projected service account token that workload identity presents
    /// (the AKS webhook mounts it and sets AZURE_FEDERATED_TOKEN_FILE).
    #[arg(long, env = "AZURE_FEDERATED_TOKEN_FILE", value_name = "PATH")]
    azure_federated_token_file: Option<PathBuf>,

    /// Microsoft Entra ID's host: https://login.microsoftonline.com, or a
    /// sovereign cloud's (https://login.chinacloudapi.cn, https://login.microsoftonline.us).
    #[arg(long, env = "AZURE_AUTHORITY_HOST", value_name = "URL", default_value = PUBLIC_AUTHORITY)]
    azure_authority_host: Endpoint,

    /// The managed identity endpoint of the Instance Metadata Service.
    #[arg(long, env = "REGCRED_AZURE_IMDS_ENDPOINT", value_name = "URL", default_value = IMDS_ENDPOINT)]
    azure_imds_endpoint: EndpointUrl,

    /// Where to send the registry's token exchange instead of https://HOST
    /// (a test registry; the exchange still names HOST as its service).
    #[arg(long, env = "REGCRED_AZURE_REGISTRY_ENDPOINT", value_name = "URL", hide = true)]
    azure_registry_endpoint: Option<Endpoint>,
}

impl Args {
    /// The settings, with the client secret from `AZURE_CLIENT_SECRET`.
    pub(crate) fn into_settings(self) -> Settings {
        let secret = std::env::var("AZURE_CLIENT_SECRET").ok().filter(|s| !s.is_empty()).map(Secret::new);
        Settings {
            identity: self.azure_identity,
            client_id: self.azure_client_id,
            tenant_id: self.azure_tenant_id,
            federated_token_file: self.azure_federated_token_file,
            // Only the variable's own name is worth telling the user.
            token_file_from_env: std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some(),
            client_secret: secret,
            authority_host: self.azure_authority_host,
            imds_endpoint: self.azure_imds_endpoint,
            registry_endpoint: self.azure_registry_endpoint,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        azure: Args,
    }

    #[test]
    fn the_flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_into_typed_settings() {
        let cli = Cli::try_parse_from([
            "t",
            "--azure-identity",
            "workload-identity",
            "--azure-client-id",
            "00001111-aaaa-2222-bbbb-3333cccc4444",
            "--azure-tenant-id",
            "contoso.onmicrosoft.com",
            "--azure-federated-token-file",
            "/var/run/secrets/azure/tokens/azure-identity-token",
            "--azure-authority-host",
            "https://login.microsoftonline.us/",
        ])
        .unwrap();
        let s = cli.azure.into_settings();
        assert_eq!(s.identity, IdentityKind::WorkloadIdentity);
        assert_eq!(s.client_id.unwrap().as_str(), "00001111-aaaa-2222-bbbb-3333cccc4444");
        assert_eq!(s.authority_host.to_string(), "https://login.microsoftonline.us");
        assert_eq!(s.imds_endpoint.as_str(), IMDS_ENDPOINT);
        for bad in
            [["--azure-client-id", "not-a-guid"], ["--azure-tenant-id", "a/b"], ["--azure-authority-host", "login"]]
        {
            assert!(Cli::try_parse_from(["t", bad[0], bad[1]]).is_err(), "{bad:?}");
        }
    }
}
