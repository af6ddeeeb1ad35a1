//! The flags that say where credentials come from, and the [`Settings`]
//! they make.

use std::path::PathBuf;
use std::time::Duration;

use super::{
    AuthMode, Endpoint, Impersonation, ServiceAccountEmail, Settings, IAM_CREDENTIALS_ENDPOINT, MAX_TOKEN_LIFETIME,
};
use crate::schedule::duration_in;

/// Credential source flags, shared by every command that mints.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub(crate) struct Args {
    /// How registries are authenticated: `oauth` mints short-lived access tokens
    /// (username oauth2accesstoken); `json-key` and `json-key-base64` hand the
    /// service-account key itself to the registry (never expires, never needs refresh).
    #[arg(long, env = "REGCRED_AUTH", value_enum, default_value_t = AuthMode::OAuth)]
    pub(crate) auth: AuthMode,

    /// Google credentials file: a service-account key, or an authorized_user,
    /// impersonated_service_account or external_account (workload identity federation)
    /// file. Without it, oauth uses GOOGLE_APPLICATION_CREDENTIALS, then gcloud's
    /// application-default credentials, then the metadata server (GKE Workload
    /// Identity; GCE_METADATA_HOST honoured).
    #[arg(long, env = "REGCRED_KEY_FILE", value_name = "PATH")]
    key_file: Option<PathBuf>,

    /// Service account to impersonate: the token of the credentials found as
    /// above is traded for this account's token (IAM Credentials
    /// generateAccessToken). The source identity needs
    /// roles/iam.serviceAccountTokenCreator on it. oauth only.
    #[arg(long, env = "REGCRED_IMPERSONATE", value_name = "SERVICE_ACCOUNT_EMAIL")]
    impersonate: Option<ServiceAccountEmail>,

    /// Delegation chain for --impersonate, in order: the source identity may
    /// impersonate the first, each the next, the last the target. Repeat or comma-separate.
    #[arg(
        long,
        env = "REGCRED_IMPERSONATE_DELEGATES",
        value_name = "EMAIL",
        value_delimiter = ',',
        requires = "impersonate"
    )]
    impersonate_delegates: Vec<ServiceAccountEmail>,

    /// Lifetime of impersonated tokens (--impersonate, and credential files that
    /// impersonate), in whole seconds up to 12h; over 1h needs the organisation policy
    /// iam.allowServiceAccountCredentialLifetimeExtension. [default: 1h, or the file's own]
    #[arg(long, env = "REGCRED_TOKEN_LIFETIME", value_name = "DURATION", value_parser = parse_token_lifetime)]
    pub(crate) token_lifetime: Option<Duration>,

    /// IAM Credentials API that --impersonate calls.
    #[arg(long, env = "REGCRED_IMPERSONATION_ENDPOINT", value_name = "URL", default_value = IAM_CREDENTIALS_ENDPOINT)]
    pub(crate) impersonation_endpoint: Endpoint,
}

/// `--impersonate` with a source that hands the registry a key, not a token.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("--impersonate needs --auth oauth: --auth {0} gives the registry the key itself, not a token")]
pub struct ImpersonateWithKeyAuth(AuthMode);

impl Args {
    /// The source's settings. (clap has already refused delegates without
    /// `--impersonate`.)
    pub(crate) fn into_settings(self) -> Result<Settings, ImpersonateWithKeyAuth> {
        let impersonate = match self.impersonate {
            Some(_) if self.auth != AuthMode::OAuth => return Err(ImpersonateWithKeyAuth(self.auth)),
            Some(target) => Some(Impersonation {
                target,
                delegates: self.impersonate_delegates,
                endpoint: self.impersonation_endpoint,
            }),
            None => None,
        };
        Ok(Settings { auth: self.auth, key_file: self.key_file, impersonate, token_lifetime: self.token_lifetime })
    }
}

/// IAM Credentials takes whole seconds, at most 12 hours.
fn parse_token_lifetime(s: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected whole seconds from 1s to 12h (43200s)";
    let d = duration_in(s, Duration::from_secs(1)..=MAX_TOKEN_LIFETIME, EXPECTED)?;
    if d.subsec_nanos() != 0 {
        return Err(EXPECTED.into());
    }
    Ok(d)
}
