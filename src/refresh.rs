//! The refresh loop: mint, render, hand the document to every sink, sleep
//! until the next refresh point; on failure back off and keep the last good
//! document.
//!
//! The hosts of one document are served by one or more credential groups
//! (all Google hosts share one token; each ECR registry has its own). Each
//! group mints on its own schedule, from its own token's expiry; a document
//! is published only while every group holds a usable credential, so a
//! failing group never yields a partial document: the others keep minting,
//! and it keeps its last credential while it backs off.
//!
//! The mint and each sink run side by side, each on its own schedule: the
//! mint publishes the newest document, and each sink writes the newest one
//! it does not hold yet, retrying its failures on its own backoff. So a
//! slow or failing sink never delays a refresh that falls due, nor any
//! other sink; when it catches up it skips to the newest document, and it
//! never writes an older document over a newer one.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::FutureExt as _;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::credential::Credential;
use crate::events::{Events, Failure};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::registry::RegistryHost;
use crate::render::{render, render_entries, AuthsDocument, RenderError};
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

/// The hosts one credential serves, and the source that mints it.
pub(crate) struct Group {
    pub source: Arc<dyn CredentialSource>,
    /// Never empty: every host takes the same cloud's credential.
    pub hosts: Vec<RegistryHost>,
}

impl Group {
    /// The cloud's name ("Google", "Amazon ECR").
    fn provider(&self) -> &'static str {
        self.hosts.first().map_or("registry", |h| h.cloud().provider())
    }

    /// The hosts, comma-separated, for messages.
    fn host_list(&self) -> String {
        self.hosts.iter().map(RegistryHost::as_str).collect::<Vec<_>>().join(", ")
    }
}

/// Everything the loop needs.
pub(crate) struct Refresher {
    /// One per credential: never empty.
    pub groups: Vec<Group>,
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

impl Current {
    /// Whether the credential still works: a sink is offered nothing else
    /// (a deleted Secret is better restored with a token that still works,
    /// but not with one that does not).
    fn usable(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// One group's newest credential and when it falls due.
#[derive(Clone)]
struct Minted {
    credential: Credential,
    refresh_at: Option<SystemTime>,
}

impl Minted {
    fn usable(&self, now: SystemTime) -> bool {
        self.credential.expires_at.is_none_or(|e| e > now)
    }
}

/// What the groups hold, by group index, and the generation last published.
#[derive(Default)]
struct Held {
    minted: Vec<Option<Minted>>,
    errors: Vec<Option<String>>,
    generation: u64,
}

/// What the mints hand the sinks: the newest document (a watch channel
/// holds only the latest value, so a sink that was busy finds the newest
/// one, never a queue of stale ones), and why the last mint of each group
/// failed.
struct Published {
    current: watch::Sender<Option<Arc<Current>>>,
    held: Mutex<Held>,
}

impl Published {
    fn new(groups: usize) -> Published {
        let held = Held { minted: vec![None; groups], errors: vec![None; groups], generation: 0 };
        Published { current: watch::channel(None).0, held: Mutex::new(held) }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Shown by /readyz next to every sink while any group's minting fails,
    /// also after a sink re-asserted the last good document.
    fn mint_error(&self) -> Option<String> {
        let errors: Vec<String> = self.held().errors.iter().flatten().cloned().collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }

    fn set_mint_error(&self, group: usize, error: Option<String>) {
        self.held().errors[group] = error;
    }
}

/// One sink's place in the schedule, kept by that sink's own loop.
#[derive(Debug, Default)]
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
    /// When to re-assert the document it holds (`--resync-interval`): a
    /// deleted or edited Secret comes back.
    resync_at: Option<Instant>,
}

impl SinkSchedule {
    /// Whether the document of `generation` is due to this sink at `now`: it
    /// has not been offered yet (a fresh mint reaches a sink at once,
    /// whatever its backoff), the sink's own retry time has come after a
    /// failure, or its resync has.
    fn due(&self, generation: u64, now: Instant) -> bool {
        self.offered != Some(generation)
            || self.resync_at.is_some_and(|at| now >= at)
            || (self.holds != Some(generation) && self.retry_at.is_some_and(|at| now >= at))
    }

    /// Records how offering `generation` at `now` ended; returns the retry
    /// delay after a failure.
    fn record(
        &mut self,
        generation: u64,
        now: Instant,
        result: &Result<WriteOutcome, SinkError>,
        resync_interval: Duration,
    ) -> Option<Duration> {
        self.offered = Some(generation);
        self.resync_at = Some(now + resync_interval);
        match result {
            Ok(_) => {
                self.holds = Some(generation);
                self.failures = 0;
                self.retry_at = None;
                None
            }
            Err(e) => {
                self.holds = None;
                let delay = schedule::backoff(self.failures, fastrand::f64(), e.retry_after());
                self.failures = self.failures.saturating_add(1);
                // Fan-out retries each failing namespace on its own backoff;
                // offering it the document again would only repeat those retries.
                self.retry_at = (!e.retried_by_sink()).then(|| now + delay);
                self.retry_at.map(|_| delay)
            }
        }
    }

    /// When this sink next needs a write without a new document: its retry
    /// or its resync, whichever comes first.
    fn next_wake(&self) -> Option<Instant> {
        let retry = self.retry_at.filter(|_| self.holds.is_none());
        match (retry, self.resync_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Why a refresh failed: the mint, or (for `once`) a write.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("{0}")]
    Source(#[from] SourceError),
    /// A mint of a document that holds other clouds' hosts too (or of a
    /// cloud other than Google's, whose errors always say so): which
    /// hosts and provider failed.
    #[error("{provider} credential for {hosts}: {source}")]
    Group { provider: &'static str, hosts: String, source: Box<SourceError> },
    #[error("the credential cannot be rendered: {0}")]
    Render(#[from] RenderError),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Sinks(Vec<SinkError>),
}

impl PassError {
    fn is_retryable(&self) -> bool {
        match self {
            PassError::Source(e) => e.is_retryable(),
            PassError::Group { source, .. } => source.is_retryable(),
            PassError::Render(_) => true,
            PassError::Sinks(errs) => errs.iter().any(SinkError::is_retryable),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            PassError::Source(e) => e.retry_after(),
            PassError::Group { source, .. } => source.retry_after(),
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
    /// Mints group `index`'s credential and checks that it renders.
    async fn mint(&self, index: usize) -> Result<Minted, PassError> {
        let group = &self.groups[index];
        let started = std::time::Instant::now();
        let minted = group.source.credential().await;
        self.metrics.mint(started.elapsed(), minted.as_ref().err().map(SourceError::metric_label));
        let credential = minted.map_err(|e| group_error(&self.groups, group, e))?;
        render(&credential, &group.hosts)?;
        let refresh_at = credential
            .expires_at
            .map(|exp| schedule::refresh_at(SystemTime::now(), exp, &self.timing, fastrand::f64()));
        info!(
            provider = group.provider(),
            source = %group.source.describe(),
            expires_at = credential.expires_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            refresh_at = refresh_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            "minted a credential"
        );
        Ok(Minted { credential, refresh_at })
    }

    /// The document of every group's credential, when each holds a usable
    /// one: a group without one (not minted yet, or expired while its mints
    /// fail) is refused, never left out.
    fn assemble(&self, minted: &[Option<Minted>], generation: u64) -> Result<Current, RenderError> {
        let now = SystemTime::now();
        let all: Vec<&Minted> = minted
            .iter()
            .map(|m| m.as_ref().filter(|m| m.usable(now)))
            .collect::<Option<_>>()
            .ok_or(RenderError::MissingCredential)?;
        let entries = self.groups.iter().zip(&all).flat_map(|(g, m)| g.hosts.iter().map(|h| (h, &m.credential)));
        let doc = render_entries(entries)?;
        let expires_at = all.iter().filter_map(|m| m.credential.expires_at).min();
        let refresh_at = all.iter().filter_map(|m| m.refresh_at).min();
        Ok(Current { doc, expires_at, refresh_at, generation })
    }

    /// Tells the Secrets' Events whether their credential can be refreshed.
    async fn report_mint<T>(&self, minted: &Result<T, PassError>) {
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

    /// `regcred run`: until `shutdown` flips. The mint and every sink each
    /// run their own loop, side by side; on shutdown they all stop at once
    /// (every write is atomic, so one cut short leaves the old document or
    /// the new) and `run` returns when the last one has.
    pub(crate) async fn run(&self, shutdown: watch::Receiver<bool>) {
        let published = Published::new(self.groups.len());
        let sinks: Vec<_> = self.sinks.iter().map(|s| self.keep(s, &published, shutdown.clone())).collect();
        let mints: Vec<_> =
            (0..self.groups.len()).map(|i| self.keep_minting(i, &published, shutdown.clone())).collect();
        tokio::join!(futures::future::join_all(mints), futures::future::join_all(sinks));
    }

    /// Publishes the document of every group's newest credential, if each
    /// group holds a usable one; else the sinks keep the last document.
    fn publish(&self, published: &Published) {
        let mut held = published.held();
        match self.assemble(&held.minted, held.generation + 1) {
            Ok(current) => {
                let current = same_credential_again(published.current.borrow().as_deref(), current);
                held.generation = current.generation;
                published.current.send_replace(Some(Arc::new(current)));
            }
            Err(e) => debug!(reason = %e, "nothing published; the sinks keep the last document"),
        }
    }

    /// Mints group `index`'s credential whenever it falls due (or, after a
    /// failed mint, when its backoff has passed) and publishes the new
    /// document.
    async fn keep_minting(&self, index: usize, published: &Published, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        loop {
            let minted = tokio::select! {
                minted = self.mint(index) => minted,
                _ = shutdown.changed() => return,
            };
            self.report_mint(&minted).await;
            let wait = match minted {
                Ok(minted) => {
                    failures = 0;
                    let refresh_at = minted.refresh_at;
                    {
                        let mut held = published.held();
                        held.minted[index] = Some(minted);
                        held.errors[index] = None;
                    }
                    self.publish(published);
                    self.until_due(refresh_at).boxed()
                }
                Err(e) => {
                    let delay = schedule::backoff(failures, fastrand::f64(), e.retry_after());
                    failures = failures.saturating_add(1);
                    warn!(error = %e, retry_in = ?delay, attempt = failures, "refresh failed; keeping the last good credential");
                    // /readyz shows why the credential is going stale.
                    for s in &self.sinks {
                        self.health.failed(s.sink.name(), e.to_string(), false);
                    }
                    published.set_mint_error(index, Some(e.to_string()));
                    tokio::time::sleep(delay).boxed()
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Returns at `refresh_at` by the wall clock (a suspended machine wakes
    /// late), looking at least every resync interval; never for a key that
    /// does not expire.
    async fn until_due(&self, refresh_at: Option<SystemTime>) {
        let Some(at) = refresh_at else { return std::future::pending().await };
        loop {
            let now = SystemTime::now();
            if now >= at {
                return;
            }
            let wake = schedule::next_wake(now, refresh_at, self.timing.resync_interval);
            debug!(sleep = ?wake, "waiting for the next mint");
            tokio::time::sleep(wake).await;
        }
    }

    /// Keeps one sink holding the newest usable document: writes each new
    /// one, retries a failure on the sink's own backoff, and re-asserts the
    /// document every resync interval.
    async fn keep(&self, s: &NamedSink, published: &Published, mut shutdown: watch::Receiver<bool>) {
        let mut offers = published.current.subscribe();
        let mut schedule = SinkSchedule::default();
        loop {
            let current = offers.borrow_and_update().clone().filter(|c| c.usable(SystemTime::now()));
            if let Some(c) = current.as_ref().filter(|c| schedule.due(c.generation, Instant::now())) {
                let result = tokio::select! {
                    result = self.write_one(s, c) => result,
                    _ = shutdown.changed() => return,
                };
                let retry_in = schedule.record(c.generation, Instant::now(), &result, self.timing.resync_interval);
                match result {
                    Ok(_) => {
                        if let Some(e) = published.mint_error() {
                            self.health.failed(s.sink.name(), e, false);
                        }
                    }
                    Err(e) => warn!(
                        sink = s.sink.name(),
                        error = %e,
                        retryable = e.is_retryable(),
                        retry_in = ?retry_in,
                        "write failed"
                    ),
                }
                // A newer document may have come while this one was written.
                continue;
            }
            let wake = current.and(schedule.next_wake());
            tokio::select! {
                changed = offers.changed() => if changed.is_err() { return },
                _ = sleep_until(wake) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Stops what the sinks write in the background: this replica stopped
    /// leading, and [`Refresher::run`] has been dropped.
    pub(crate) fn stand_down(&self) {
        for s in &self.sinks {
            s.sink.stand_down();
        }
    }

    /// `regcred once`: one mint of every group, then one write to every
    /// sink, side by side, each retrying a transient failure on its own
    /// backoff a few times.
    pub(crate) async fn once(&self) -> Result<OnceSummary, PassError> {
        let minted = futures::future::join_all((0..self.groups.len()).map(|i| self.mint_once(i))).await;
        let minted = first_error(minted)?;
        let current = self.assemble(&minted.into_iter().map(Some).collect::<Vec<_>>(), 1)?;
        let writes = self.sinks.iter().map(|s| self.write_once(s, &current));
        let results = futures::future::join_all(writes).await;
        let mut outcomes = Vec::new();
        let mut errors = Vec::new();
        for (s, result) in self.sinks.iter().zip(results) {
            match result {
                Ok(outcome) => outcomes.push((s.sink.name().to_string(), outcome)),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(PassError::Sinks(errors));
        }
        Ok(OnceSummary { outcomes, expires_at: current.expires_at })
    }

    /// `once`'s mint of group `index`, retried at a transient failure.
    async fn mint_once(&self, index: usize) -> Result<Minted, PassError> {
        let mut attempt = 0;
        loop {
            let minted = self.mint(index).await;
            self.report_mint(&minted).await;
            match minted {
                Ok(current) => return Ok(current),
                Err(e) if !e.is_retryable() || attempt + 1 >= ONCE_ATTEMPTS => return Err(e),
                Err(e) => {
                    let delay = schedule::backoff(attempt, fastrand::f64(), e.retry_after());
                    attempt += 1;
                    warn!(error = %e, retry_in = ?delay, attempt, "refresh failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// `once`'s write of one sink, retried at a transient failure.
    async fn write_once(&self, s: &NamedSink, current: &Current) -> Result<WriteOutcome, SinkError> {
        let mut attempt = 0;
        loop {
            match self.write_one(s, current).await {
                Ok(outcome) => return Ok(outcome),
                Err(e) if !e.is_retryable() || attempt + 1 >= ONCE_ATTEMPTS => return Err(e),
                Err(e) => {
                    let delay = schedule::backoff(attempt, fastrand::f64(), e.retry_after());
                    attempt += 1;
                    warn!(sink = s.sink.name(), error = %e, retry_in = ?delay, attempt, "write failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// A mint that returned the credential already published (the metadata
/// server hands out its cached token until shortly before it expires) is
/// nothing new for the sinks: it keeps the published generation, so no sink
/// rewrites, and the earlier expiry estimate (the two differ only by how
/// each answer's `expires_in` was rounded to the second), so a Secret's
/// expiry annotation does not change by a second and cost a write.
fn same_credential_again(published: Option<&Current>, minted: Current) -> Current {
    match published {
        Some(p) if p.doc == minted.doc => {
            let expires_at = match (p.expires_at, minted.expires_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            debug!("the source returned the credential already published; nothing to write");
            Current { expires_at, generation: p.generation, ..minted }
        }
        _ => minted,
    }
}

/// Sleeps until `at`, or for ever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A group's source error, naming its hosts and provider unless the
/// document is Google's alone (whose messages stay as they were).
fn group_error(groups: &[Group], group: &Group, e: SourceError) -> PassError {
    if groups.len() == 1 && group.hosts.iter().all(RegistryHost::is_google) {
        return PassError::Source(e);
    }
    PassError::Group { provider: group.provider(), hosts: group.host_list(), source: Box::new(e) }
}

/// Every result, or the first error (the others are logged: one line
/// reaches the user, naming the first group that failed).
fn first_error<T>(results: Vec<Result<T, PassError>>) -> Result<Vec<T>, PassError> {
    let mut oks = Vec::new();
    let mut first = None;
    for result in results {
        match result {
            Ok(v) => oks.push(v),
            Err(e) if first.is_none() => first = Some(e),
            Err(e) => warn!(error = %e, "another credential group failed too"),
        }
    }
    first.map_or(Ok(oks), Err)
}

/// `regcred render`: mint every group side by side and render, without
/// writing anywhere.
pub(crate) async fn render_once(groups: &[Group]) -> Result<AuthsDocument, PassError> {
    let mints =
        groups.iter().map(|g| async move { g.source.credential().await.map_err(|e| group_error(groups, g, e)) });
    let credentials = first_error(futures::future::join_all(mints).await)?;
    let entries = groups.iter().zip(&credentials).flat_map(|(g, c)| g.hosts.iter().map(move |h| (h, c)));
    Ok(render_entries(entries)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: u16) -> Result<WriteOutcome, SinkError> {
        Err(SinkError::Api { sink: "s".into(), code, reason: String::new(), message: String::new(), retry_after: None })
    }

    const RESYNC: Duration = Duration::from_secs(600);

    #[tokio::test(start_paused = true)]
    async fn a_new_document_is_due_at_once_whatever_the_backoff() {
        let mut s = SinkSchedule::default();
        let now = Instant::now();
        assert!(s.due(1, now), "never offered");
        let retry_in = s.record(1, now, &failure(500), RESYNC).unwrap();
        assert!(!s.due(1, now), "backing off");
        assert!(s.due(2, now), "a fresh mint is not held back by the backoff");
        assert!(s.due(1, now + retry_in), "retried on its own schedule");
        assert_eq!(s.next_wake(), Some(now + retry_in), "the retry comes before the resync");
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_document_is_due_again_only_at_the_resync() {
        let mut s = SinkSchedule::default();
        let now = Instant::now();
        assert_eq!(s.record(1, now, &failure(500), RESYNC).map(|_| ()), Some(()));
        assert_eq!(s.record(1, now, &Ok(WriteOutcome::Updated), RESYNC), None);
        assert_eq!((s.holds, s.failures, s.retry_at), (Some(1), 0, None), "a success clears the backoff");
        assert!(!s.due(1, now + RESYNC - Duration::from_secs(1)));
        assert!(s.due(1, now + RESYNC));
        assert_eq!(s.next_wake(), Some(now + RESYNC));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sink_that_retries_by_itself_is_not_offered_the_same_document_again() {
        let mut s = SinkSchedule::default();
        let now = Instant::now();
        let partial = SinkError::Partial { sink: "s".into(), failed: 1, total: 2, first: "a".into(), retryable: true };
        assert_eq!(s.record(1, now, &Err(partial), RESYNC), None);
        assert!(!s.due(1, now + Duration::from_secs(60)));
        assert!(s.due(2, now), "but a new one, yes");
        assert_eq!(s.next_wake(), Some(now + RESYNC));
    }

    fn current(password: &str, expires_in: u64, generation: u64) -> Current {
        let credential = crate::credential::Credential {
            username: "oauth2accesstoken".into(),
            password: crate::secret::Secret::new(password.into()),
            expires_at: None,
        };
        let doc = render(&credential, &["gcr.io".parse().unwrap()]).unwrap();
        let expires_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(expires_in));
        Current { doc, expires_at, refresh_at: None, generation }
    }

    #[test]
    fn the_same_credential_again_is_not_a_new_generation_and_keeps_the_earlier_expiry() {
        let published = current("tok-1", 1000, 3);
        let again = same_credential_again(Some(&published), current("tok-1", 1001, 4));
        assert_eq!((again.generation, again.expires_at), (3, published.expires_at));
        let new = same_credential_again(Some(&published), current("tok-2", 2000, 4));
        assert_eq!(new.generation, 4, "a new token is a new generation");
        assert_eq!(same_credential_again(None, current("tok-1", 1000, 1)).generation, 1);
    }
}
