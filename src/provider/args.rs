//! The flags of `credential-provider` beyond the credential source's, set
//! in the `args` (or `env`) of the kubelet's CredentialProviderConfig.

use super::{PoolProvider, Settings, DEFAULT_PATTERNS};
use crate::registry;
use crate::source::{self, EndpointUrl, STS_ENDPOINT};

/// Pod identity's flags.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub(crate) struct Args {
    /// Workload identity pool provider that pods' service account tokens are
    /// exchanged at (pod identity, tokenAttributes in the kubelet's config):
    /// //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER.
    /// The token's audience must be the same string.
    #[arg(long, env = "REGCRED_WORKLOAD_IDENTITY_PROVIDER", value_name = "AUDIENCE")]
    workload_identity_provider: Option<PoolProvider>,

    /// Security Token Service that pod tokens are exchanged at.
    #[arg(long, env = "REGCRED_STS_ENDPOINT", value_name = "URL", default_value = STS_ENDPOINT)]
    sts_endpoint: EndpointUrl,
}

impl Args {
    /// The provider's settings. Impersonation (the annotation's account)
    /// uses the source's `--impersonation-endpoint` and `--token-lifetime`;
    /// the answer's keys are the registries asked for, else every Google one.
    pub(crate) fn into_settings(self, source: &source::Args, registries: &registry::Args) -> Settings {
        let patterns = match registries.explicit() {
            Some(hosts) => hosts.iter().map(|h| h.to_string()).collect(),
            None => DEFAULT_PATTERNS.iter().map(|p| p.to_string()).collect(),
        };
        Settings {
            pool_provider: self.workload_identity_provider,
            sts_endpoint: self.sts_endpoint,
            impersonation_endpoint: source.impersonation_endpoint.clone(),
            token_lifetime: source.token_lifetime,
            patterns,
        }
    }
}
