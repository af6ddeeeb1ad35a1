//! The command line, parsed once into a validated [`Config`].
//!
//! Every flag also reads `REGCRED_<FLAG>` from the environment, so a chart can
//! set either. After [`Cli::into_config`] nothing re-parses a string.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::fanout::{FanOutConfig, Pattern, Selection, ServiceAccountPatching, DEFAULT_EXCLUDES};
use crate::registry::{is_dns_label, is_dns_subdomain, InvalidHost, RegistryHost};
pub use crate::schedule::Timing;
use crate::source::{self, AuthMode, Impersonation};
pub use crate::telemetry::LogFormat;

/// regcred keeps Kubernetes image-pull credentials for Google's container
/// registries (gcr.io, *.gcr.io, LOCATION-docker.pkg.dev) fresh.
///
/// It mints a short-lived OAuth access token, renders the Docker config.json
/// "auths" document, and writes it to Kubernetes Secrets and/or files, again
/// before each token expires.
#[derive(Debug, Parser)]
#[command(name = "regcred", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Examples:\n  \
  regcred run --secret ci/gcr-pull                    # keep ci/gcr-pull fresh (Workload Identity)\n  \
  regcred once --key-file key.json --secret gcr-pull  # one refresh, for a CronJob\n  \
  regcred render --key-file key.json                  # print the auths JSON")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Keep the credentials fresh until stopped (a Deployment or a sidecar).
    Run(WriteArgs),
    /// Refresh once and exit: 0 written or already current, 1 failed, 2 bad usage (a CronJob).
    Once(WriteArgs),
    /// Print the auths JSON to stdout; needs no cluster.
    Render(CommonArgs),
    /// Act as a kubelet image credential provider: read one
    /// CredentialProviderRequest on stdin, answer on stdout, exit.
    CredentialProvider(ProviderArgs),
    /// Install the credential provider on this node: copy this binary into
    /// --bin-dir, write the kubelet's CredentialProviderConfig, then keep both
    /// in place until stopped (a DaemonSet).
    InstallCredentialProvider(crate::provider::install::InstallArgs),
}

/// Flags of `credential-provider`, set in the `args` (or `env`) of the
/// kubelet's CredentialProviderConfig.
#[derive(Debug, Args)]
pub struct ProviderArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Workload identity pool provider that pods' service account tokens are
    /// exchanged at (pod identity, tokenAttributes in the kubelet's config):
    /// //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER.
    /// The token's audience must be the same string.
    #[arg(long, env = "REGCRED_WORKLOAD_IDENTITY_PROVIDER", value_name = "AUDIENCE")]
    pub workload_identity_provider: Option<String>,

    /// Security Token Service that pod tokens are exchanged at.
    #[arg(long, env = "REGCRED_STS_ENDPOINT", value_name = "URL", default_value = crate::source::STS_ENDPOINT)]
    pub sts_endpoint: String,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// How registries are authenticated: `oauth` mints short-lived access tokens
    /// (username oauth2accesstoken); `json-key` and `json-key-base64` hand the
    /// service-account key itself to the registry (never expires, never needs refresh).
    #[arg(long, env = "REGCRED_AUTH", value_enum, default_value_t = AuthMode::OAuth)]
    pub auth: AuthMode,

    /// Google credentials file: a service-account key, or an authorized_user,
    /// impersonated_service_account or external_account (workload identity federation)
    /// file. Without it, oauth uses GOOGLE_APPLICATION_CREDENTIALS, then gcloud's
    /// application-default credentials, then the metadata server (GKE Workload
    /// Identity; GCE_METADATA_HOST honoured).
    #[arg(long, env = "REGCRED_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// Service account to impersonate: the token of the credentials found as
    /// above is traded for this account's token (IAM Credentials
    /// generateAccessToken). The source identity needs
    /// roles/iam.serviceAccountTokenCreator on it. oauth only.
    #[arg(long, env = "REGCRED_IMPERSONATE", value_name = "SERVICE_ACCOUNT_EMAIL")]
    pub impersonate: Option<String>,

    /// Delegation chain for --impersonate, in order: the source identity may
    /// impersonate the first, each the next, the last the target. Repeat or comma-separate.
    #[arg(long, env = "REGCRED_IMPERSONATE_DELEGATES", value_name = "EMAIL", value_delimiter = ',')]
    pub impersonate_delegates: Vec<String>,

    /// Lifetime of impersonated tokens (--impersonate, and credential files that
    /// impersonate), in whole seconds up to 12h; over 1h needs the organisation policy
    /// iam.allowServiceAccountCredentialLifetimeExtension. [default: 1h, or the file's own]
    #[arg(long, env = "REGCRED_TOKEN_LIFETIME", value_name = "DURATION", value_parser = parse_duration)]
    pub token_lifetime: Option<Duration>,

    /// IAM Credentials API that --impersonate calls.
    #[arg(long, env = "REGCRED_IMPERSONATION_ENDPOINT", value_name = "URL", default_value = crate::source::IAM_CREDENTIALS_ENDPOINT)]
    pub impersonation_endpoint: String,

    /// Registry host to write credentials for; repeat or comma-separate.
    /// [default: gcr.io, us.gcr.io, eu.gcr.io, asia.gcr.io, marketplace.gcr.io]
    #[arg(long = "registry", env = "REGCRED_REGISTRY", value_name = "HOST", value_delimiter = ',')]
    pub registries: Vec<String>,

    /// Write credentials for every Container Registry host and every Artifact
    /// Registry location (LOCATION-docker.pkg.dev), plus any --registry.
    #[arg(long, env = "REGCRED_ALL_REGISTRIES")]
    pub all_registries: bool,

    /// Check the flags and environment variables and exit (0 valid, 2 not, with
    /// the same one-line message a real start would give), without reading
    /// credentials or contacting Google or Kubernetes.
    #[arg(long, env = "REGCRED_DRY_RUN")]
    pub dry_run: bool,

    /// Timeout for each request to Google or Kubernetes.
    #[arg(long, env = "REGCRED_REQUEST_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    #[command(flatten)]
    pub log: LogArgs,
}

/// Flags of the commands that write credentials somewhere.
#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub sinks: SinkArgs,
}

/// Where to write, and when.
#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Kubernetes Secret to keep fresh, as [NAMESPACE/]NAME; repeat or
    /// comma-separate. The namespace defaults to the pod's own (in a cluster)
    /// or the kubeconfig's current namespace.
    #[arg(long = "secret", env = "REGCRED_SECRET", value_name = "[NAMESPACE/]NAME", value_delimiter = ',')]
    pub secrets: Vec<String>,

    /// Data key of the Secret. `.dockerconfigjson` makes a
    /// kubernetes.io/dockerconfigjson Secret; any other key an Opaque Secret
    /// holding the auths JSON under that key.
    #[arg(long, env = "REGCRED_SECRET_KEY", value_name = "KEY", default_value = DOCKERCONFIGJSON_KEY)]
    pub secret_key: String,

    /// Also write the auths JSON to this file, atomically; repeat or comma-separate.
    #[arg(long = "output-file", env = "REGCRED_OUTPUT_FILE", value_name = "PATH", value_delimiter = ',')]
    pub output_files: Vec<PathBuf>,

    /// Permission bits of output files, in octal.
    #[arg(long, env = "REGCRED_OUTPUT_FILE_MODE", value_name = "OCTAL", default_value = "0600", value_parser = parse_mode)]
    pub output_file_mode: u32,

    /// Mint the next token this long before the current one expires.
    #[arg(long, env = "REGCRED_REFRESH_BEFORE", value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub refresh_before: Duration,

    /// Refresh up to this much earlier, at random, so that replicas do not mint together.
    #[arg(long, env = "REGCRED_JITTER", value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub jitter: Duration,

    /// Rewrite the current credential at least this often, so that a deleted
    /// or edited Secret or file comes back (and keys that never expire are re-checked).
    #[arg(long, env = "REGCRED_RESYNC_INTERVAL", value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub resync_interval: Duration,

    /// Also publish a Kubernetes Event on the Secret at every routine rotation
    /// (failures and recoveries are always published).
    #[arg(long, env = "REGCRED_ROTATION_EVENTS")]
    pub rotation_events: bool,

    /// Address of the admin server (/livez, /readyz, /metrics). Default
    /// 0.0.0.0:8080 for `run`; off for `once` unless given. `off` disables it.
    #[arg(long, env = "REGCRED_ADMIN_ADDR", value_name = "ADDR")]
    pub admin_addr: Option<String>,

    #[command(flatten)]
    pub fan_out: FanOutArgs,
}

/// Namespace fan-out: the same Secret (`--secret NAME`) in many namespaces.
#[derive(Debug, Args)]
#[command(next_help_heading = "Namespace fan-out")]
pub struct FanOutArgs {
    /// Write `--secret NAME` into this namespace; repeat or comma-separate.
    #[arg(long = "namespace", env = "REGCRED_NAMESPACE", value_name = "NAME", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Write `--secret NAME` into every namespace whose labels match this
    /// selector (for example `regcred=enabled`), including ones created later.
    #[arg(long, env = "REGCRED_NAMESPACE_SELECTOR", value_name = "SELECTOR")]
    pub namespace_selector: Option<String>,

    /// Write `--secret NAME` into every namespace, including ones created later.
    #[arg(long, env = "REGCRED_ALL_NAMESPACES")]
    pub all_namespaces: bool,

    /// Skip namespaces matching this name or glob (`*`, `?`) under
    /// --all-namespaces or --namespace-selector; repeat or comma-separate.
    /// kube-system, kube-public and kube-node-lease are always skipped there.
    #[arg(
        long = "exclude-namespace",
        env = "REGCRED_EXCLUDE_NAMESPACE",
        value_name = "PATTERN",
        value_delimiter = ','
    )]
    pub exclude_namespaces: Vec<String>,

    /// Delete the regcred-managed Secret from a namespace that stops matching
    /// --namespace-selector. Secrets regcred does not manage are never touched.
    #[arg(long, env = "REGCRED_PRUNE")]
    pub prune: bool,

    /// Add the Secret to this ServiceAccount's imagePullSecrets in every
    /// selected namespace (for example `default`); repeat or comma-separate.
    #[arg(
        long = "patch-service-account",
        env = "REGCRED_PATCH_SERVICE_ACCOUNT",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub patch_service_accounts: Vec<String>,

    /// Add the Secret to the imagePullSecrets of every ServiceAccount annotated
    /// `regcred.dev/image-pull-secret: "true"` in the selected namespaces.
    #[arg(long, env = "REGCRED_PATCH_ANNOTATED_SERVICE_ACCOUNTS")]
    pub patch_annotated_service_accounts: bool,

    /// Most Kubernetes writes in flight at once.
    #[arg(long, env = "REGCRED_MAX_CONCURRENT_WRITES", value_name = "N", default_value_t = 16)]
    pub max_concurrent_writes: usize,

    /// Most Kubernetes requests per second during fan-out (0: no limit).
    #[arg(long, env = "REGCRED_MAX_REQUESTS_PER_SECOND", value_name = "N", default_value_t = 100)]
    pub max_requests_per_second: u32,

    /// How long each namespace and Secret watch stays open before it is
    /// renewed (1s to 290s). A watch silent for this plus 5s is treated as
    /// broken and reopened; lower it behind proxies that drop idle connections silently.
    #[arg(long, env = "REGCRED_WATCH_TIMEOUT", value_name = "DURATION", default_value = "290s", value_parser = parse_duration)]
    pub watch_timeout: Duration,
}

/// Logging flags.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, env = "REGCRED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter: error, warn, info, debug, trace or off, or directives such as
    /// `info,kube=warn`; RUST_LOG is used when this is not given.
    #[arg(long, env = "REGCRED_LOG_LEVEL", value_name = "LEVEL", value_parser = parse_log_level)]
    pub log_level: Option<String>,
}

/// A log filter whose every part names a level (`debug`, `kube=warn`), so
/// that a typo is refused instead of silently filtering out every line.
fn parse_log_level(s: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let ok = !s.trim().is_empty()
        && s.split(',').all(|part| {
            let level =
                part.rsplit_once('=').map_or(part, |(target, level)| if target.is_empty() { "" } else { level });
            LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
        });
    if ok {
        Ok(s.to_string())
    } else {
        Err("expected error, warn, info, debug, trace or off, or directives such as `info,kube=warn`".into())
    }
}

/// The Secret key whose presence makes a `kubernetes.io/dockerconfigjson` Secret.
pub const DOCKERCONFIGJSON_KEY: &str = ".dockerconfigjson";

/// Which command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Run,
    Once,
    Render,
    CredentialProvider,
}

impl Config {
    /// The log filter when neither --log-level nor RUST_LOG gives one: the
    /// kubelet shows a provider's stderr for every pull, so it says only
    /// what went wrong.
    pub fn default_log_level(&self) -> &'static str {
        match self.mode {
            Mode::CredentialProvider => "warn",
            _ => "info",
        }
    }
}

/// Validates `credential-provider`'s flags.
fn provider_settings(
    config: &Config,
    pool_provider: Option<String>,
    sts_endpoint: String,
    impersonation_endpoint: String,
    explicit_registries: bool,
) -> Result<crate::provider::Settings, ConfigError> {
    let pool_provider = pool_provider.map(|p| p.trim().to_string()).filter(|p| !p.is_empty());
    if let Some(p) = &pool_provider {
        let path = p.strip_prefix("//iam.googleapis.com/").unwrap_or("");
        if !(path.contains("/workloadIdentityPools/") && path.contains("/providers/")) {
            return Err(ConfigError::PoolProvider(p.clone()));
        }
    }
    if !(sts_endpoint.starts_with("https://") || sts_endpoint.starts_with("http://")) {
        return Err(ConfigError::StsEndpoint(sts_endpoint));
    }
    let patterns = if explicit_registries {
        config.registries.iter().map(|r| r.to_string()).collect()
    } else {
        crate::provider::DEFAULT_PATTERNS.iter().map(|p| p.to_string()).collect()
    };
    Ok(crate::provider::Settings {
        pool_provider,
        sts_endpoint,
        impersonation_endpoint,
        token_lifetime: config.source.token_lifetime,
        patterns,
    })
}

/// A Secret to keep fresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretTarget {
    /// `None`: the default namespace, resolved once the Kubernetes client exists.
    pub namespace: Option<String>,
    pub name: String,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    /// Where credentials come from.
    pub source: source::Settings,
    /// Sorted and de-duplicated.
    pub registries: Vec<RegistryHost>,
    pub secrets: Vec<SecretTarget>,
    pub secret_key: String,
    pub output_files: Vec<PathBuf>,
    pub output_file_mode: u32,
    pub timing: Timing,
    pub request_timeout: Duration,
    pub log_format: LogFormat,
    pub log_level: Option<String>,
    /// `credential-provider`'s settings.
    pub provider: Option<crate::provider::Settings>,
    /// `--dry-run`: stop after validation.
    pub dry_run: bool,
    pub admin_addr: Option<SocketAddr>,
    pub rotation_events: bool,
    /// Namespace fan-out, when asked for; `secrets` is then empty.
    pub fan_out: Option<FanOutConfig>,
}

impl Config {
    /// The Secret type matching the data key.
    pub fn secret_type(&self) -> &'static str {
        if self.secret_key == DOCKERCONFIGJSON_KEY {
            "kubernetes.io/dockerconfigjson"
        } else {
            "Opaque"
        }
    }
}

/// A configuration the user must fix; exit code 2.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(transparent)]
    Registry(#[from] InvalidHost),
    #[error("invalid --secret {0:?}: expected [NAMESPACE/]NAME with lower-case DNS names (for example ci/gcr-pull)")]
    SecretRef(String),
    #[error("invalid --secret-key {0:?}: a Secret key may contain only letters, digits, '-', '_' and '.', and may not be '.' or start with '..'")]
    SecretKey(String),
    #[error("nowhere to write: give at least one --secret or --output-file")]
    NoSink,
    #[error("invalid --admin-addr {0:?}: expected IP:PORT (for example 0.0.0.0:8080) or `off`")]
    AdminAddr(String),
    #[error("--resync-interval must be at least 1s")]
    ResyncInterval,
    #[error(
        "invalid --request-timeout {0}: expected 100ms to 10m (the deadline of each request to Google or Kubernetes)"
    )]
    RequestTimeout(String),
    #[error("{0}")]
    FanOut(&'static str),
    #[error("invalid --namespace {0:?}: expected a lower-case DNS label")]
    Namespace(String),
    #[error("invalid --patch-service-account {0:?}: expected a ServiceAccount name")]
    ServiceAccount(String),
    #[error("invalid --exclude-namespace {0:?}: expected a namespace name or a glob of one (lower-case letters, digits, '-', '*' and '?'), for example tmp-*")]
    ExcludePattern(String),
    #[error(
        "invalid --impersonate {0:?}: expected a service account email such as regcred@PROJECT.iam.gserviceaccount.com"
    )]
    ImpersonateTarget(String),
    #[error("invalid --impersonate-delegates entry {0:?}: expected a service account email")]
    ImpersonateDelegate(String),
    #[error("--impersonate-delegates needs --impersonate")]
    DelegatesWithoutTarget,
    #[error("--impersonate needs --auth oauth: --auth {0} gives the registry the key itself, not a token")]
    ImpersonateWithKeyAuth(AuthMode),
    #[error("invalid --token-lifetime {0}: expected whole seconds from 1s to 12h (43200s)")]
    TokenLifetime(String),
    #[error("invalid --impersonation-endpoint {0:?}: expected http(s)://HOST[:PORT]")]
    ImpersonationEndpoint(String),
    #[error("invalid --workload-identity-provider {0:?}: expected //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER")]
    PoolProvider(String),
    #[error("invalid --sts-endpoint {0:?}: expected an http(s) URL")]
    StsEndpoint(String),
}

impl Cli {
    /// Validates everything once, up front.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let (mode, common, sinks, provider) = match self.command {
            Command::Run(WriteArgs { common, sinks }) => (Mode::Run, common, Some(sinks), None),
            Command::Once(WriteArgs { common, sinks }) => (Mode::Once, common, Some(sinks), None),
            Command::Render(c) => (Mode::Render, c, None, None),
            Command::CredentialProvider(ProviderArgs { common, workload_identity_provider, sts_endpoint }) => {
                (Mode::CredentialProvider, common, None, Some((workload_identity_provider, sts_endpoint)))
            }
            // main runs the installer with its own settings, never a Config.
            Command::InstallCredentialProvider(_) => unreachable!("install-credential-provider has no Config"),
        };
        let explicit_registries = !common.registries.is_empty() && !common.all_registries;
        let impersonation_endpoint = common.impersonation_endpoint.trim_end_matches('/').to_string();
        let mut registries = common.registries.iter().map(|h| h.parse()).collect::<Result<Vec<RegistryHost>, _>>()?;
        if common.all_registries {
            registries.extend(RegistryHost::all());
        }
        if registries.is_empty() {
            registries = RegistryHost::defaults();
        }
        registries.sort();
        registries.dedup();
        let impersonate = impersonation(&common)?;
        if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&common.request_timeout) {
            return Err(ConfigError::RequestTimeout(humantime::format_duration(common.request_timeout).to_string()));
        }

        let mut config = Config {
            mode,
            source: source::Settings {
                auth: common.auth,
                key_file: common.key_file,
                impersonate,
                token_lifetime: common.token_lifetime.map(token_lifetime).transpose()?,
            },
            registries,
            secrets: Vec::new(),
            secret_key: DOCKERCONFIGJSON_KEY.into(),
            output_files: Vec::new(),
            output_file_mode: 0o600,
            timing: Timing {
                refresh_before: Duration::from_secs(15 * 60),
                jitter: Duration::from_secs(60),
                resync_interval: Duration::from_secs(600),
            },
            request_timeout: common.request_timeout,
            log_format: common.log.log_format,
            log_level: common.log.log_level,
            dry_run: common.dry_run,
            admin_addr: None,
            rotation_events: false,
            fan_out: None,
            provider: None,
        };
        if let Some((pool_provider, sts_endpoint)) = provider {
            let settings =
                provider_settings(&config, pool_provider, sts_endpoint, impersonation_endpoint, explicit_registries)?;
            config.provider = Some(settings);
        }
        if let Some(s) = sinks {
            config.secrets = s.secrets.iter().map(|s| parse_secret_ref(s)).collect::<Result<_, _>>()?;
            if !is_config_key(&s.secret_key) {
                return Err(ConfigError::SecretKey(s.secret_key));
            }
            config.secret_key = s.secret_key;
            config.output_files = s.output_files;
            config.output_file_mode = s.output_file_mode;
            config.rotation_events = s.rotation_events;
            config.fan_out = fan_out(&s.fan_out, &config.secrets, config.secret_type(), &config.secret_key)?;
            if config.fan_out.is_some() {
                config.secrets.clear();
            }
            if config.secrets.is_empty() && config.output_files.is_empty() && config.fan_out.is_none() {
                return Err(ConfigError::NoSink);
            }
            if s.resync_interval < Duration::from_secs(1) {
                return Err(ConfigError::ResyncInterval);
            }
            config.timing =
                Timing { refresh_before: s.refresh_before, jitter: s.jitter, resync_interval: s.resync_interval };
            config.admin_addr = match (s.admin_addr.as_deref(), mode) {
                (Some("off"), _) | (None, Mode::Once) => None,
                (None, _) => Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
                (Some(a), _) => Some(a.parse().map_err(|_| ConfigError::AdminAddr(a.to_string()))?),
            };
        }
        Ok(config)
    }
}

/// Validates the fan-out flags: one bare `--secret NAME`, one way of choosing
/// namespaces, and the options that only make sense with them.
fn fan_out(
    args: &FanOutArgs,
    secrets: &[SecretTarget],
    secret_type: &'static str,
    key: &str,
) -> Result<Option<FanOutConfig>, ConfigError> {
    let ways = [!args.namespaces.is_empty(), args.namespace_selector.is_some(), args.all_namespaces];
    let needs_fan_out = args.prune
        || !args.patch_service_accounts.is_empty()
        || args.patch_annotated_service_accounts
        || !args.exclude_namespaces.is_empty();
    match ways.iter().filter(|w| **w).count() {
        0 if needs_fan_out => return Err(ConfigError::FanOut("--exclude-namespace, --prune and --patch-service-account(s) need --namespace, --namespace-selector or --all-namespaces")),
        0 => return Ok(None),
        1 => {}
        _ => return Err(ConfigError::FanOut("give only one of --namespace, --namespace-selector and --all-namespaces")),
    }
    let secret_name = match secrets {
        [SecretTarget { namespace: None, name }] => name.clone(),
        _ => {
            return Err(ConfigError::FanOut(
                "with namespace fan-out give exactly one --secret NAME, without a namespace",
            ))
        }
    };
    if args.prune && args.namespace_selector.is_none() {
        return Err(ConfigError::FanOut(
            "--prune acts on namespaces that stop matching --namespace-selector; use it with --namespace-selector",
        ));
    }
    if !args.exclude_namespaces.is_empty() && !args.namespaces.is_empty() {
        return Err(ConfigError::FanOut(
            "--exclude-namespace applies to --all-namespaces and --namespace-selector, not to --namespace",
        ));
    }
    for ns in &args.namespaces {
        if !is_dns_label(ns) {
            return Err(ConfigError::Namespace(ns.clone()));
        }
    }
    // A pattern no namespace name can match (`Kube_*`) is a typo, not a choice.
    if let Some(bad) = args.exclude_namespaces.iter().find(|p| !is_name_glob(p)) {
        return Err(ConfigError::ExcludePattern(bad.clone()));
    }
    for sa in &args.patch_service_accounts {
        if !is_dns_subdomain(sa) {
            return Err(ConfigError::ServiceAccount(sa.clone()));
        }
    }
    if args.max_concurrent_writes == 0 {
        return Err(ConfigError::FanOut("--max-concurrent-writes must be at least 1"));
    }
    if args.watch_timeout < Duration::from_secs(1) || args.watch_timeout > crate::cluster::WATCH_TIMEOUT {
        return Err(ConfigError::FanOut(
            "--watch-timeout must be between 1s and 290s (the API server's limit for a client-chosen watch timeout is below 295s)",
        ));
    }
    let excludes = || {
        DEFAULT_EXCLUDES
            .iter()
            .map(|p| Pattern::new(p))
            .chain(args.exclude_namespaces.iter().map(|p| Pattern::new(p)))
            .collect()
    };
    let selection = match &args.namespace_selector {
        Some(sel) if sel.trim().is_empty() => {
            return Err(ConfigError::FanOut("--namespace-selector is empty; use --all-namespaces for every namespace"))
        }
        Some(sel) => Selection::Labels { selector: sel.clone(), excludes: excludes() },
        None if args.all_namespaces => Selection::All { excludes: excludes() },
        None => Selection::Names(args.namespaces.clone()),
    };
    Ok(Some(FanOutConfig {
        selection,
        secret_name,
        key: key.to_string(),
        secret_type,
        prune: args.prune,
        service_accounts: ServiceAccountPatching {
            names: args.patch_service_accounts.clone(),
            annotated: args.patch_annotated_service_accounts,
        },
        max_concurrent_writes: args.max_concurrent_writes,
        writes_per_second: args.max_requests_per_second,
        watch_timeout: args.watch_timeout,
    }))
}

/// Validates `--impersonate` and its companions.
fn impersonation(common: &CommonArgs) -> Result<Option<Impersonation>, ConfigError> {
    let endpoint = common.impersonation_endpoint.trim_end_matches('/');
    let host = endpoint.strip_prefix("https://").or_else(|| endpoint.strip_prefix("http://"));
    if host.is_none_or(|h| h.is_empty() || h.contains('/') || h.contains('?')) {
        return Err(ConfigError::ImpersonationEndpoint(common.impersonation_endpoint.clone()));
    }
    let Some(target) = common.impersonate.as_deref().map(str::trim) else {
        if !common.impersonate_delegates.is_empty() {
            return Err(ConfigError::DelegatesWithoutTarget);
        }
        return Ok(None);
    };
    if !looks_like_email(target) {
        return Err(ConfigError::ImpersonateTarget(target.to_string()));
    }
    if common.auth != AuthMode::OAuth {
        return Err(ConfigError::ImpersonateWithKeyAuth(common.auth));
    }
    let delegates: Vec<String> = common.impersonate_delegates.iter().map(|d| d.trim().to_string()).collect();
    if let Some(bad) = delegates.iter().find(|d| !looks_like_email(d)) {
        return Err(ConfigError::ImpersonateDelegate(bad.clone()));
    }
    Ok(Some(Impersonation { target: target.to_string(), delegates, endpoint: endpoint.to_string() }))
}

/// NAME@DOMAIN with a dotted domain, and nothing that would break the API path.
fn looks_like_email(s: &str) -> bool {
    let Some((name, domain)) = s.split_once('@') else {
        return false;
    };
    let clean = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    clean(name) && clean(domain) && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
}

/// IAM Credentials takes whole seconds, at most 12 hours.
fn token_lifetime(d: Duration) -> Result<Duration, ConfigError> {
    if d.subsec_nanos() != 0 || d < Duration::from_secs(1) || d > crate::source::MAX_TOKEN_LIFETIME {
        return Err(ConfigError::TokenLifetime(humantime::format_duration(d).to_string()));
    }
    Ok(d)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use a duration such as 90s, 15m or 1h)"))
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err("expected octal permission bits such as 0600 or 0640".into()),
    }
}

/// `[NAMESPACE/]NAME`: a DNS-1123 label and a DNS-1123 subdomain.
fn parse_secret_ref(s: &str) -> Result<SecretTarget, ConfigError> {
    let err = || ConfigError::SecretRef(s.to_string());
    let (namespace, name) = match s.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, s),
    };
    if namespace.is_some_and(|ns| !is_dns_label(ns)) || !is_dns_subdomain(name) {
        return Err(err());
    }
    Ok(SecretTarget { namespace: namespace.map(str::to_string), name: name.to_string() })
}

/// A DNS label in which `*` and `?` may stand for characters.
fn is_name_glob(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-*?".contains(&b))
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Kubernetes' rule for Secret and ConfigMap keys (which also refuses a key
/// starting with `..`).
fn is_config_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && !s.starts_with("..")
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["regcred"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("clap accepts").into_config()
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_gcr_hosts_and_dockerconfigjson() {
        let c = parse(&["once", "--secret", "pull"]).unwrap();
        assert_eq!(c.registries.len(), 5);
        assert_eq!(c.secret_type(), "kubernetes.io/dockerconfigjson");
        assert_eq!(c.secrets, vec![SecretTarget { namespace: None, name: "pull".into() }]);
        assert_eq!(c.timing.refresh_before, Duration::from_secs(900));
        assert_eq!(c.admin_addr, None, "once has no admin server unless asked");
        let c = parse(&["run", "--secret", "pull"]).unwrap();
        assert_eq!(c.admin_addr, Some("0.0.0.0:8080".parse().unwrap()));
    }

    #[test]
    fn registries_are_split_sorted_and_deduplicated() {
        let c = parse(&["render", "--registry", "us.gcr.io,gcr.io", "--registry", "gcr.io"]).unwrap();
        let hosts: Vec<_> = c.registries.iter().map(|h| h.as_str()).collect();
        assert_eq!(hosts, ["gcr.io", "us.gcr.io"]);
        let all = parse(&["render", "--all-registries"]).unwrap();
        assert!(all.registries.len() > 40);
    }

    #[test]
    fn other_keys_make_opaque_secrets() {
        let c = parse(&["once", "--secret", "ns/a,b", "--secret-key", "registry-auth.json"]).unwrap();
        assert_eq!(c.secret_type(), "Opaque");
        assert_eq!(c.secrets[0], SecretTarget { namespace: Some("ns".into()), name: "a".into() });
    }

    #[test]
    fn bad_input_is_rejected_with_the_reason() {
        assert_eq!(parse(&["once"]).unwrap_err(), ConfigError::NoSink);
        assert_eq!(parse(&["once", "--secret", "Bad/Name"]).unwrap_err(), ConfigError::SecretRef("Bad/Name".into()));
        assert_eq!(parse(&["once", "--secret", "a/b/c"]).unwrap_err(), ConfigError::SecretRef("a/b/c".into()));
        assert!(matches!(parse(&["once", "--secret", "x", "--registry", "docker.io"]), Err(ConfigError::Registry(_))));
        assert!(matches!(parse(&["once", "--secret", "x", "--secret-key", "a/b"]), Err(ConfigError::SecretKey(_))));
        assert!(matches!(parse(&["once", "--secret", "x", "--secret-key", "..data"]), Err(ConfigError::SecretKey(_))));
        assert!(parse(&["once", "--secret", "x", "--secret-key", ".x..y"]).is_ok());
        let all = ["once", "--secret", "x", "--all-namespaces", "--exclude-namespace"];
        assert!(parse(&[&all[..], &["tmp-*,ci-??"]].concat()).is_ok());
        for bad in ["Kube_*", "", "a b", "x-", &"a".repeat(64)] {
            assert_eq!(parse(&[&all[..], &[bad]].concat()).unwrap_err(), ConfigError::ExcludePattern(bad.into()));
        }
        assert!(matches!(parse(&["run", "--secret", "x", "--admin-addr", "nope"]), Err(ConfigError::AdminAddr(_))));
        assert!(Cli::try_parse_from(["regcred", "once", "--auth", "password"]).is_err());
        assert!(Cli::try_parse_from(["regcred", "once", "--output-file-mode", "999"]).is_err());
        assert!(Cli::try_parse_from(["regcred", "once", "--refresh-before", "soon"]).is_err());
    }

    #[test]
    fn impersonation_flags_are_validated() {
        let c = parse(&["render"]).unwrap();
        assert_eq!((c.source.impersonate, c.source.token_lifetime), (None, None));

        let c = parse(&[
            "render",
            "--impersonate",
            "pull@p.iam.gserviceaccount.com",
            "--impersonate-delegates",
            "a@p.iam.gserviceaccount.com,b@p.iam.gserviceaccount.com",
            "--token-lifetime",
            "2h",
            "--impersonation-endpoint",
            "http://127.0.0.1:9999/",
        ])
        .unwrap();
        assert_eq!(
            c.source.impersonate,
            Some(Impersonation {
                target: "pull@p.iam.gserviceaccount.com".into(),
                delegates: vec!["a@p.iam.gserviceaccount.com".into(), "b@p.iam.gserviceaccount.com".into()],
                endpoint: "http://127.0.0.1:9999".into(),
            })
        );
        assert_eq!(c.source.token_lifetime, Some(Duration::from_secs(7200)));
        let c = parse(&["render", "--impersonate", "pull@p.iam.gserviceaccount.com"]).unwrap();
        assert_eq!(c.source.impersonate.unwrap().endpoint, "https://iamcredentials.googleapis.com");

        let err = |args: &[&str]| parse(args).unwrap_err();
        assert_eq!(err(&["render", "--impersonate", "pull"]), ConfigError::ImpersonateTarget("pull".into()));
        assert_eq!(err(&["render", "--impersonate", "a/b@c.d"]), ConfigError::ImpersonateTarget("a/b@c.d".into()));
        assert_eq!(
            err(&["render", "--impersonate", "a@b.c", "--impersonate-delegates", "x@y.z,nope"]),
            ConfigError::ImpersonateDelegate("nope".into())
        );
        assert_eq!(err(&["render", "--impersonate-delegates", "x@y.z"]), ConfigError::DelegatesWithoutTarget);
        assert_eq!(
            err(&["render", "--impersonate", "a@b.c", "--auth", "json-key"]),
            ConfigError::ImpersonateWithKeyAuth(AuthMode::JsonKey)
        );
        assert_eq!(err(&["render", "--token-lifetime", "13h"]), ConfigError::TokenLifetime("13h".into()));
        assert_eq!(err(&["render", "--token-lifetime", "1500ms"]), ConfigError::TokenLifetime("1s 500ms".into()));
        assert_eq!(err(&["render", "--token-lifetime", "0s"]), ConfigError::TokenLifetime("0s".into()));
        assert!(matches!(
            err(&["render", "--impersonation-endpoint", "iam.local"]),
            ConfigError::ImpersonationEndpoint(_)
        ));
        assert!(matches!(
            err(&["render", "--impersonation-endpoint", "https://h/v1"]),
            ConfigError::ImpersonationEndpoint(_)
        ));
        assert_eq!(
            err(&["render", "--impersonate", "a@b.c", "--auth", "json-key-base64"]).to_string(),
            "--impersonate needs --auth oauth: --auth json-key-base64 gives the registry the key itself, not a token"
        );
    }
}
