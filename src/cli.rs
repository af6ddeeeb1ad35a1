//! The command line.
//!
//! clap turns each flag into its type as it parses (a `RegistryHost`, a
//! `SecretTarget`, a duration in range), so a typo is refused with the
//! flag's name before anything else runs. What is left here are the rules
//! between flags, which produce a [`Config`] whose [`Command`] cannot hold an
//! impossible combination: each command carries only the settings its
//! components take. Every flag also reads `REGCRED_<FLAG>` from the
//! environment, so a chart can set either.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::admin::AdminAddr;
use crate::cluster;
use crate::fanout::{self, Pattern, Selection, ServiceAccountPatching, DEFAULT_EXCLUDES};
use crate::provider::{self, install};
use crate::registry::{is_dns_label, is_dns_subdomain, RegistryHost};
use crate::schedule::{parse_duration, Timing};
use crate::sink::{self, SecretTarget, DOCKERCONFIGJSON_KEY};
use crate::source::{self, AuthMode, Impersonation};
use crate::telemetry::{self, LogFormat};

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
    action: Action,
}

/// What to do, as typed.
#[derive(Debug, Subcommand)]
enum Action {
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
    InstallCredentialProvider(install::InstallArgs),
}

/// Flags of `credential-provider`, set in the `args` (or `env`) of the
/// kubelet's CredentialProviderConfig.
#[derive(Debug, Args)]
struct ProviderArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// Workload identity pool provider that pods' service account tokens are
    /// exchanged at (pod identity, tokenAttributes in the kubelet's config):
    /// //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER.
    /// The token's audience must be the same string.
    #[arg(long, env = "REGCRED_WORKLOAD_IDENTITY_PROVIDER", value_name = "AUDIENCE", value_parser = parse_pool_provider)]
    workload_identity_provider: Option<PoolProvider>,

    /// Security Token Service that pod tokens are exchanged at.
    #[arg(long, env = "REGCRED_STS_ENDPOINT", value_name = "URL", default_value = source::STS_ENDPOINT, value_parser = parse_url)]
    sts_endpoint: String,
}

/// Flags every command takes.
#[derive(Debug, Args)]
struct CommonArgs {
    /// How registries are authenticated: `oauth` mints short-lived access tokens
    /// (username oauth2accesstoken); `json-key` and `json-key-base64` hand the
    /// service-account key itself to the registry (never expires, never needs refresh).
    #[arg(long, env = "REGCRED_AUTH", value_enum, default_value_t = AuthMode::OAuth)]
    auth: AuthMode,

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
    #[arg(long, env = "REGCRED_IMPERSONATE", value_name = "SERVICE_ACCOUNT_EMAIL", value_parser = parse_email)]
    impersonate: Option<String>,

    /// Delegation chain for --impersonate, in order: the source identity may
    /// impersonate the first, each the next, the last the target. Repeat or comma-separate.
    #[arg(long, env = "REGCRED_IMPERSONATE_DELEGATES", value_name = "EMAIL", value_delimiter = ',', value_parser = parse_email)]
    impersonate_delegates: Vec<String>,

    /// Lifetime of impersonated tokens (--impersonate, and credential files that
    /// impersonate), in whole seconds up to 12h; over 1h needs the organisation policy
    /// iam.allowServiceAccountCredentialLifetimeExtension. [default: 1h, or the file's own]
    #[arg(long, env = "REGCRED_TOKEN_LIFETIME", value_name = "DURATION", value_parser = parse_token_lifetime)]
    token_lifetime: Option<Duration>,

    /// IAM Credentials API that --impersonate calls.
    #[arg(long, env = "REGCRED_IMPERSONATION_ENDPOINT", value_name = "URL", default_value = source::IAM_CREDENTIALS_ENDPOINT, value_parser = parse_endpoint)]
    impersonation_endpoint: String,

    /// Registry host to write credentials for; repeat or comma-separate.
    /// [default: gcr.io, us.gcr.io, eu.gcr.io, asia.gcr.io, marketplace.gcr.io]
    #[arg(long = "registry", env = "REGCRED_REGISTRY", value_name = "HOST", value_delimiter = ',')]
    registries: Vec<RegistryHost>,

    /// Write credentials for every Container Registry host and every Artifact
    /// Registry location (LOCATION-docker.pkg.dev), plus any --registry.
    #[arg(long, env = "REGCRED_ALL_REGISTRIES")]
    all_registries: bool,

    /// Check the flags and environment variables and exit (0 valid, 2 not, with
    /// the same one-line message a real start would give), without reading
    /// credentials or contacting Google or Kubernetes.
    #[arg(long, env = "REGCRED_DRY_RUN")]
    dry_run: bool,

    /// Timeout for each request to Google or Kubernetes (100ms to 10m).
    #[arg(long, env = "REGCRED_REQUEST_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_request_timeout)]
    request_timeout: Duration,

    #[command(flatten)]
    log: LogArgs,
}

/// Flags of the commands that write credentials somewhere.
#[derive(Debug, Args)]
struct WriteArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    sinks: SinkArgs,
}

/// Where to write, and when.
#[derive(Debug, Args)]
struct SinkArgs {
    /// Kubernetes Secret to keep fresh, as [NAMESPACE/]NAME; repeat or
    /// comma-separate. The namespace defaults to the pod's own (in a cluster)
    /// or the kubeconfig's current namespace.
    #[arg(long = "secret", env = "REGCRED_SECRET", value_name = "[NAMESPACE/]NAME", value_delimiter = ',')]
    secrets: Vec<SecretTarget>,

    /// Data key of the Secret. `.dockerconfigjson` makes a
    /// kubernetes.io/dockerconfigjson Secret; any other key an Opaque Secret
    /// holding the auths JSON under that key.
    #[arg(long, env = "REGCRED_SECRET_KEY", value_name = "KEY", default_value = DOCKERCONFIGJSON_KEY, value_parser = parse_secret_key)]
    secret_key: String,

    /// Also write the auths JSON to this file, atomically; repeat or comma-separate.
    #[arg(long = "output-file", env = "REGCRED_OUTPUT_FILE", value_name = "PATH", value_delimiter = ',')]
    output_files: Vec<PathBuf>,

    /// Permission bits of output files, in octal.
    #[arg(long, env = "REGCRED_OUTPUT_FILE_MODE", value_name = "OCTAL", default_value = "0600", value_parser = parse_mode)]
    output_file_mode: u32,

    /// Mint the next token this long before the current one expires.
    #[arg(long, env = "REGCRED_REFRESH_BEFORE", value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    refresh_before: Duration,

    /// Refresh up to this much earlier, at random, so that replicas do not mint together.
    #[arg(long, env = "REGCRED_JITTER", value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    jitter: Duration,

    /// Rewrite the current credential at least this often (at least 1s), so that a deleted
    /// or edited Secret or file comes back (and keys that never expire are re-checked).
    #[arg(long, env = "REGCRED_RESYNC_INTERVAL", value_name = "DURATION", default_value = "10m", value_parser = parse_resync_interval)]
    resync_interval: Duration,

    /// Also publish a Kubernetes Event on the Secret at every routine rotation
    /// (failures and recoveries are always published).
    #[arg(long, env = "REGCRED_ROTATION_EVENTS")]
    rotation_events: bool,

    /// Address of the admin server (/livez, /readyz, /metrics). Default
    /// 0.0.0.0:8080 for `run`; off for `once` unless given. `off` disables it.
    #[arg(long, env = "REGCRED_ADMIN_ADDR", value_name = "ADDR")]
    admin_addr: Option<AdminAddr>,

    #[command(flatten)]
    fan_out: FanOutArgs,
}

/// Namespace fan-out: the same Secret (`--secret NAME`) in many namespaces.
#[derive(Debug, Args)]
#[command(next_help_heading = "Namespace fan-out")]
struct FanOutArgs {
    /// Write `--secret NAME` into this namespace; repeat or comma-separate.
    #[arg(long = "namespace", env = "REGCRED_NAMESPACE", value_name = "NAME", value_delimiter = ',', value_parser = parse_namespace)]
    namespaces: Vec<String>,

    /// Write `--secret NAME` into every namespace whose labels match this
    /// selector (for example `regcred=enabled`), including ones created later.
    #[arg(long, env = "REGCRED_NAMESPACE_SELECTOR", value_name = "SELECTOR", value_parser = parse_selector)]
    namespace_selector: Option<String>,

    /// Write `--secret NAME` into every namespace, including ones created later.
    #[arg(long, env = "REGCRED_ALL_NAMESPACES")]
    all_namespaces: bool,

    /// Skip namespaces matching this name or glob (`*`, `?`) under
    /// --all-namespaces or --namespace-selector; repeat or comma-separate.
    /// kube-system, kube-public and kube-node-lease are always skipped there.
    #[arg(
        long = "exclude-namespace",
        env = "REGCRED_EXCLUDE_NAMESPACE",
        value_name = "PATTERN",
        value_delimiter = ','
    )]
    exclude_namespaces: Vec<Pattern>,

    /// Delete the regcred-managed Secret from a namespace that stops matching
    /// --namespace-selector. Secrets regcred does not manage are never touched.
    #[arg(long, env = "REGCRED_PRUNE")]
    prune: bool,

    /// Add the Secret to this ServiceAccount's imagePullSecrets in every
    /// selected namespace (for example `default`); repeat or comma-separate.
    #[arg(
        long = "patch-service-account",
        env = "REGCRED_PATCH_SERVICE_ACCOUNT",
        value_name = "NAME",
        value_delimiter = ',',
        value_parser = parse_service_account
    )]
    patch_service_accounts: Vec<String>,

    /// Add the Secret to the imagePullSecrets of every ServiceAccount annotated
    /// `regcred.dev/image-pull-secret: "true"` in the selected namespaces.
    #[arg(long, env = "REGCRED_PATCH_ANNOTATED_SERVICE_ACCOUNTS")]
    patch_annotated_service_accounts: bool,

    /// Most Kubernetes writes in flight at once (at least 1).
    #[arg(long, env = "REGCRED_MAX_CONCURRENT_WRITES", value_name = "N", default_value_t = 16, value_parser = parse_positive)]
    max_concurrent_writes: usize,

    /// Most Kubernetes requests per second during fan-out (0: no limit).
    #[arg(long, env = "REGCRED_MAX_REQUESTS_PER_SECOND", value_name = "N", default_value_t = 100)]
    max_requests_per_second: u32,

    /// How long each namespace and Secret watch stays open before it is
    /// renewed (1s to 290s). A watch silent for this plus 5s is treated as
    /// broken and reopened; lower it behind proxies that drop idle connections silently.
    #[arg(long, env = "REGCRED_WATCH_TIMEOUT", value_name = "DURATION", default_value = "290s", value_parser = parse_watch_timeout)]
    watch_timeout: Duration,
}

/// Logging flags.
#[derive(Debug, Args)]
struct LogArgs {
    /// Log line format.
    #[arg(long, env = "REGCRED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log filter: error, warn, info, debug, trace or off, or directives such as
    /// `info,kube=warn`; RUST_LOG is used when this is not given.
    #[arg(long, env = "REGCRED_LOG_LEVEL", value_name = "LEVEL", value_parser = parse_log_level)]
    log_level: Option<String>,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// What to do.
    pub command: Command,
    /// Deadline of each request to Google or Kubernetes.
    pub request_timeout: Duration,
    /// How to log.
    pub log: telemetry::Settings,
    /// `--dry-run`: stop after validation.
    pub dry_run: bool,
}

/// The validated command, holding what it needs and nothing else.
#[derive(Clone, Debug)]
pub enum Command {
    /// Keep the credentials fresh until stopped.
    Run(Plan),
    /// One refresh.
    Once(Plan),
    /// Print the auths document.
    Render {
        /// Where the credential comes from.
        source: source::Settings,
        /// The hosts to render it for.
        registries: Vec<RegistryHost>,
    },
    /// Put the credential provider on this node (its own flags, checked by
    /// the installer, which also runs the provider's own `--dry-run`).
    InstallCredentialProvider(install::InstallArgs),
    /// Answer the kubelet.
    CredentialProvider {
        /// Node identity: where the credential comes from without a pod token.
        source: source::Settings,
        /// Pod identity and the answer's shape.
        provider: provider::Settings,
    },
}

/// What `run` and `once` do: where credentials come from, where they go, when.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Where credentials come from.
    pub source: source::Settings,
    /// The hosts to write credentials for, sorted and de-duplicated.
    pub registries: Vec<RegistryHost>,
    /// The Kubernetes Secrets to write.
    pub secrets: Secrets,
    /// The files to write.
    pub files: sink::FileSettings,
    /// When to refresh and re-assert.
    pub timing: Timing,
    /// Where `/livez`, `/readyz` and `/metrics` are served, if anywhere.
    pub admin_addr: Option<SocketAddr>,
    /// Whether routine rotations also publish an Event.
    pub rotation_events: bool,
}

/// The Kubernetes Secrets to keep fresh.
#[derive(Clone, Debug)]
pub enum Secrets {
    /// No Secret: files only.
    None,
    /// These Secrets.
    Listed {
        /// `--secret`.
        targets: Vec<SecretTarget>,
        /// The data key each is written under.
        key: String,
    },
    /// One Secret in every selected namespace.
    FanOut(fanout::Settings),
}

impl Config {
    /// The log filter when neither --log-level nor RUST_LOG gives one: the
    /// kubelet shows a provider's stderr for every pull, so it says only
    /// what went wrong.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            Command::CredentialProvider { .. } => "warn",
            _ => "info",
        }
    }
}

/// A combination of flags that cannot work together; exit code 2. (Each
/// flag's own value is checked by clap as it parses.)
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `run` or `once` without a destination.
    #[error("nowhere to write: give at least one --secret or --output-file")]
    NoSink,
    /// Fan-out flags that do not fit together.
    #[error("{0}")]
    FanOut(&'static str),
    /// A delegation chain without its target.
    #[error("--impersonate-delegates needs --impersonate")]
    DelegatesWithoutTarget,
    /// Impersonation asked of a mode that hands the registry the key.
    #[error("--impersonate needs --auth oauth: --auth {0} gives the registry the key itself, not a token")]
    ImpersonateWithKeyAuth(AuthMode),
}

impl Cli {
    /// Applies the rules between flags.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let (request_timeout, log, dry_run) = match &self.action {
            Action::Run(w) | Action::Once(w) => w.common.globals(),
            Action::Render(c) => c.globals(),
            Action::CredentialProvider(p) => p.common.globals(),
            // It makes no requests, and checks its own flags (and the
            // provider's, with the provider's --dry-run) itself.
            Action::InstallCredentialProvider(args) => {
                let log = telemetry::Settings { format: args.log_format, level: None };
                (DEFAULT_REQUEST_TIMEOUT, log, false)
            }
        };
        let command = match self.action {
            Action::Run(args) => Command::Run(plan(args, AdminDefault::On)?),
            Action::Once(args) => Command::Once(plan(args, AdminDefault::Off)?),
            Action::Render(common) => {
                Command::Render { registries: registries(&common), source: source_settings(common)? }
            }
            Action::InstallCredentialProvider(args) => Command::InstallCredentialProvider(args),
            Action::CredentialProvider(args) => {
                let explicit = !args.common.registries.is_empty() && !args.common.all_registries;
                let patterns = if explicit {
                    registries(&args.common).iter().map(|r| r.to_string()).collect()
                } else {
                    provider::DEFAULT_PATTERNS.iter().map(|p| p.to_string()).collect()
                };
                let provider = provider::Settings {
                    pool_provider: args.workload_identity_provider.map(|p| p.0),
                    sts_endpoint: args.sts_endpoint,
                    impersonation_endpoint: args.common.impersonation_endpoint.clone(),
                    token_lifetime: args.common.token_lifetime,
                    patterns,
                };
                Command::CredentialProvider { source: source_settings(args.common)?, provider }
            }
        };
        Ok(Config { command, request_timeout, log, dry_run })
    }
}

/// `--request-timeout`'s default.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl CommonArgs {
    /// The settings every command shares: request deadline, logging, --dry-run.
    fn globals(&self) -> (Duration, telemetry::Settings, bool) {
        let log = telemetry::Settings { format: self.log.log_format, level: self.log.log_level.clone() };
        (self.request_timeout, log, self.dry_run)
    }
}

/// Whether the admin server listens when `--admin-addr` is not given.
enum AdminDefault {
    On,
    Off,
}

fn plan(args: WriteArgs, admin: AdminDefault) -> Result<Plan, ConfigError> {
    let WriteArgs { common, sinks } = args;
    let registries = registries(&common);
    let source = source_settings(common)?;
    let secrets = match fan_out(&sinks.fan_out, &sinks.secrets, &sinks.secret_key)? {
        Some(settings) => Secrets::FanOut(settings),
        None if sinks.secrets.is_empty() => Secrets::None,
        None => Secrets::Listed { targets: sinks.secrets, key: sinks.secret_key },
    };
    if matches!(secrets, Secrets::None) && sinks.output_files.is_empty() {
        return Err(ConfigError::NoSink);
    }
    let admin_addr = match (sinks.admin_addr, admin) {
        (Some(AdminAddr::Off), _) | (None, AdminDefault::Off) => None,
        (None, AdminDefault::On) => Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
        (Some(AdminAddr::At(addr)), _) => Some(addr),
    };
    Ok(Plan {
        source,
        registries,
        secrets,
        files: sink::FileSettings { paths: sinks.output_files, mode: sinks.output_file_mode },
        timing: Timing {
            refresh_before: sinks.refresh_before,
            jitter: sinks.jitter,
            resync_interval: sinks.resync_interval,
        },
        admin_addr,
        rotation_events: sinks.rotation_events,
    })
}

/// `--registry` and `--all-registries`, sorted and de-duplicated; the
/// default Container Registry hosts when neither is given.
fn registries(common: &CommonArgs) -> Vec<RegistryHost> {
    let mut registries = common.registries.clone();
    if common.all_registries {
        registries.extend(RegistryHost::all());
    }
    if registries.is_empty() {
        registries = RegistryHost::defaults();
    }
    registries.sort();
    registries.dedup();
    registries
}

/// `--auth`, `--key-file` and `--impersonate` with its companions.
fn source_settings(common: CommonArgs) -> Result<source::Settings, ConfigError> {
    let impersonate = match common.impersonate {
        None if !common.impersonate_delegates.is_empty() => return Err(ConfigError::DelegatesWithoutTarget),
        None => None,
        Some(_) if common.auth != AuthMode::OAuth => return Err(ConfigError::ImpersonateWithKeyAuth(common.auth)),
        Some(target) => Some(Impersonation {
            target,
            delegates: common.impersonate_delegates,
            endpoint: common.impersonation_endpoint,
        }),
    };
    Ok(source::Settings {
        auth: common.auth,
        key_file: common.key_file,
        impersonate,
        token_lifetime: common.token_lifetime,
    })
}

/// Validates the fan-out flags: one bare `--secret NAME`, one way of choosing
/// namespaces, and the options that only make sense with them.
fn fan_out(args: &FanOutArgs, secrets: &[SecretTarget], key: &str) -> Result<Option<fanout::Settings>, ConfigError> {
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
    let excludes = || DEFAULT_EXCLUDES.iter().map(|p| Pattern::new(p)).chain(args.exclude_namespaces.clone()).collect();
    let selection = match &args.namespace_selector {
        Some(selector) => Selection::Labels { selector: selector.clone(), excludes: excludes() },
        None if args.all_namespaces => Selection::All { excludes: excludes() },
        None => Selection::Names(args.namespaces.clone()),
    };
    Ok(Some(fanout::Settings {
        selection,
        secret_name,
        key: key.to_string(),
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

// Value parsers. clap prefixes each message with the flag and the value
// (`invalid value 'x' for '--flag <VALUE>': ...`), so they say only what is
// expected.

/// A duration within `range`, `what` explaining the range.
fn duration_in(s: &str, range: std::ops::RangeInclusive<Duration>, what: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if range.contains(&d) {
        Ok(d)
    } else {
        Err(what.to_string())
    }
}

fn parse_request_timeout(s: &str) -> Result<Duration, String> {
    let range = Duration::from_millis(100)..=Duration::from_secs(600);
    duration_in(s, range, "expected 100ms to 10m (the deadline of each request to Google or Kubernetes)")
}

fn parse_resync_interval(s: &str) -> Result<Duration, String> {
    duration_in(s, Duration::from_secs(1)..=Duration::MAX, "expected at least 1s")
}

fn parse_watch_timeout(s: &str) -> Result<Duration, String> {
    let range = Duration::from_secs(1)..=cluster::WATCH_TIMEOUT;
    duration_in(s, range, "expected 1s to 290s (the API server refuses a client-chosen watch timeout from 295s)")
}

/// IAM Credentials takes whole seconds, at most 12 hours.
fn parse_token_lifetime(s: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected whole seconds from 1s to 12h (43200s)";
    let d = duration_in(s, Duration::from_secs(1)..=source::MAX_TOKEN_LIFETIME, EXPECTED)?;
    if d.subsec_nanos() != 0 {
        return Err(EXPECTED.into());
    }
    Ok(d)
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err("expected octal permission bits such as 0600 or 0640".into()),
    }
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number, at least 1".into()),
    }
}

fn parse_namespace(s: &str) -> Result<String, String> {
    if is_dns_label(s) {
        Ok(s.to_string())
    } else {
        Err("expected a namespace name: a lower-case DNS label".into())
    }
}

fn parse_service_account(s: &str) -> Result<String, String> {
    if is_dns_subdomain(s) {
        Ok(s.to_string())
    } else {
        Err("expected a ServiceAccount name: a lower-case DNS subdomain".into())
    }
}

fn parse_selector(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("the selector is empty; use --all-namespaces for every namespace".into())
    } else {
        Ok(s.to_string())
    }
}

/// Kubernetes' rule for Secret and ConfigMap keys (which also refuses a key
/// starting with `..`).
fn parse_secret_key(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s != "."
        && !s.starts_with("..")
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(s.to_string())
    } else {
        Err("a Secret key may contain only letters, digits, '-', '_' and '.', and may not be '.' or start with '..'"
            .into())
    }
}

/// NAME@DOMAIN with a dotted domain, and nothing that would break the API path.
fn parse_email(s: &str) -> Result<String, String> {
    let s = s.trim();
    let clean = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    let ok = s.split_once('@').is_some_and(|(name, domain)| {
        clean(name) && clean(domain) && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
    });
    if ok {
        Ok(s.to_string())
    } else {
        Err("expected a service account email such as regcred@PROJECT.iam.gserviceaccount.com".into())
    }
}

/// `http(s)://HOST[:PORT]`, without a trailing slash.
fn parse_endpoint(s: &str) -> Result<String, String> {
    let endpoint = s.trim_end_matches('/');
    let host = endpoint.strip_prefix("https://").or_else(|| endpoint.strip_prefix("http://"));
    if host.is_none_or(|h| h.is_empty() || h.contains('/') || h.contains('?')) {
        return Err("expected http(s)://HOST[:PORT]".into());
    }
    Ok(endpoint.to_string())
}

fn parse_url(s: &str) -> Result<String, String> {
    if s.starts_with("https://") || s.starts_with("http://") {
        Ok(s.to_string())
    } else {
        Err("expected an http(s) URL".into())
    }
}

/// A workload identity pool provider's resource name.
#[derive(Clone, Debug)]
struct PoolProvider(String);

fn parse_pool_provider(s: &str) -> Result<PoolProvider, String> {
    let p = s.trim();
    let path = p.strip_prefix("//iam.googleapis.com/").unwrap_or("");
    if path.contains("/workloadIdentityPools/") && path.contains("/providers/") {
        Ok(PoolProvider(p.to_string()))
    } else {
        Err("expected //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER".into())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The validated configuration, or the error's text (clap's or ours).
    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["regcred"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.render().to_string())?;
        cli.into_config().map_err(|e| e.to_string())
    }

    fn plan(args: &[&str]) -> Plan {
        match parse(args).unwrap().command {
            Command::Run(plan) | Command::Once(plan) => plan,
            other => panic!("not run or once: {other:?}"),
        }
    }

    fn source(args: &[&str]) -> source::Settings {
        match parse(args).unwrap().command {
            Command::Render { source, .. } => source,
            other => panic!("not render: {other:?}"),
        }
    }

    /// The error for `args`, which must be refused.
    fn refused(args: &[&str]) -> String {
        match parse(args) {
            Ok(c) => panic!("{args:?} was accepted: {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_gcr_hosts_and_dockerconfigjson() {
        let p = plan(&["once", "--secret", "pull"]);
        assert_eq!(p.registries.len(), 5);
        let Secrets::Listed { targets, key } = &p.secrets else { panic!("{:?}", p.secrets) };
        assert_eq!(key, DOCKERCONFIGJSON_KEY);
        assert_eq!(targets, &vec![SecretTarget { namespace: None, name: "pull".into() }]);
        assert_eq!(p.timing.refresh_before, Duration::from_secs(900));
        assert_eq!(p.admin_addr, None, "once has no admin server unless asked");
        assert_eq!(plan(&["run", "--secret", "pull"]).admin_addr, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(plan(&["run", "--secret", "pull", "--admin-addr", "off"]).admin_addr, None);
        assert_eq!(
            plan(&["once", "--secret", "pull", "--admin-addr", "127.0.0.1:9"]).admin_addr,
            Some("127.0.0.1:9".parse().unwrap())
        );
    }

    #[test]
    fn registries_are_split_sorted_and_deduplicated() {
        let Command::Render { registries, .. } =
            parse(&["render", "--registry", "us.gcr.io,gcr.io", "--registry", "gcr.io"]).unwrap().command
        else {
            panic!()
        };
        let hosts: Vec<_> = registries.iter().map(|h| h.as_str()).collect();
        assert_eq!(hosts, ["gcr.io", "us.gcr.io"]);
        let Command::Render { registries, .. } = parse(&["render", "--all-registries"]).unwrap().command else {
            panic!()
        };
        assert!(registries.len() > 40);
    }

    #[test]
    fn other_keys_make_opaque_secrets() {
        let p = plan(&["once", "--secret", "ns/a,b", "--secret-key", "registry-auth.json"]);
        let Secrets::Listed { targets, key } = &p.secrets else { panic!("{:?}", p.secrets) };
        assert_eq!(key, "registry-auth.json");
        assert_eq!(targets[0], SecretTarget { namespace: Some("ns".into()), name: "a".into() });
    }

    #[test]
    fn fan_out_replaces_the_listed_secret() {
        let p = plan(&["run", "--secret", "pull", "--all-namespaces", "--exclude-namespace", "tmp-*"]);
        let Secrets::FanOut(f) = &p.secrets else { panic!("{:?}", p.secrets) };
        assert_eq!(f.secret_name, "pull");
        assert!(!f.selection.includes("tmp-1") && !f.selection.includes("kube-system") && f.selection.includes("a"));
        assert!(refused(&["run", "--secret", "ns/pull", "--all-namespaces"]).contains("exactly one --secret NAME"));
        assert!(refused(&["run", "--secret", "p", "--prune", "--all-namespaces"]).contains("--namespace-selector"));
        assert!(refused(&["run", "--secret", "p", "--namespace", "a", "--all-namespaces"]).contains("only one of"));
    }

    #[test]
    fn each_bad_value_is_refused_naming_its_flag() {
        assert_eq!(refused(&["once"]), ConfigError::NoSink.to_string());
        let cases: &[(&[&str], &str)] = &[
            (&["once", "--secret", "Bad/Name"], "'--secret <[NAMESPACE/]NAME>': expected [NAMESPACE/]NAME"),
            (&["once", "--secret", "a/b/c"], "invalid value 'a/b/c' for '--secret"),
            (&["once", "--secret", "x", "--registry", "docker.io"], "'--registry <HOST>': not a Google registry"),
            (&["once", "--secret", "x", "--secret-key", "a/b"], "'--secret-key <KEY>': a Secret key may contain"),
            (&["once", "--secret", "x", "--secret-key", "..data"], "invalid value '..data' for '--secret-key"),
            (&["run", "--secret", "x", "--admin-addr", "nope"], "expected IP:PORT"),
            (&["once", "--secret", "x", "--auth", "password"], "invalid value 'password' for '--auth"),
            (&["once", "--secret", "x", "--output-file-mode", "999"], "expected octal permission bits"),
            (&["once", "--secret", "x", "--refresh-before", "soon"], "use a duration such as 90s"),
            (
                &["once", "--secret", "x", "--resync-interval", "0s"],
                "'--resync-interval <DURATION>': expected at least 1s",
            ),
            (&["render", "--request-timeout", "11m"], "'--request-timeout <DURATION>': expected 100ms to 10m"),
            (&["once", "--secret", "x", "--namespace", "Bad_NS"], "'--namespace <NAME>': expected a namespace name"),
            (&["run", "--secret", "x", "--max-concurrent-writes", "0"], "expected a whole number, at least 1"),
            (&["run", "--secret", "x", "--watch-timeout", "300s"], "expected 1s to 290s"),
            (&["run", "--secret", "x", "--namespace-selector", " "], "use --all-namespaces for every namespace"),
            (&["run", "--secret", "x", "--log-level", "verbose"], "expected error, warn, info, debug, trace or off"),
            (&["credential-provider", "--workload-identity-provider", "pool"], "workloadIdentityPools/POOL"),
            (&["credential-provider", "--sts-endpoint", "sts.local"], "expected an http(s) URL"),
        ];
        for (args, expected) in cases {
            let e = refused(args);
            assert!(e.contains(expected), "{args:?}: {e}");
        }
        assert!(parse(&["once", "--secret", "x", "--secret-key", ".x..y"]).is_ok());
        let all = ["once", "--secret", "x", "--all-namespaces", "--exclude-namespace"];
        assert!(parse(&[&all[..], &["tmp-*,ci-??"]].concat()).is_ok());
        for bad in ["Kube_*", "a b", "x-", &"a".repeat(64)] {
            let e = refused(&[&all[..], &[bad]].concat());
            assert!(e.contains("expected a namespace name or a glob"), "{bad}: {e}");
        }
    }

    #[test]
    fn impersonation_flags_are_validated() {
        let s = source(&["render"]);
        assert_eq!((s.impersonate, s.token_lifetime), (None, None));

        let s = source(&[
            "render",
            "--impersonate",
            "pull@p.iam.gserviceaccount.com",
            "--impersonate-delegates",
            "a@p.iam.gserviceaccount.com,b@p.iam.gserviceaccount.com",
            "--token-lifetime",
            "2h",
            "--impersonation-endpoint",
            "http://127.0.0.1:9999/",
        ]);
        assert_eq!(
            s.impersonate,
            Some(Impersonation {
                target: "pull@p.iam.gserviceaccount.com".into(),
                delegates: vec!["a@p.iam.gserviceaccount.com".into(), "b@p.iam.gserviceaccount.com".into()],
                endpoint: "http://127.0.0.1:9999".into(),
            })
        );
        assert_eq!(s.token_lifetime, Some(Duration::from_secs(7200)));
        let s = source(&["render", "--impersonate", "pull@p.iam.gserviceaccount.com"]);
        assert_eq!(s.impersonate.unwrap().endpoint, "https://iamcredentials.googleapis.com");

        let email = "expected a service account email";
        assert!(refused(&["render", "--impersonate", "pull"]).contains(email));
        assert!(refused(&["render", "--impersonate", "a/b@c.d"]).contains(email));
        let e = refused(&["render", "--impersonate", "a@b.c", "--impersonate-delegates", "x@y.z,nope"]);
        assert!(e.contains("invalid value 'nope' for '--impersonate-delegates") && e.contains(email), "{e}");
        assert_eq!(
            refused(&["render", "--impersonate-delegates", "x@y.z"]),
            ConfigError::DelegatesWithoutTarget.to_string()
        );
        assert_eq!(
            refused(&["render", "--impersonate", "a@b.c", "--auth", "json-key-base64"]),
            "--impersonate needs --auth oauth: --auth json-key-base64 gives the registry the key itself, not a token"
        );
        for bad in ["13h", "1500ms", "0s"] {
            let e = refused(&["render", "--token-lifetime", bad]);
            assert!(e.contains("expected whole seconds from 1s to 12h"), "{bad}: {e}");
        }
        for bad in ["iam.local", "https://h/v1"] {
            assert!(refused(&["render", "--impersonation-endpoint", bad]).contains("expected http(s)://HOST[:PORT]"));
        }
    }

    #[test]
    fn the_provider_answers_for_the_asked_registries_or_the_google_patterns() {
        let Command::CredentialProvider { provider, .. } = parse(&["credential-provider"]).unwrap().command else {
            panic!()
        };
        assert_eq!(provider.patterns, provider::DEFAULT_PATTERNS);
        assert_eq!(provider.pool_provider, None);
        let Command::CredentialProvider { provider, .. } =
            parse(&["credential-provider", "--registry", "eu.gcr.io"]).unwrap().command
        else {
            panic!()
        };
        assert_eq!(provider.patterns, ["eu.gcr.io"]);
    }
}
