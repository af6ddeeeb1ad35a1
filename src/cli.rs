//! The command line, assembled from the components' own flags.
//!
//! Each component owns its flags and the types that parse them
//! (`source::Args`, `fanout::Args`, `provider::Args`, ...), as kubert's
//! `ClientArgs` and `AdminArgs` do; relations between flags are declared to
//! clap where it can say them. What is left here is composition, into a
//! [`Config`] whose [`Command`] cannot hold an impossible combination. Every
//! flag also reads `REGCRED_<FLAG>` from the environment.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::acr;
use crate::admin::AdminAddr;
use crate::aws;
use crate::fanout;
use crate::leader;
use crate::provider::{self, install};
use crate::registry::{self, RegistryHost};
use crate::schedule::{self, duration_in, Timing};
use crate::sink::{self, SecretKey, SecretTarget};
use crate::source;
use crate::telemetry;

/// regcred keeps Kubernetes image-pull credentials for Google's container
/// registries (gcr.io, *.gcr.io, LOCATION-docker.pkg.dev), Amazon ECR
/// (ACCOUNT.dkr.ecr.REGION.amazonaws.com, public.ecr.aws) and Azure
/// Container Registry (NAME.azurecr.io) fresh.
///
/// It mints a short-lived token for each registry's cloud (a Google OAuth
/// access token, an ECR authorization token, an ACR refresh token), renders
/// one Docker config.json "auths" document, and writes it to Kubernetes
/// Secrets and/or files, again before each token expires.
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
    Run(RunArgs),
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

/// Flags of `run`: those of `once`, and leader election.
#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    write: WriteArgs,
    #[command(flatten)]
    leader: leader::Args,
}

/// Flags of `credential-provider`, set in the `args` (or `env`) of the
/// kubelet's CredentialProviderConfig.
#[derive(Debug, Args)]
struct ProviderArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    provider: provider::Args,
}

/// Flags every command takes.
#[derive(Debug, Args)]
struct CommonArgs {
    #[command(flatten)]
    source: source::Args,

    #[command(flatten)]
    registries: registry::Args,

    #[command(flatten)]
    aws: aws::Args,

    #[command(flatten)]
    acr: acr::Args,

    /// Check the flags and environment variables and exit (0 valid, 2 not, with
    /// the same one-line message a real start would give), without reading
    /// credentials or contacting Google or Kubernetes.
    #[arg(long, env = "REGCRED_DRY_RUN")]
    dry_run: bool,

    /// Timeout for each request to Google or Kubernetes (100ms to 10m).
    #[arg(long, env = "REGCRED_REQUEST_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_request_timeout)]
    request_timeout: Duration,

    #[command(flatten)]
    log: telemetry::Args,
}

/// Flags of the commands that write credentials somewhere: where, and when.
#[derive(Debug, Args)]
struct WriteArgs {
    #[command(flatten)]
    common: CommonArgs,

    #[command(flatten)]
    sinks: sink::Args,

    #[command(flatten)]
    timing: schedule::Args,

    /// Also publish a Kubernetes Event on the Secret at every routine rotation
    /// (failures and recoveries are always published).
    #[arg(long, env = "REGCRED_ROTATION_EVENTS")]
    rotation_events: bool,

    /// Address of the admin server (/livez, /readyz, /metrics). Default
    /// 0.0.0.0:8080 for `run`; off for `once` unless given. `off` disables it.
    #[arg(long, env = "REGCRED_ADMIN_ADDR", value_name = "ADDR")]
    admin_addr: Option<AdminAddr>,

    #[command(flatten)]
    fan_out: fanout::Args,
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
    /// Keep the credentials fresh until stopped; under leader election
    /// only while this replica holds the Lease.
    Run(Plan, Option<leader::Settings>),
    /// One refresh.
    Once(Plan),
    /// Print the auths document.
    Render {
        /// Where Google credentials come from.
        source: source::Settings,
        /// Where AWS credentials and ECR tokens come from.
        aws: aws::Settings,
        /// Where Azure credentials and ACR tokens come from.
        acr: acr::Settings,
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
        /// Node identity for ECR images.
        aws: aws::Settings,
        /// Node identity for ACR images.
        acr: acr::Settings,
        /// Pod identity and the answer's shape.
        provider: provider::Settings,
    },
}

/// What `run` and `once` do: where credentials come from, where they go, when.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Where Google credentials come from.
    pub source: source::Settings,
    /// Where AWS credentials and ECR tokens come from.
    pub aws: aws::Settings,
    /// Where Azure credentials and ACR tokens come from.
    pub acr: acr::Settings,
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
        key: SecretKey,
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

/// A combination of flags that cannot work together and that clap cannot
/// express; exit code 2. (clap checks each value and the other relations.)
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `run` or `once` without a destination.
    #[error("nowhere to write: give at least one --secret or --output-file")]
    NoSink,
    /// Fan-out flags that do not fit together.
    #[error(transparent)]
    FanOut(#[from] fanout::FanOutError),
    /// Impersonation asked of a mode that hands the registry the key.
    #[error(transparent)]
    ImpersonateWithKeyAuth(#[from] source::ImpersonateWithKeyAuth),
    /// Leader-election timings that could let two replicas write at once.
    #[error(transparent)]
    LeaderTiming(#[from] leader::LeaderTimingError),
    /// `credential-provider --registry` with another cloud's host: the flag
    /// names the keys of Google's answer; ECR and ACR images are answered
    /// for their own host without it.
    #[error("credential-provider's --registry names the keys of Google's answer; {host} is {provider}'s: leave it out (ECR and ACR images are answered for their own registry) and list its pattern in the kubelet's matchImages")]
    ProviderHost {
        /// The host asked for.
        host: String,
        /// Its cloud.
        provider: &'static str,
    },
    /// `--auth json-key`/`json-key-base64` beside another cloud's host: the
    /// Google key is no credential for it.
    #[error("--auth {auth} hands Google registries the key itself; {host} is {provider}'s and takes its own token: use --auth oauth with it")]
    KeyAuthWithOtherCloud {
        /// `--auth`.
        auth: source::AuthMode,
        /// The other cloud's host.
        host: String,
        /// Its cloud.
        provider: &'static str,
    },
}

impl Cli {
    /// Hands each component its flags, and applies the rules between them.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let (request_timeout, log, dry_run) = match &self.action {
            Action::Run(RunArgs { write: w, .. }) | Action::Once(w) => w.common.globals(),
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
            Action::Run(RunArgs { write, leader }) => {
                Command::Run(write.into_plan(Some(RUN_ADMIN_ADDR))?, leader.into_settings()?)
            }
            Action::Once(args) => Command::Once(args.into_plan(None)?),
            Action::Render(common) => {
                let registries = common.registries.hosts();
                let source = common.source.into_settings()?;
                check_key_auth(&source, &registries)?;
                Command::Render { registries, source, aws: common.aws.into_settings(), acr: common.acr.into_settings() }
            }
            Action::InstallCredentialProvider(args) => Command::InstallCredentialProvider(args),
            Action::CredentialProvider(ProviderArgs { common, provider }) => {
                if let Some(h) = common.registries.hosts().into_iter().find(|h| !h.is_google()) {
                    return Err(ConfigError::ProviderHost { host: h.to_string(), provider: h.cloud().provider() });
                }
                let provider = provider.into_settings(&common.source, &common.registries);
                Command::CredentialProvider {
                    source: common.source.into_settings()?,
                    aws: common.aws.into_settings(),
                    acr: common.acr.into_settings(),
                    provider,
                }
            }
        };
        Ok(Config { command, request_timeout, log, dry_run })
    }
}

/// A Google key handed to registries as the password is Google's alone.
fn check_key_auth(source: &source::Settings, registries: &[RegistryHost]) -> Result<(), ConfigError> {
    match registries.iter().find(|h| !h.is_google()) {
        Some(h) if source.auth != source::AuthMode::OAuth => Err(ConfigError::KeyAuthWithOtherCloud {
            auth: source.auth,
            host: h.to_string(),
            provider: h.cloud().provider(),
        }),
        _ => Ok(()),
    }
}

/// `--request-timeout`'s default.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn parse_request_timeout(s: &str) -> Result<Duration, String> {
    let range = Duration::from_millis(100)..=Duration::from_secs(600);
    duration_in(s, range, "expected 100ms to 10m (the deadline of each request to Google or Kubernetes)")
}

impl CommonArgs {
    /// The settings every command shares: request deadline, logging, --dry-run.
    fn globals(&self) -> (Duration, telemetry::Settings, bool) {
        (self.request_timeout, self.log.settings(), self.dry_run)
    }
}

/// Where `run` serves its admin endpoints unless `--admin-addr` says otherwise.
const RUN_ADMIN_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);

impl WriteArgs {
    /// The plan, with the admin server at `default_admin` unless `--admin-addr` is given.
    fn into_plan(self, default_admin: Option<SocketAddr>) -> Result<Plan, ConfigError> {
        let WriteArgs { common, sinks, timing, rotation_events, admin_addr, fan_out } = self;
        let registries = common.registries.hosts();
        let source = common.source.into_settings()?;
        check_key_auth(&source, &registries)?;
        let aws = common.aws.into_settings();
        let acr = common.acr.into_settings();
        let secrets = match fan_out.into_settings(&sinks.secrets, &sinks.secret_key)? {
            Some(settings) => Secrets::FanOut(settings),
            None if sinks.secrets.is_empty() => Secrets::None,
            None => Secrets::Listed { targets: sinks.secrets.clone(), key: sinks.secret_key.clone() },
        };
        let files = sinks.files();
        if matches!(secrets, Secrets::None) && files.paths.is_empty() {
            return Err(ConfigError::NoSink);
        }
        let admin_addr = match admin_addr {
            Some(AdminAddr::Off) => None,
            Some(AdminAddr::At(addr)) => Some(addr),
            None => default_admin,
        };
        Ok(Plan { source, aws, acr, registries, secrets, files, timing: timing.timing(), admin_addr, rotation_events })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The validated configuration, or the error's text (clap's or ours).
    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli = Cli::try_parse_from([&["regcred"], args].concat()).map_err(|e| e.render().to_string())?;
        cli.into_config().map_err(|e| e.to_string())
    }

    fn plan(args: &[&str]) -> Plan {
        match parse(args).unwrap().command {
            Command::Run(plan, _) | Command::Once(plan) => plan,
            other => panic!("not run or once: {other:?}"),
        }
    }

    /// The error for `args`, which must be refused.
    fn refused(args: &[&str]) -> String {
        parse(args).map(|c| panic!("{args:?} was accepted: {c:?}")).unwrap_err()
    }

    #[test]
    fn cli_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_gcr_hosts_and_dockerconfigjson() {
        let p = plan(&["once", "--secret", "pull"]);
        let mut defaults = RegistryHost::defaults();
        defaults.sort();
        assert_eq!(p.registries, defaults);
        let Secrets::Listed { targets, key } = &p.secrets else { panic!("{:?}", p.secrets) };
        assert_eq!((key.as_str(), key.secret_type()), (".dockerconfigjson", "kubernetes.io/dockerconfigjson"));
        assert_eq!(targets, &vec![SecretTarget { namespace: None, name: "pull".into() }]);
        assert_eq!(p.timing.refresh_before, Duration::from_secs(900));
        assert_eq!(p.admin_addr, None, "once has no admin server unless asked");
        let admin = |cmd: &str, extra: &[&str]| plan(&[&[cmd, "--secret", "p"], extra].concat()).admin_addr;
        assert_eq!(admin("run", &[]).map(|a| a.to_string()).as_deref(), Some("0.0.0.0:8080"));
        assert_eq!(admin("run", &["--admin-addr", "off"]), None);
        assert_eq!(admin("once", &["--admin-addr", "127.0.0.1:9"]), "127.0.0.1:9".parse().ok());
        assert_eq!(refused(&["once"]), ConfigError::NoSink.to_string());
    }

    #[test]
    fn registries_are_split_sorted_and_deduplicated() {
        let render = |args: &[&str]| match parse(&[&["render"], args].concat()).unwrap().command {
            Command::Render { registries, .. } => registries,
            other => panic!("{other:?}"),
        };
        let hosts = render(&["--registry", "us.gcr.io,gcr.io", "--registry", "gcr.io"]);
        assert_eq!(hosts.iter().map(|h| h.as_str()).collect::<Vec<_>>(), ["gcr.io", "us.gcr.io"]);
        let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        let mixed = render(&["--registry", &format!("gcr.io,{ecr},public.ecr.aws")]);
        assert_eq!(
            mixed.iter().map(|h| h.cloud().provider()).collect::<Vec<_>>(),
            ["Amazon ECR", "Google", "Amazon ECR Public"]
        );
        assert!(render(&["--all-registries"]).len() > 40);
    }

    #[test]
    fn other_clouds_refuse_what_only_google_can_do() {
        let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        let e = refused(&["render", "--auth", "json-key", "--registry", &format!("gcr.io,{ecr}")]);
        assert!(e.contains(ecr) && e.contains("Amazon ECR") && e.contains("--auth oauth"), "{e}");
        let e = refused(&["credential-provider", "--registry", ecr]);
        assert!(e.contains(ecr) && e.contains("names the keys of Google's answer"), "{e}");
        let e = refused(&["render", "--registry", "123.dkr.ecr.eu-west-1.amazonaws.com"]);
        assert!(e.contains("ACCOUNT.dkr.ecr.REGION.amazonaws.com"), "{e}");
        let e = refused(&["render", "--aws-role-arn", "puller"]);
        assert!(e.contains("IAM role ARN"), "{e}");
    }

    #[test]
    fn acr_hosts_refuse_what_only_google_can_do() {
        let acr = "myregistry.azurecr.io";
        for cmd in [&["render"][..], &["once", "--output-file", "/f"]] {
            let e = refused(&[cmd, &["--auth", "json-key", "--registry", &format!("gcr.io,{acr}")]].concat());
            assert!(e.contains(acr) && e.contains("Azure Container Registry") && e.contains("--auth oauth"), "{e}");
        }
        let e = refused(&["credential-provider", "--registry", acr]);
        assert!(e.contains(acr) && e.contains("ECR and ACR images are answered for their own registry"), "{e}");
        let e = refused(&["render", "--registry", "reg.azurecr.io"]);
        assert!(e.contains("expected NAME.azurecr.io, NAME.azurecr.cn or NAME.azurecr.us"), "{e}");
        let e = refused(&["render", "--azure-client-id", "app"]);
        assert!(e.contains("is not a client id"), "{e}");
        let Command::Render { registries, acr: settings, .. } =
            parse(&["render", "--registry", acr, "--azure-identity", "managed-identity"]).unwrap().command
        else {
            panic!("not render")
        };
        assert_eq!(registries[0].cloud().provider(), "Azure Container Registry");
        assert_eq!(settings.identity, acr::IdentityKind::ManagedIdentity);
    }

    #[test]
    fn other_keys_make_opaque_secrets() {
        let p = plan(&["once", "--secret", "ns/a,b", "--secret-key", "registry-auth.json", "--output-file", "/f"]);
        let Secrets::Listed { targets, key } = &p.secrets else { panic!("{:?}", p.secrets) };
        assert_eq!((key.as_str(), key.secret_type()), ("registry-auth.json", "Opaque"));
        assert_eq!(targets[0], SecretTarget { namespace: Some("ns".into()), name: "a".into() });
        assert_eq!(p.files.paths, [std::path::PathBuf::from("/f")]);
    }

    #[test]
    fn fan_out_replaces_the_listed_secret() {
        let p = plan(&["run", "--secret", "pull", "--all-namespaces", "--exclude-namespace", "tmp-*"]);
        let Secrets::FanOut(f) = &p.secrets else { panic!("{:?}", p.secrets) };
        assert_eq!((f.secret_name.as_str(), f.key.as_str()), ("pull", ".dockerconfigjson"));
        assert!(!f.selection.includes("tmp-1") && !f.selection.includes("kube-system") && f.selection.includes("a"));
    }

    #[test]
    fn impersonation_is_for_oauth_and_delegates_need_a_target() {
        let (target, delegate) =
            ("puller@project-1.iam.gserviceaccount.com", "hop-one@project-1.iam.gserviceaccount.com");
        let source = |args: &[&str]| match parse(&[&["render"], args].concat()).unwrap().command {
            Command::Render { source, .. } => source,
            other => panic!("{other:?}"),
        };
        assert_eq!((source(&[]).impersonate, source(&[]).token_lifetime), (None, None));
        let s = source(&["--impersonate", target, "--impersonate-delegates", delegate, "--token-lifetime", "2h"]);
        let imp = s.impersonate.unwrap();
        assert_eq!((imp.target.as_str(), imp.delegates[0].as_str()), (target, delegate));
        assert_eq!(imp.endpoint.to_string(), "https://iamcredentials.googleapis.com");
        assert_eq!(s.token_lifetime, Some(Duration::from_secs(7200)));
        let e = refused(&["render", "--impersonate-delegates", delegate]);
        assert!(e.contains("required arguments were not provided:\n  --impersonate <SERVICE_ACCOUNT_EMAIL>"), "{e}");
        assert_eq!(
            refused(&["render", "--impersonate", target, "--auth", "json-key-base64"]),
            "--impersonate needs --auth oauth: --auth json-key-base64 gives the registry the key itself, not a token"
        );
    }

    #[test]
    fn the_provider_answers_for_the_asked_registries_or_the_google_patterns() {
        let provider = |args: &[&str]| match parse(&[&["credential-provider"], args].concat()).unwrap().command {
            Command::CredentialProvider { provider, .. } => provider,
            other => panic!("{other:?}"),
        };
        let p = provider(&["--impersonation-endpoint", "http://127.0.0.1:1", "--token-lifetime", "10m"]);
        assert!(p.patterns == provider::DEFAULT_PATTERNS && p.pool_provider.is_none());
        assert_eq!(p.impersonation_endpoint.to_string(), "http://127.0.0.1:1");
        assert_eq!(p.token_lifetime, Some(Duration::from_secs(600)));
        assert_eq!(provider(&["--registry", "eu.gcr.io"]).patterns, ["eu.gcr.io"]);
        assert_eq!(provider(&["--registry", "eu.gcr.io", "--all-registries"]).patterns, provider::DEFAULT_PATTERNS);
    }

    #[test]
    fn leader_election_is_for_run_only_with_timings_that_make_one_writer() {
        let settings = |extra: &[&str]| match parse(&[&["run", "--secret", "p"], extra].concat()).unwrap().command {
            Command::Run(_, leader) => leader,
            other => panic!("{other:?}"),
        };
        assert_eq!(settings(&[]), None);
        let on = settings(&["--leader-elect"]).unwrap();
        assert_eq!(
            (on.lease_name.as_str(), on.namespace, on.lease_duration, on.renew_deadline, on.retry_period),
            ("regcred", None, Duration::from_secs(15), Duration::from_secs(10), Duration::from_secs(2)),
            "client-go's defaults"
        );
        assert!(refused(&["once", "--secret", "p", "--leader-elect"]).contains("--leader-elect"));
        let lease = ["run", "--secret", "p", "--leader-elect", "--leader-elect-lease-duration"];
        assert!(
            refused(&[&lease[..], &["10s"]].concat()).contains("must be shorter than --leader-elect-lease-duration")
        );
        assert!(refused(&[&lease[..], &["2500ms"]].concat()).contains("whole seconds"));
        let retry = ["run", "--secret", "p", "--leader-elect", "--leader-elect-retry-period", "6s"];
        assert!(refused(&retry).contains("at most half the --leader-elect-renew-deadline"));
        assert!(refused(&["run", "--secret", "p", "--leader-elect-lease-name", "A_B"]).contains("DNS name"));
    }
}
