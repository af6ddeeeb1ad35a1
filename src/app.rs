//! Wiring: from a validated [`Config`] to a running refresher.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{debug, info};

use crate::acr;
use crate::admin::{self, AdminState};
use crate::aws;
use crate::cli::{Command, Config, Plan, Secrets};
use crate::events::Events;
use crate::fanout::FanOut;
use crate::health::Health;
use crate::http::{HttpClient, HttpError};
use crate::leader::Elector;
use crate::metrics::Metrics;
use crate::provider;
use crate::refresh::{Group, NamedSink, PassError, Refresher};
use crate::registry::{Cloud, RegistryHost};
use crate::sink::{FileSink, SecretSink};
use crate::source::{self, CredentialSource as _, SourceError};

/// Why regcred stopped with an error. Each variant maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad flags or files: the user must change something (exit 2).
    #[error(transparent)]
    Config(#[from] crate::cli::ConfigError),
    /// No usable Google credentials were found.
    #[error(transparent)]
    Credentials(SourceError),
    /// No usable credentials of another cloud were found for these hosts.
    #[error("{provider} credential for {hosts}: {source}")]
    CloudCredentials {
        /// The cloud ("Amazon ECR").
        provider: &'static str,
        /// The hosts that need them, comma-separated.
        hosts: String,
        /// Why none were found.
        source: Box<SourceError>,
    },
    /// No usable Kubernetes client configuration.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// Anything else that stops regcred before its first refresh.
    #[error("{0}")]
    Setup(String),
    /// The admin address is taken or not allowed.
    #[error("cannot listen on the admin address {addr}: {source}; choose another --admin-addr or `off`")]
    AdminBind {
        /// `--admin-addr`.
        addr: std::net::SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The refresh itself failed (exit 1).
    #[error("{0}")]
    Refresh(PassError),
    /// `install-credential-provider` could not install or keep the files.
    #[error(transparent)]
    Install(crate::provider::install::InstallError),
    /// `credential-provider` could not answer the kubelet.
    #[error(transparent)]
    Provider(crate::provider::ProviderError),
    /// `once` was stopped by a signal before it finished (exit 1).
    #[error("interrupted before the refresh finished; the previous credential is unchanged where no write completed")]
    Interrupted,
}

impl AppError {
    /// 2 for anything the user must fix before a retry can help, 1 for a
    /// refresh that failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Refresh(_) | AppError::Interrupted => 1,
            AppError::Provider(e) => e.exit_code(),
            AppError::Install(e) => e.exit_code(),
            _ => 2,
        }
    }
}

impl From<HttpError> for AppError {
    fn from(e: HttpError) -> Self {
        AppError::Setup(e.to_string())
    }
}

/// Runs the configured command until done or until `shutdown` flips.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), AppError> {
    // Every command but the installer talks to Google.
    let timeout = config.request_timeout;
    let http = || HttpClient::new(timeout);
    if config.dry_run {
        check_cloud_environments(&config.command, &http()?)?;
        println!("regcred: the flags and environment are valid; nothing was done (--dry-run)");
        return Ok(());
    }
    match config.command {
        Command::InstallCredentialProvider(args) => {
            provider::install::run(args, shutdown).await.map_err(AppError::Install)
        }
        Command::CredentialProvider { source, aws, acr, provider } => {
            credential_provider(&source, &aws, &acr, &provider, &http()?).await.map_err(AppError::Provider)
        }
        Command::Render { source, aws, acr, registries } => {
            let groups = groups(&registries, &source, &aws, &acr, &http()?)?;
            let doc = crate::refresh::render_once(&groups).await.map_err(AppError::Refresh)?;
            let mut out = doc.expose_bytes().to_vec();
            out.push(b'\n');
            use std::io::Write as _;
            std::io::stdout().write_all(&out).map_err(|e| AppError::Setup(format!("cannot write to stdout: {e}")))
        }
        Command::Once(plan) => {
            let (refresher, _) = refresher(plan, timeout, &http()?, shutdown.clone()).await?;
            // A CronJob's pod may be stopped mid-run: give up at once rather
            // than sit through retries. Writes are atomic, so nothing is half-done.
            let mut shutdown = shutdown;
            let summary = tokio::select! {
                result = refresher.once() => result.map_err(AppError::Refresh)?,
                _ = shutdown.changed() => return Err(AppError::Interrupted),
            };
            println!("{summary}");
            Ok(())
        }
        Command::Run(plan, None) => {
            let (refresher, _) = refresher(plan, timeout, &http()?, shutdown.clone()).await?;
            refresher.run(shutdown).await;
            info!("shutting down");
            Ok(())
        }
        Command::Run(plan, Some(election)) => {
            let (client, namespace) = crate::cluster::connect(timeout).await?;
            let (refresher, (health, metrics)) = refresher(plan, timeout, &http()?, shutdown.clone()).await?;
            let elector = Elector::new(client, &namespace, election, health, metrics);
            elector.run(shutdown, |shutdown| refresher.run(shutdown), || refresher.stand_down()).await;
            info!("shutting down");
            Ok(())
        }
    }
}

/// The refresh loop for `plan`, with its sinks and, when asked for, the
/// admin server already listening; and what that server reports from.
async fn refresher(
    plan: Plan,
    request_timeout: Duration,
    http: &HttpClient,
    shutdown: watch::Receiver<bool>,
) -> Result<(Refresher, (Arc<Health>, Arc<Metrics>)), AppError> {
    let groups = groups(&plan.registries, &plan.source, &plan.aws, &plan.acr, http)?;
    for g in &groups {
        info!(source = %g.source.describe(), registries = g.hosts.len(), "credential source");
    }

    let metrics = Arc::new(Metrics::new());
    let (sinks, events) = build_sinks(&plan, request_timeout).await?;
    // Ready until a credential is this far past its refresh point: half the
    // refresh margin, so /readyz fails well before the credential expires.
    let grace = plan.timing.refresh_before / 2;
    let stale_after = plan.timing.resync_interval.saturating_mul(3).max(Duration::from_secs(60));
    let health = Arc::new(Health::new(sinks.iter().map(|s| s.sink.name().to_string()), grace, stale_after));

    if let Some(addr) = plan.admin_addr {
        let listener = admin::bind(addr).await.map_err(|source| AppError::AdminBind { addr, source })?;
        let state = AdminState { health: health.clone(), metrics: metrics.clone() };
        tokio::spawn(admin::serve(listener, state, shutdown));
    }
    let reporters = (health.clone(), metrics.clone());
    Ok((Refresher { groups, sinks, timing: plan.timing, metrics, health, events }, reporters))
}

/// The hosts grouped by the credential that serves them, each group with
/// its source: one Google source for every Google host, one ECR token per
/// ECR registry (account and region), one for ECR Public, one per ACR
/// registry (its refresh token is that registry's alone). A cloud's
/// credentials are looked for only when one of its hosts is asked for.
fn groups(
    hosts: &[RegistryHost],
    google: &source::Settings,
    aws: &aws::Settings,
    azure: &acr::Settings,
    http: &HttpClient,
) -> Result<Vec<Group>, AppError> {
    let mut by_cloud: std::collections::BTreeMap<&Cloud, Vec<RegistryHost>> = Default::default();
    for host in hosts {
        by_cloud.entry(host.cloud()).or_default().push(host.clone());
    }
    let aws_credentials = aws_credentials(hosts, aws, http)?;
    let mut groups = Vec::new();
    for (cloud, hosts) in by_cloud {
        // Exhaustive, so that a new cloud's host kind cannot fall into another's source.
        const FOUND: &str = "AWS credentials are discovered whenever an AWS host is asked for";
        let source = match cloud {
            Cloud::Google => source::discover(google, http).map_err(AppError::Credentials)?,
            Cloud::Ecr(registry) => aws::ecr_source(registry, aws_credentials.clone().expect(FOUND), aws, http),
            Cloud::EcrPublic => aws::ecr_public_source(aws_credentials.clone().expect(FOUND), aws, http),
            Cloud::Acr(registry) => {
                let source = acr::discover(registry.clone(), azure, http.clone()).map_err(|source| {
                    AppError::CloudCredentials {
                        provider: cloud.provider(),
                        hosts: registry.to_string(),
                        source: Box::new(source),
                    }
                })?;
                Arc::new(source)
            }
        };
        groups.push(Group { source, hosts });
    }
    Ok(groups)
}

/// The AWS credentials that the ECR hosts among `hosts` share; `None`
/// without any.
fn aws_credentials(
    hosts: &[RegistryHost],
    aws: &aws::Settings,
    http: &HttpClient,
) -> Result<Option<Arc<dyn aws::AwsCredentialSource>>, AppError> {
    let aws_hosts: Vec<&RegistryHost> =
        hosts.iter().filter(|h| matches!(h.cloud(), Cloud::Ecr(_) | Cloud::EcrPublic)).collect();
    let Some(first) = aws_hosts.first() else { return Ok(None) };
    aws::discover(aws, http).map(Some).map_err(|source| AppError::CloudCredentials {
        provider: first.cloud().provider(),
        hosts: aws_hosts.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", "),
        source: Box::new(source),
    })
}

/// What `--dry-run` checks of the clouds' credentials: the parts of their
/// discovery that read no file and make no request. For ECR hosts, the AWS
/// chain's variables (AWS_ROLE_ARN's form, the pairs that go together); for
/// ACR hosts, that the identity asked for has every variable it needs. A
/// chart's injected AWS_ROLE_ARN is checked here, before any pod runs.
fn check_cloud_environments(command: &Command, http: &HttpClient) -> Result<(), AppError> {
    let (hosts, aws, azure) = match command {
        Command::Run(plan, _) | Command::Once(plan) => (&plan.registries, &plan.aws, &plan.acr),
        Command::Render { registries, aws, acr, .. } => (registries, aws, acr),
        Command::InstallCredentialProvider(_) | Command::CredentialProvider { .. } => return Ok(()),
    };
    aws_credentials(hosts, aws, http)?;
    // One identity serves every ACR registry: checked once.
    let acr_hosts: Vec<&RegistryHost> = hosts.iter().filter(|h| matches!(h.cloud(), Cloud::Acr(_))).collect();
    let Some(first) = acr_hosts.first() else { return Ok(()) };
    acr::check_identity(azure).map_err(|source| AppError::CloudCredentials {
        provider: first.cloud().provider(),
        hosts: acr_hosts.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", "),
        source: Box::new(source),
    })
}

/// `credential-provider`: one request from the kubelet on stdin, one
/// answer on stdout.
async fn credential_provider(
    node_source: &source::Settings,
    aws_settings: &aws::Settings,
    acr_settings: &acr::Settings,
    settings: &provider::Settings,
    http: &HttpClient,
) -> Result<(), provider::ProviderError> {
    use std::io::{Read as _, Write as _};
    let mut input = Vec::new();
    std::io::stdin()
        .take(1 << 20)
        .read_to_end(&mut input)
        .map_err(|e| provider::ProviderError::BadRequest(format!("cannot read stdin: {e}")))?;
    let request = provider::parse_request(&input)?;
    let host = request.image.host();
    let registry = host.parse::<RegistryHost>().ok();
    // Exhaustive, so that a new cloud's host kind cannot fall into another's source.
    let response = match registry.as_ref().map(RegistryHost::cloud) {
        Some(Cloud::Google) if provider::is_google(host) => {
            let source = provider::source_for(&request, settings, || source::discover(node_source, http), http)?;
            let credential = source.credential().await?;
            let now = SystemTime::now();
            provider::answer(settings, &credential.username, &credential.password, credential.expires_at, now)
        }
        Some(cloud @ (Cloud::Ecr(_) | Cloud::EcrPublic)) => {
            let credentials = match &request.token {
                None => aws::discover(aws_settings, http)?,
                // The pod's token, exchanged at STS for the role its
                // ServiceAccount names: never the node's identity.
                Some(token) => {
                    let role = request.ecr_role.as_ref().ok_or_else(|| provider::ProviderError::EcrPodIdentity {
                        host: host.to_string(),
                        provider: cloud.provider(),
                    })?;
                    debug!(role = %role.arn, annotation = role.annotation, "the pod's role");
                    aws::for_pod(&role.arn, token.secret(), aws_settings, http)
                }
            };
            let source = match cloud {
                Cloud::Ecr(ecr) => aws::ecr_source(ecr, credentials, aws_settings, http),
                _ => aws::ecr_public_source(credentials, aws_settings, http),
            };
            let credential = source.credential().await?;
            let now = SystemTime::now();
            provider::answer_registry(host, &credential.username, &credential.password, credential.expires_at, now)
        }
        Some(Cloud::Acr(registry)) => {
            let source = match &request.token {
                None => acr::discover(registry.clone(), acr_settings, http.clone())?,
                // The pod's token, as the federated credential of the identity
                // its ServiceAccount names: never the node's identity.
                Some(token) => {
                    let refuse = |missing| provider::ProviderError::AcrPodIdentity { host: host.to_string(), missing };
                    let client_id = request.acr_client_id.clone().ok_or_else(|| {
                        refuse("its ServiceAccount has no kubernetes.azure.com/acr-client-id annotation naming the identity to pull as")
                    })?;
                    let tenant_id =
                        request.acr_tenant_id.clone().or_else(|| acr_settings.tenant_id.clone()).ok_or_else(|| {
                            refuse("neither its ServiceAccount's kubernetes.azure.com/acr-tenant-id annotation nor AZURE_TENANT_ID names the tenant")
                        })?;
                    acr::AcrSource::for_pod(
                        registry.clone(),
                        client_id,
                        tenant_id,
                        token.secret(),
                        acr_settings,
                        http.clone(),
                    )
                }
            };
            let credential = source.credential().await?;
            let now = SystemTime::now();
            provider::answer_registry(host, &credential.username, &credential.password, credential.expires_at, now)
        }
        Some(Cloud::Google) | None => {
            debug!(host, "not a registry regcred knows: no credentials");
            provider::not_google()
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&provider::to_json(&response)).and_then(|()| out.flush()).map_err(provider::ProviderError::Output)
}

/// The sinks, and the Events publisher when any sink is in Kubernetes.
async fn build_sinks(
    plan: &Plan,
    request_timeout: Duration,
) -> Result<(Vec<NamedSink>, Option<Arc<Events>>), AppError> {
    let mut sinks = Vec::new();
    let mut events = None;
    if !matches!(plan.secrets, Secrets::None) {
        let (client, default_ns) = crate::cluster::connect(request_timeout).await?;
        let publisher = Arc::new(Events::new(client.clone(), plan.rotation_events));
        match &plan.secrets {
            Secrets::None => {}
            Secrets::Listed { targets, key } => {
                for target in targets {
                    let ns = target.namespace.as_deref().unwrap_or(&default_ns);
                    let sink = SecretSink::new(client.clone(), ns, &target.name, key);
                    sinks.push(NamedSink { sink: Box::new(sink), kind: "secret" });
                }
            }
            Secrets::FanOut(settings) => {
                let fan_out = FanOut::start(client, settings.clone(), Some(publisher.clone()));
                sinks.push(NamedSink { sink: Box::new(fan_out), kind: "fanout" });
            }
        }
        events = Some(publisher);
    }
    for path in &plan.files.paths {
        sinks.push(NamedSink { sink: Box::new(FileSink::new(path.clone(), plan.files.mode)), kind: "file" });
    }
    Ok((sinks, events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    /// The groups `render ARGS` would mint.
    fn groups_of(args: &[&str]) -> Vec<Group> {
        let cli = crate::cli::Cli::try_parse_from([&["regcred", "render"], args].concat()).unwrap();
        let Command::Render { source, aws, acr, registries } = cli.into_config().unwrap().command else {
            panic!("not render")
        };
        groups(&registries, &source, &aws, &acr, &HttpClient::new(Duration::from_secs(1)).unwrap()).unwrap()
    }

    #[test]
    fn each_acr_registry_is_its_own_group() {
        // The managed identity is chosen without reading anything: no request until a mint.
        let hosts = "aaaaa.azurecr.io,bbbbb.azurecr.cn,aaaaa.azurecr.io";
        let groups = groups_of(&["--registry", hosts, "--azure-identity", "managed-identity"]);
        let hosts: Vec<Vec<&str>> = groups.iter().map(|g| g.hosts.iter().map(RegistryHost::as_str).collect()).collect();
        assert_eq!(hosts, [["aaaaa.azurecr.io"], ["bbbbb.azurecr.cn"]], "one refresh token per registry");
        assert!(groups[1].source.describe().starts_with("ACR bbbbb.azurecr.cn with managed identity"));
    }
}
