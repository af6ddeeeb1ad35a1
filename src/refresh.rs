//! The refresh loop: mint, render, write every sink, sleep until the next
//! refresh point; on failure back off and keep the last good document.
//!
//! The mint and each sink have their own backoff: a failing sink is retried
//! on its own schedule and never delays a refresh that falls due, nor any
//! other sink.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::events::{Events, Failure};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::registry::RegistryHost;
use crate::render::{render, AuthsDocument};
use crate::schedule::{self, Timing};
use crate::sink::{Sink, SinkError, WriteOutcome};
use crate::source::{CredentialSource, SourceError};

/// Attempts `once` makes at a retryable failure before giving up.
pub(crate) const ONCE_ATTEMPTS: u32 = 4;

/// A sink together with its kind, for metrics.
pub(crate) struct NamedSink {
    pub sink: Box<dyn Sink>,
    pub kind: &'static str,
}

/// Everything the loop needs.
pub(crate) struct Refresher {
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
    /// Counts mints, so each sink knows whether it holds this document.
    generation: u64,
}

/// One sink's place in the schedule. Each sink backs off on its own, so a
/// failing sink never delays another sink's rotation.
#[derive(Default)]
struct SinkSchedule {
    /// The generation this sink holds (written or confirmed).
    holds: Option<u64>,
    /// The generation last offered to it.
    offered: Option<u64>,
    /// Consecutive failures, for the backoff.
    failures: u32,
    /// When to offer the current document again after a failure; `None`
    /// when not failing, or when the sink retries its parts by itself.
    retry_at: Option<Instant>,
    last_outcome: Option<WriteOutcome>,
    last_error: Option<SinkError>,
}

/// What the loop carries from one pass to the next.
struct LoopState {
    current: Option<Current>,
    generation: u64,
    mint_failures: u32,
    mint_retry_at: Option<Instant>,
    mint_error: Option<PassError>,
    resync_at: Instant,
    sinks: Vec<SinkSchedule>,
}

impl LoopState {
    fn new(sinks: usize) -> Self {
        LoopState {
            current: None,
            generation: 0,
            mint_failures: 0,
            mint_retry_at: None,
            mint_error: None,
            resync_at: Instant::now(),
            sinks: (0..sinks).map(|_| SinkSchedule::default()).collect(),
        }
    }

    fn all_hold_current(&self) -> bool {
        let generation = self.current.as_ref().map(|c| c.generation);
        generation.is_some() && self.sinks.iter().all(|s| s.holds == generation)
    }

    /// Makes everything that failed due now (`once` does its own waiting).
    fn retry_now(&mut self) {
        let now = Instant::now();
        self.mint_retry_at = None;
        let generation = self.current.as_ref().map(|c| c.generation);
        for s in self.sinks.iter_mut().filter(|s| s.holds != generation) {
            s.retry_at = Some(now);
        }
    }

    /// Why the last pass left something undone, for `once`'s exit.
    fn error(&mut self) -> Option<PassError> {
        if let Some(e) = self.mint_error.take() {
            return Some(e);
        }
        let errors: Vec<SinkError> = self.sinks.iter_mut().filter_map(|s| s.last_error.take()).collect();
        (!errors.is_empty()).then_some(PassError::Sinks(errors))
    }

    /// How long `run` sleeps: until the refresh point, the next retry of the
    /// mint or of any failing sink, or the resync, whichever comes first.
    fn next_wake(&self, resync_interval: Duration) -> Duration {
        let now = Instant::now();
        // A resync needs a credential that still works; without one, only
        // the mint's retry can help.
        let usable = self.current.as_ref().is_some_and(|c| c.expires_at.is_none_or(|e| e > SystemTime::now()));
        let mut wake = if usable { self.resync_at.saturating_duration_since(now) } else { resync_interval };
        match (self.mint_retry_at, &self.current) {
            (Some(at), _) => wake = wake.min(at.saturating_duration_since(now)),
            (None, Some(c)) => wake = wake.min(schedule::next_wake(SystemTime::now(), c.refresh_at, resync_interval)),
            (None, None) => {}
        }
        for at in self.sinks.iter().filter_map(|s| s.retry_at) {
            wake = wake.min(at.saturating_duration_since(now));
        }
        wake.max(MIN_RETRY_DELAY)
    }
}

/// The shortest sleep of `run`, so that no schedule can become a busy loop.
const MIN_RETRY_DELAY: Duration = Duration::from_millis(50);

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
pub(crate) struct OnceSummary {
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
    async fn mint(&self, generation: u64) -> Result<Current, PassError> {
        let started = std::time::Instant::now();
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
        Ok(Current { doc, expires_at: credential.expires_at, refresh_at, generation })
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

    /// Writes one sink and reports the result (log, metrics, health, Events).
    async fn write_one(&self, s: &NamedSink, current: &Current) -> Result<WriteOutcome, SinkError> {
        let started = std::time::Instant::now();
        let result = s.sink.write(&current.doc, current.expires_at).await;
        let took = started.elapsed();
        let name = s.sink.name();
        let object = s.sink.object_ref();
        match &result {
            Ok(outcome) => {
                match outcome {
                    WriteOutcome::Unchanged => debug!(sink = name, "already current"),
                    _ => info!(sink = name, outcome = ?outcome, "wrote credential"),
                }
                self.metrics.write_ok(name, s.kind, took, current.expires_at);
                self.health.succeeded(name, current.expires_at, current.refresh_at);
                if let (Some(events), Some(object)) = (&self.events, object) {
                    events.succeeded(&object, Failure::Write, *outcome != WriteOutcome::Unchanged).await;
                }
            }
            Err(e) => {
                self.metrics.write_failed(name, s.kind, took, e.metric_label());
                self.health.failed(name, e.to_string(), !e.is_retryable());
                if let (Some(events), Some(object)) = (&self.events, object) {
                    events.failed(&object, Failure::Write, e.is_retryable(), &e.to_string()).await;
                }
            }
        }
        result
    }

    /// One pass: mint if due, then offer the document to every sink that is
    /// due: a sink that has not been offered this document yet (a fresh mint
    /// reaches every sink at once, whatever its backoff), a failing sink
    /// whose own retry time has come, and every sink at a resync.
    ///
    /// Returns the mint's retry delay when minting failed in this pass.
    async fn pass(&self, state: &mut LoopState) -> Option<Duration> {
        let now = Instant::now();
        let mut mint_retry = None;
        let mint_due = match &state.current {
            None => true,
            Some(c) => c.refresh_at.is_some_and(|at| SystemTime::now() >= at),
        };
        if mint_due && state.mint_retry_at.is_none_or(|at| now >= at) {
            let minted = self.mint(state.generation + 1).await;
            self.report_mint(&minted).await;
            match minted {
                Ok(c) => {
                    state.generation = c.generation;
                    state.current = Some(c);
                    state.mint_failures = 0;
                    state.mint_retry_at = None;
                    state.mint_error = None;
                }
                Err(e) => {
                    let delay = schedule::backoff(state.mint_failures, fastrand::f64(), e.retry_after());
                    state.mint_failures = state.mint_failures.saturating_add(1);
                    state.mint_retry_at = Some(Instant::now() + delay);
                    state.mint_error = Some(e);
                    mint_retry = Some(delay);
                }
            }
        }

        // Even when minting failed, re-assert the last good document: a
        // deleted Secret is better restored with a token that still works.
        let resync = now >= state.resync_at;
        if let Some(c) = state.current.as_ref().filter(|c| c.expires_at.is_none_or(|e| e > SystemTime::now())) {
            if resync {
                state.resync_at = now + self.timing.resync_interval;
            }
            let due: Vec<usize> = (0..self.sinks.len())
                .filter(|&i| {
                    let s = &state.sinks[i];
                    resync
                        || s.offered != Some(c.generation)
                        || (s.holds != Some(c.generation) && s.retry_at.is_some_and(|at| now >= at))
                })
                .collect();
            let writes = due.iter().map(|&i| self.write_one(&self.sinks[i], c));
            let results = futures::future::join_all(writes).await;
            for (i, result) in due.into_iter().zip(results) {
                let s = &mut state.sinks[i];
                s.offered = Some(c.generation);
                match result {
                    Ok(outcome) => {
                        *s = SinkSchedule {
                            holds: Some(c.generation),
                            offered: Some(c.generation),
                            last_outcome: Some(outcome),
                            ..Default::default()
                        };
                    }
                    Err(e) => {
                        s.holds = None;
                        let delay = schedule::backoff(s.failures, fastrand::f64(), e.retry_after());
                        s.failures = s.failures.saturating_add(1);
                        // Fan-out retries each failing namespace on its own
                        // backoff; offering it the document again would only
                        // repeat those retries.
                        s.retry_at = (!e.retried_by_sink()).then(|| Instant::now() + delay);
                        warn!(
                            sink = self.sinks[i].sink.name(),
                            error = %e,
                            retryable = e.is_retryable(),
                            retry_in = ?s.retry_at.map(|_| delay),
                            "write failed"
                        );
                        s.last_error = Some(e);
                    }
                }
            }
        }
        if let Some(e) = &state.mint_error {
            // After the writes, so /readyz shows why the credential is going stale.
            for s in &self.sinks {
                self.health.failed(s.sink.name(), e.to_string(), false);
            }
        }
        mint_retry
    }

    /// `regcred run`: until `shutdown` flips.
    pub(crate) async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut state = LoopState::new(self.sinks.len());
        loop {
            let mint_retry = tokio::select! {
                retry = self.pass(&mut state) => retry,
                _ = shutdown.changed() => return,
            };
            if let (Some(delay), Some(e)) = (mint_retry, &state.mint_error) {
                warn!(error = %e, retry_in = ?delay, attempt = state.mint_failures, "refresh failed; keeping the last good credential");
            }
            let wake = state.next_wake(self.timing.resync_interval);
            debug!(sleep = ?wake, "waiting for the next pass");
            tokio::select! {
                _ = tokio::time::sleep(wake) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// `regcred once`: one refresh with a few retries for transient
    /// failures; a retry offers the document only to the sinks that failed.
    pub(crate) async fn once(&self) -> Result<OnceSummary, PassError> {
        let mut state = LoopState::new(self.sinks.len());
        let mut attempt = 0;
        loop {
            self.pass(&mut state).await;
            if state.all_hold_current() {
                let outcomes = self
                    .sinks
                    .iter()
                    .zip(&state.sinks)
                    .map(|(n, s)| (n.sink.name().to_string(), s.last_outcome.unwrap_or(WriteOutcome::Unchanged)))
                    .collect();
                return Ok(OnceSummary { outcomes, expires_at: state.current.and_then(|c| c.expires_at) });
            }
            let e = state.error().unwrap_or_else(|| PassError::Sinks(Vec::new()));
            if !e.is_retryable() || attempt + 1 >= ONCE_ATTEMPTS {
                return Err(e);
            }
            let delay = schedule::backoff(attempt, fastrand::f64(), e.retry_after());
            attempt += 1;
            match e {
                PassError::Sinks(_) => warn!(error = %e, retry_in = ?delay, attempt, "write failed; retrying"),
                _ => warn!(error = %e, retry_in = ?delay, attempt, "refresh failed; retrying"),
            }
            tokio::time::sleep(delay).await;
            state.retry_now();
        }
    }
}

/// `regcred render`: mint and render, without writing anywhere.
pub(crate) async fn render_once(
    source: &dyn CredentialSource,
    registries: &[RegistryHost],
) -> Result<AuthsDocument, PassError> {
    Ok(render(&source.credential().await?, registries)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn without_a_credential_the_loop_sleeps_until_the_mint_retry() {
        let mut state = LoopState::new(2);
        state.mint_retry_at = Some(Instant::now() + Duration::from_secs(10));
        // The resync is overdue, but there is nothing to re-assert yet.
        assert_eq!(state.next_wake(Duration::from_secs(600)), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn the_earliest_sink_retry_wins() {
        let mut state = LoopState::new(2);
        state.current = Some(Current {
            doc: render(
                &crate::credential::Credential {
                    username: "u".into(),
                    password: crate::secret::Secret::new("p".into()),
                    expires_at: None,
                },
                &RegistryHost::defaults(),
            )
            .unwrap(),
            expires_at: None,
            refresh_at: None,
            generation: 1,
        });
        state.resync_at = Instant::now() + Duration::from_secs(600);
        state.sinks[1].retry_at = Some(Instant::now() + Duration::from_secs(3));
        assert_eq!(state.next_wake(Duration::from_secs(600)), Duration::from_secs(3));
    }
}
