//! Wiring: from a validated [`Config`] to a running refresher.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{debug, info};

use crate::admin::{self, AdminState};
use crate::config::{Config, Mode};
use crate::events::Events;
use crate::fanout::FanOut;
use crate::health::Health;
use crate::http::{HttpClient, HttpError};
use crate::metrics::Metrics;
use crate::provider;
use crate::refresh::{NamedSink, PassError, Refresher};
use crate::sink::{FileSink, SecretSink};
use crate::source::{self, SourceError};

/// Why regcred stopped with an error. Each variant maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad flags or files: the user must change something (exit 2).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Credentials(SourceError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("{0}")]
    Setup(String),
    #[error("cannot listen on the admin address {addr}: {source}; choose another --admin-addr or `off`")]
    AdminBind { addr: std::net::SocketAddr, source: std::io::Error },
    /// The refresh itself failed (exit 1).
    #[error("{0}")]
    Refresh(PassError),
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
    if config.dry_run {
        println!("regcred: the flags and environment are valid; nothing was done (--dry-run)");
        return Ok(());
    }
    let http = HttpClient::new(config.request_timeout)?;
    if let Some(settings) = &config.provider {
        return credential_provider(&config, settings, &http).await.map_err(AppError::Provider);
    }
    let source = source::discover(&config.source, &http).map_err(AppError::Credentials)?;
    info!(source = %source.describe(), registries = config.registries.len(), "credential source");

    let metrics = Arc::new(Metrics::new());
    let (mut sinks, kube_client) = build_sinks(&config).await?;
    let events = kube_client.clone().map(|client| Arc::new(Events::new(client, config.rotation_events)));
    if let (Some(fan_out), Some(client)) = (config.fan_out.clone(), kube_client) {
        sinks.push(NamedSink { sink: Box::new(FanOut::start(client, fan_out, events.clone())), kind: "fanout" });
    }
    // Ready until a credential is this far past its refresh point: half the
    // refresh margin, so /readyz fails well before the credential expires.
    let grace = config.timing.refresh_before / 2;
    let stale_after = config.timing.resync_interval.saturating_mul(3).max(Duration::from_secs(60));
    let health = Arc::new(Health::new(sinks.iter().map(|s| s.sink.name().to_string()), grace, stale_after));

    let refresher = Refresher {
        source,
        registries: config.registries.clone(),
        sinks,
        timing: config.timing,
        metrics: metrics.clone(),
        health: health.clone(),
        events,
    };

    if config.mode == Mode::Render {
        let doc = refresher.render_only().await.map_err(AppError::Refresh)?;
        let mut out = doc.expose_bytes().to_vec();
        out.push(b'\n');
        use std::io::Write as _;
        std::io::stdout().write_all(&out).map_err(|e| AppError::Setup(format!("cannot write to stdout: {e}")))?;
        return Ok(());
    }

    if let Some(addr) = config.admin_addr {
        let listener = admin::bind(addr).await.map_err(|source| AppError::AdminBind { addr, source })?;
        let state = AdminState { health, metrics };
        tokio::spawn(admin::serve(listener, state, shutdown.clone()));
    }

    match config.mode {
        Mode::Once => {
            // A CronJob's pod may be stopped mid-run: give up at once rather
            // than sit through retries. Writes are atomic, so nothing is half-done.
            let mut shutdown = shutdown;
            let summary = tokio::select! {
                result = refresher.once() => result.map_err(AppError::Refresh)?,
                _ = shutdown.changed() => return Err(AppError::Interrupted),
            };
            println!("{summary}");
        }
        Mode::Run => {
            refresher.run(shutdown).await;
            info!("shutting down");
        }
        Mode::Render | Mode::CredentialProvider => unreachable!("handled above"),
    }
    Ok(())
}

/// `credential-provider`: one request from the kubelet on stdin, one
/// answer on stdout.
async fn credential_provider(
    config: &Config,
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
    let host = provider::image_host(&request.image);
    let response = if provider::is_google(host) {
        let source = provider::source_for(&request, settings, || source::discover(&config.source, http), http)?;
        let credential = source.credential().await?;
        provider::answer(settings, &credential.username, &credential.password, credential.expires_at, SystemTime::now())
    } else {
        debug!(host, "not a Google registry: no credentials");
        provider::not_google()
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&provider::to_json(&response)).and_then(|()| out.flush()).map_err(provider::ProviderError::Output)
}

/// The sinks, and the Kubernetes client when any sink needs one.
async fn build_sinks(config: &Config) -> Result<(Vec<NamedSink>, Option<kube::Client>), AppError> {
    let mut sinks = Vec::new();
    let mut kube_client = None;
    if !config.secrets.is_empty() || config.fan_out.is_some() {
        let (client, default_ns) = crate::cluster::connect(config.request_timeout).await?;
        for target in &config.secrets {
            let ns = target.namespace.as_deref().unwrap_or(&default_ns);
            let sink = SecretSink::new(client.clone(), ns, &target.name, &config.secret_key, config.secret_type());
            sinks.push(NamedSink { sink: Box::new(sink), kind: "secret" });
        }
        kube_client = Some(client);
    }
    for path in &config.output_files {
        sinks.push(NamedSink { sink: Box::new(FileSink::new(path.clone(), config.output_file_mode)), kind: "file" });
    }
    Ok((sinks, kube_client))
}
