//! The refresh loop: mint, render, write every sink, sleep until the next
//! refresh point; on failure back off and keep the last good document.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::Timing;
use crate::events::{Events, Failure};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::registry::RegistryHost;
use crate::render::{render, AuthsDocument};
use crate::schedule;
use crate::sink::{Sink, SinkError, WriteOutcome};
use crate::source::{CredentialSource, SourceError};

/// Attempts `once` makes at a retryable failure before giving up.
pub const ONCE_ATTEMPTS: u32 = 4;

/// A sink together with its kind, for metrics.
pub struct NamedSink {
    pub sink: Box<dyn Sink>,
    pub kind: &'static str,
}

/// Everything the loop needs.
pub struct Refresher {
    pub source: Arc<dyn CredentialSource>,
    pub registries: Vec<RegistryHost>,
    pub sinks: Vec<NamedSink>,
    pub timing: Timing,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// Kubernetes Events, when any sink is a Secret.
    pub events: Option<Arc<Events>>,
}

/// The credential currently being distributed.
struct Current {
    doc: AuthsDocument,
    expires_at: Option<SystemTime>,
    refresh_at: Option<SystemTime>,
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("the credential cannot be rendered: {0}")]
    Render(#[from] crate::render::RenderError),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Sinks(Vec<SinkError>),
}

impl PassError {
    fn is_retryable(&self) -> bool {
        match self {
            PassError::Source(e) => e.is_retryable(),
            PassError::Render(_) => true,
            PassError::Sinks(errs) => errs.iter().any(SinkError::is_retryable),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            PassError::Source(e) => e.retry_after(),
            PassError::Sinks(errs) => errs.iter().filter_map(SinkError::retry_after).max(),
            PassError::Render(_) => None,
        }
    }
}

/// The result of `once`, printed as one line.
#[derive(Debug)]
pub struct OnceSummary {
    pub outcomes: Vec<(String, WriteOutcome)>,
    pub expires_at: Option<SystemTime>,
}

impl std::fmt::Display for OnceSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> =
            self.outcomes.iter().map(|(name, o)| format!("{name} {}", format!("{o:?}").to_lowercase())).collect();
        write!(f, "regcred: ok: {}", parts.join(", "))?;
        if let Some(t) = self.expires_at {
            write!(f, "; credential expires {}", humantime::format_rfc3339_seconds(t))?;
        }
        Ok(())
    }
}

impl Refresher {
    fn due_for_mint(&self, current: &Option<Current>, now: SystemTime) -> bool {
        match current {
            None => true,
            Some(c) => c.refresh_at.is_some_and(|at| now >= at),
        }
    }

    async fn mint(&self) -> Result<Current, PassError> {
        let started = Instant::now();
        let minted = self.source.credential().await;
        self.metrics.mint(started.elapsed(), minted.as_ref().err().map(SourceError::metric_label));
        let credential = minted?;
        let doc = render(&credential, &self.registries)?;
        let refresh_at = credential
            .expires_at
            .map(|exp| schedule::refresh_at(SystemTime::now(), exp, &self.timing, fastrand::f64()));
        info!(
            source = %self.source.describe(),
            expires_at = credential.expires_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            refresh_at = refresh_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            "minted a credential"
        );
        Ok(Current { doc, expires_at: credential.expires_at, refresh_at })
    }

    /// Tells the Secrets' Events whether their credential can be refreshed.
    async fn report_mint(&self, minted: &Result<Current, PassError>) {
        let Some(events) = &self.events else { return };
        for object in self.sinks.iter().filter_map(|s| s.sink.object_ref()) {
            match minted {
                Ok(_) => events.succeeded(&object, Failure::Mint, false).await,
                Err(e) => events.failed(&object, Failure::Mint, e.is_retryable(), &e.to_string()).await,
            }
        }
    }

    /// Writes the document to every sink concurrently; one failing sink does
    /// not stop the others.
    async fn write_all(&self, current: &Current) -> (Vec<(String, WriteOutcome)>, Vec<SinkError>) {
        let writes = self.sinks.iter().map(|s| async move {
            let started = Instant::now();
            let result = s.sink.write(&current.doc, current.expires_at).await;
            (s, started.elapsed(), result)
        });
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for (s, took, result) in futures::future::join_all(writes).await {
            let name = s.sink.name();
            match result {
                Ok(outcome) => {
                    match outcome {
                        WriteOutcome::Unchanged => debug!(sink = name, "already current"),
                        _ => info!(sink = name, outcome = ?outcome, "wrote credential"),
                    }
                    self.metrics.write_ok(name, s.kind, took, current.expires_at);
                    self.health.succeeded(name, current.expires_at, current.refresh_at);
                    if let (Some(events), Some(object)) = (&self.events, s.sink.object_ref()) {
                        events.succeeded(&object, Failure::Write, outcome != WriteOutcome::Unchanged).await;
                    }
                    ok.push((name.to_string(), outcome));
                }
                Err(e) => {
                    warn!(sink = name, error = %e, retryable = e.is_retryable(), "write failed");
                    self.metrics.write_failed(name, s.kind, took, e.metric_label());
                    self.health.failed(name, e.to_string());
                    if let (Some(events), Some(object)) = (&self.events, s.sink.object_ref()) {
                        events.failed(&object, Failure::Write, e.is_retryable(), &e.to_string()).await;
                    }
                    failed.push(e);
                }
            }
        }
        (ok, failed)
    }

    /// One pass: mint if due, then write. Keeps `current` when minting fails.
    async fn pass(&self, current: &mut Option<Current>) -> Result<Vec<(String, WriteOutcome)>, PassError> {
        let mut mint_error = None;
        if self.due_for_mint(current, SystemTime::now()) {
            let minted = self.mint().await;
            self.report_mint(&minted).await;
            match minted {
                Ok(c) => *current = Some(c),
                Err(e) => mint_error = Some(e),
            }
        }
        // Even when minting failed, re-assert the last good document: a
        // deleted Secret is better restored with a token that still works.
        let mut outcomes = Vec::new();
        if let Some(c) = current.as_ref().filter(|c| c.expires_at.is_none_or(|e| e > SystemTime::now())) {
            let (ok, failed) = self.write_all(c).await;
            outcomes = ok;
            if !failed.is_empty() && mint_error.is_none() {
                return Err(PassError::Sinks(failed));
            }
        }
        match mint_error {
            Some(e) => {
                // After the writes, so /readyz shows why the credential is going stale.
                for s in &self.sinks {
                    self.health.failed(s.sink.name(), e.to_string());
                }
                Err(e)
            }
            None => Ok(outcomes),
        }
    }

    /// `regcred run`: until `shutdown` flips.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut current: Option<Current> = None;
        let mut failures: u32 = 0;
        loop {
            let wake = tokio::select! {
                result = self.pass(&mut current) => match result {
                    Ok(_) => {
                        failures = 0;
                        schedule::next_wake(SystemTime::now(), current.as_ref().and_then(|c| c.refresh_at), self.timing.resync_interval)
                    }
                    Err(e) => {
                        let delay = schedule::backoff(failures, fastrand::f64(), e.retry_after());
                        failures = failures.saturating_add(1);
                        warn!(error = %e, retry_in = ?delay, attempt = failures, "refresh failed; keeping the last good credential");
                        delay
                    }
                },
                _ = shutdown.changed() => return,
            };
            debug!(sleep = ?wake, "waiting for the next pass");
            tokio::select! {
                _ = tokio::time::sleep(wake) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// `regcred once`: one refresh with a few retries for transient failures.
    pub async fn once(&self) -> Result<OnceSummary, PassError> {
        let mut current = None;
        let mut attempt = 0;
        loop {
            match self.pass(&mut current).await {
                Ok(outcomes) => {
                    return Ok(OnceSummary { outcomes, expires_at: current.and_then(|c| c.expires_at) });
                }
                Err(e) if e.is_retryable() && attempt + 1 < ONCE_ATTEMPTS => {
                    let delay = schedule::backoff(attempt, fastrand::f64(), e.retry_after());
                    attempt += 1;
                    warn!(error = %e, retry_in = ?delay, attempt, "refresh failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `regcred render`: mint and render without writing.
    pub async fn render_only(&self) -> Result<AuthsDocument, PassError> {
        Ok(self.mint().await?.doc)
    }
}
