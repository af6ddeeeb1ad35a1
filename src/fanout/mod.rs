//! Namespace fan-out: one pull Secret in every selected namespace.
//!
//! [`FanOut`] is a [`Sink`] like any other, so the refresh loop still mints
//! once per cycle and hands it one document. Behind it, two watches keep a
//! small in-memory picture of the cluster: the selected namespaces (names
//! only) and, for each, the managed Secret's `resourceVersion` and a hash of
//! the key regcred owns. With that picture:
//! - a cycle writes only the Secrets whose content differs, one request each
//!   (a merge patch carrying the `resourceVersion` it read, or a create);
//! - a new namespace, or a Secret deleted or edited by someone else, is
//!   written within moments of the watch event, not at the next cycle.
//!
//! Writes run in parallel up to `--max-concurrent-writes` and are spaced by
//! a client-side rate limit, so a 10,000-namespace cluster is not hammered.

mod args;
mod selection;
mod service_accounts;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client};
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{debug, info, warn};

pub(crate) use args::{Args, FanOutError};
pub(crate) use selection::{NamespaceName, Pattern, Selection, DEFAULT_EXCLUDES};
pub(crate) use service_accounts::ServiceAccountPatching;

use crate::cluster::Throttle;
use crate::events::{Events, Failure};
use crate::render::AuthsDocument;
use crate::sink::managed::{self, secret_ref, Known, Owned, Seen, Target};
use crate::sink::{SecretKey, Sink, SinkError, WriteOutcome};

/// How long a cycle waits for the watches' first complete listing.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// What fan-out is asked to do (from the fan-out flags).
#[derive(Clone, Debug)]
pub struct Settings {
    pub selection: Selection,
    pub secret_name: String,
    pub key: SecretKey,
    pub prune: bool,
    pub service_accounts: ServiceAccountPatching,
    pub max_concurrent_writes: usize,
    pub writes_per_second: u32,
    /// `timeoutSeconds` of the watches; see [`crate::cluster::WATCH_TIMEOUT`].
    pub watch_timeout: Duration,
}

struct Shared {
    client: Client,
    config: Settings,
    /// Locked only for map operations, never across an `.await`.
    state: Mutex<State>,
    queue: mpsc::UnboundedSender<String>,
    throttle: Throttle,
    /// (namespaces listed, secrets listed)
    synced: watch::Sender<(bool, bool)>,
    events: Option<Arc<Events>>,
}

/// What fan-out knows of the cluster and of its own work.
#[derive(Default)]
struct State {
    /// The selected namespaces.
    namespaces: BTreeSet<String>,
    /// What the watch (or a write) last saw of the Secret in each namespace.
    secrets: HashMap<String, Seen>,
    /// regcred's parts of the Secret as they are being distributed.
    current: Option<Arc<Owned>>,
    /// Namespaces whose ServiceAccounts are known to list the Secret.
    accounts_done: HashSet<String>,
    /// Namespaces queued for an immediate write, to coalesce bursts of events.
    queued: HashSet<String>,
    /// Consecutive failures per namespace: each backs off on its own.
    retries: HashMap<String, u32>,
}

/// Keeps `--secret NAME` fresh in every selected namespace.
pub(crate) struct FanOut {
    shared: Arc<Shared>,
    name: String,
}

impl FanOut {
    /// Starts the namespace and Secret watches and the worker that handles
    /// their events. They run until the process exits.
    pub(crate) fn start(client: Client, config: Settings, events: Option<Arc<Events>>) -> FanOut {
        let (tx, rx) = mpsc::unbounded_channel();
        let name = format!("secret {} in selected namespaces", config.secret_name);
        let shared = Arc::new(Shared {
            client,
            throttle: Throttle::new(config.max_concurrent_writes, config.writes_per_second),
            config,
            state: Mutex::default(),
            queue: tx,
            synced: watch::channel((false, false)).0,
            events,
        });
        tokio::spawn(watch_namespaces(shared.clone()));
        tokio::spawn(watch_secrets(shared.clone()));
        tokio::spawn(work(shared.clone(), rx));
        FanOut { shared, name }
    }
}

#[async_trait::async_trait]
impl Sink for FanOut {
    fn name(&self) -> &str {
        &self.name
    }

    async fn write(&self, doc: &AuthsDocument, expires_at: Option<SystemTime>) -> Result<WriteOutcome, SinkError> {
        let shared = &self.shared;
        let published = Arc::new(Owned::new(doc, expires_at));

        let mut synced = shared.synced.subscribe();
        let waited =
            tokio::time::timeout(SYNC_TIMEOUT, synced.wait_for(|(ns, s)| *ns && *s)).await.is_ok_and(|r| r.is_ok());
        if !waited {
            return Err(SinkError::Transport {
                sink: self.name.clone(),
                message: "the namespace and Secret watches have not completed their first listing; check the logs for list errors (RBAC: list/watch on namespaces and secrets)".into(),
            });
        }

        // Published only once the first listings are in: before that, the
        // watches would queue every namespace for a write this cycle is
        // about to make anyway.
        let targets: Vec<String> = {
            let mut state = shared.state();
            state.current = Some(published.clone());
            state.namespaces.iter().cloned().collect()
        };
        let total = targets.len();
        let started = Instant::now();
        let results: Vec<(String, Result<WriteOutcome, SinkError>)> = futures::stream::iter(targets)
            .map(|ns| {
                let published = published.clone();
                async move {
                    let r = shared.ensure(&ns, &published).await;
                    (ns, r)
                }
            })
            .buffer_unordered(shared.config.max_concurrent_writes.max(1))
            .collect()
            .await;

        let mut changed = 0usize;
        let mut failures = Vec::new();
        for (ns, result) in results {
            shared.settle(&ns, result.as_ref().err());
            match result {
                Ok(WriteOutcome::Unchanged) => {}
                Ok(_) => changed += 1,
                Err(e) => failures.push((ns, e)),
            }
        }
        info!(namespaces = total, changed, failed = failures.len(), took = ?started.elapsed(), "fan-out cycle");
        match failures.first() {
            None if changed > 0 => Ok(WriteOutcome::Updated),
            None => Ok(WriteOutcome::Unchanged),
            Some((ns, first)) => Err(SinkError::Partial {
                sink: self.name.clone(),
                failed: failures.len(),
                total,
                first: format!("{ns}: {first}"),
                retryable: failures.iter().any(|(_, e)| e.is_retryable()),
            }),
        }
    }

    /// Forgets the document, so the worker writes no namespace until the
    /// next `write`; the watches keep running, so a replica that leads again
    /// knows every Secret and rewrites only those that differ.
    fn stand_down(&self) {
        self.shared.state().current = None;
    }
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain maps behind, still
        // usable: carry on rather than take the process down.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn sink_name(&self, ns: &str) -> String {
        format!("secret {ns}/{}", self.config.secret_name)
    }

    fn seen(&self, secret: &Secret) -> Seen {
        Seen::of(secret, &self.config.key)
    }

    /// Makes the Secret in `ns` hold `published`, then the ServiceAccounts.
    async fn ensure(&self, ns: &str, published: &Owned) -> Result<WriteOutcome, SinkError> {
        let outcome = self.ensure_secret(ns, published).await;
        self.report(ns, &outcome).await;
        let outcome = outcome?;
        if self.config.service_accounts.enabled() && !self.state().accounts_done.contains(ns) {
            let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(self.client.clone(), ns);
            let (secret, sink) = (&self.config.secret_name, self.sink_name(ns));
            match self.config.service_accounts.patch(&api, ns, secret, &self.throttle, &sink).await {
                Ok(true) => {
                    self.state().accounts_done.insert(ns.to_string());
                }
                Ok(false) => debug!(namespace = ns, "a ServiceAccount to patch does not exist yet"),
                Err(e) => return Err(e),
            }
        }
        Ok(outcome)
    }

    async fn ensure_secret(&self, ns: &str, published: &Owned) -> Result<WriteOutcome, SinkError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let sink = self.sink_name(ns);
        let target =
            Target { api: &api, namespace: ns, name: &self.config.secret_name, key: &self.config.key, sink: &sink };
        // The watch keeps what was seen: an unchanged Secret costs no request.
        let known = self.state().secrets.get(ns).cloned().map_or(Known::Absent, Known::Seen);
        let written = match managed::ensure(&target, published, known, Some(&self.throttle)).await {
            // Someone keeps this namespace's Secret themselves: not a failure.
            Err(SinkError::OptedOut { .. }) => {
                debug!(namespace = ns, "the Secret is labelled regcred.dev/managed=false; leaving it alone");
                return Ok(WriteOutcome::Unchanged);
            }
            written => written?,
        };
        if let Some(seen) = written.seen {
            self.state().secrets.insert(ns.to_string(), seen);
        }
        Ok(written.outcome)
    }

    /// Events and logs per namespace, once per failing streak.
    async fn report(&self, ns: &str, outcome: &Result<WriteOutcome, SinkError>) {
        let object = secret_ref(ns, &self.config.secret_name);
        match outcome {
            Ok(o) => {
                if let Some(events) = &self.events {
                    events.succeeded(&object, Failure::Write, *o != WriteOutcome::Unchanged).await;
                }
            }
            Err(e) => {
                warn!(namespace = ns, error = %e, "fan-out write failed");
                if let Some(events) = &self.events {
                    events.failed(&object, Failure::Write, e.is_retryable(), &e.to_string()).await;
                }
            }
        }
    }

    /// Records how a write to `ns` ended; after a retryable failure, queues
    /// the namespace again once its own backoff has passed.
    fn settle(self: &Arc<Self>, ns: &str, error: Option<&SinkError>) {
        let Some(e) = error.filter(|e| e.is_retryable()) else {
            self.state().retries.remove(ns);
            return;
        };
        let attempt = {
            let mut state = self.state();
            let n = state.retries.entry(ns.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n - 1
        };
        let delay = crate::schedule::backoff(attempt, fastrand::f64(), e.retry_after());
        let shared = self.clone();
        let ns = ns.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            shared.enqueue(&ns);
        });
    }

    /// Asks the worker to write `ns` now (coalescing repeats).
    fn enqueue(&self, ns: &str) {
        let mut state = self.state();
        if state.current.is_none() || !state.namespaces.contains(ns) {
            return;
        }
        if state.queued.insert(ns.to_string()) {
            let _ = self.queue.send(ns.to_string());
        }
    }

    /// Removes the managed Secret from a namespace that no longer matches.
    async fn prune(&self, ns: &str) {
        let seen = self.state().secrets.get(ns).cloned();
        let Some(seen) = seen.filter(|s| s.managed) else { return };
        let api: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        // The precondition makes sure we delete the Secret we saw regcred
        // manage, not one someone has since replaced.
        let params = DeleteParams {
            preconditions: Some(Preconditions { resource_version: Some(seen.resource_version), uid: None }),
            ..Default::default()
        };
        let (name, sink) = (&self.config.secret_name, self.sink_name(ns));
        let request = api.delete(name, &params);
        match crate::sink::send(Some(&self.throttle), &sink, "delete", &format!("secrets/{name}"), ns, request).await {
            Ok(_) => info!(namespace = ns, "pruned the Secret from a namespace that no longer matches"),
            // Already gone, with its namespace or by someone else's hand.
            Err(SinkError::Api { code: 404, .. }) => {
                self.state().secrets.remove(ns);
            }
            Err(e) => warn!(namespace = ns, error = %e, "cannot prune"),
        }
    }
}

/// Handles namespaces queued by watch events and by retries.
///
/// At most `--max-concurrent-writes` namespaces are in hand at once; the rest
/// wait in the queue as bare names, so a burst of events costs little memory.
async fn work(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<String>) {
    let slots = Arc::new(Semaphore::new(shared.config.max_concurrent_writes.max(1)));
    while let Some(ns) = rx.recv().await {
        let slot = slots.clone().acquire_owned().await.expect("semaphore never closed");
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let published = {
                let mut state = shared.state();
                state.queued.remove(&ns);
                match &state.current {
                    Some(published) if state.namespaces.contains(&ns) => published.clone(),
                    _ => return,
                }
            };
            let result = shared.ensure(&ns, &published).await;
            shared.settle(&ns, result.as_ref().err());
        });
    }
}

/// Watches namespaces; keeps the selected set and queues new ones. Names,
/// labels (matched by the server) and the deletion mark are all it needs, so
/// it asks for metadata only: a fraction of the bytes of full objects.
async fn watch_namespaces(shared: Arc<Shared>) {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(shared.client.clone());
    let mut config = watcher_config(&shared.config);
    if let Some(selector) = shared.config.selection.label_selector() {
        config = config.labels(selector);
    }
    let mut relisted: Option<BTreeSet<String>> = None;
    let mut stream = watcher(api, config).default_backoff().boxed();
    while let Some(event) = next_event(&mut stream, "namespace").await {
        match event {
            watcher::Event::Init => relisted = Some(BTreeSet::new()),
            watcher::Event::InitApply(ns) => {
                if let (Some(set), Some(name)) = (relisted.as_mut(), selected_name(&shared, &ns)) {
                    set.insert(name);
                }
            }
            watcher::Event::InitDone => {
                let set = relisted.take().unwrap_or_default();
                let (added, removed): (Vec<String>, Vec<String>) = {
                    let mut state = shared.state();
                    let added = set.difference(&state.namespaces).cloned().collect();
                    let removed = state.namespaces.difference(&set).cloned().collect();
                    state.namespaces = set;
                    (added, removed)
                };
                info!(namespaces = shared.state().namespaces.len(), "namespaces listed");
                shared.synced.send_modify(|s| s.0 = true);
                for ns in added {
                    shared.enqueue(&ns);
                }
                // Namespaces that stopped matching while the watch was down
                // (a relist brings no DELETED events for them).
                for ns in removed {
                    shared.state().accounts_done.remove(&ns);
                    if shared.config.prune {
                        let shared = shared.clone();
                        tokio::spawn(async move { shared.prune(&ns).await });
                    }
                }
            }
            watcher::Event::Apply(ns) => {
                let name = ns.metadata.name.clone().unwrap_or_default();
                if selected_name(&shared, &ns).is_some() {
                    let new = shared.state().namespaces.insert(name.clone());
                    if new {
                        debug!(namespace = name, "namespace selected");
                        shared.enqueue(&name);
                    }
                } else {
                    shared.state().namespaces.remove(&name);
                }
            }
            watcher::Event::Delete(ns) => {
                let name = ns.metadata.name.clone().unwrap_or_default();
                let was = {
                    let mut state = shared.state();
                    state.accounts_done.remove(&name);
                    state.namespaces.remove(&name)
                };
                // A namespace being deleted takes its Secrets with it; one that
                // merely stopped matching the selector keeps them unless --prune.
                if was && shared.config.prune && ns.metadata.deletion_timestamp.is_none() {
                    let shared = shared.clone();
                    tokio::spawn(async move { shared.prune(&name).await });
                }
            }
        }
    }
}

/// The next watch event. The watcher re-lists and resumes by itself after
/// an error, waiting out kube-runtime's default backoff (exponential, 800 ms
/// up to 30 s, with jitter) so that a persistent failure (RBAC, say) does not spin.
async fn next_event<K>(
    stream: &mut futures::stream::BoxStream<'static, watcher::Result<watcher::Event<K>>>,
    what: &str,
) -> Option<watcher::Event<K>> {
    loop {
        match stream.try_next().await {
            Ok(event) => return event,
            Err(e) => warn!(error = %e, "{what} watch failed; retrying"),
        }
    }
}

/// Listings in pages; watches renewed after `--watch-timeout`.
fn watcher_config(config: &Settings) -> watcher::Config {
    let secs = u32::try_from(config.watch_timeout.as_secs()).unwrap_or(u32::MAX).max(1);
    watcher::Config::default().page_size(500).timeout(secs)
}

/// The namespace's name if it is a live target. A namespace is Terminating
/// exactly when it carries a deletion timestamp.
fn selected_name(shared: &Shared, ns: &PartialObjectMeta<Namespace>) -> Option<String> {
    let name = ns.metadata.name.as_deref()?;
    let terminating = ns.metadata.deletion_timestamp.is_some();
    (!terminating && shared.config.selection.includes(name)).then(|| name.to_string())
}

/// Watches the managed Secret across namespaces (by name, so RBAC can name
/// it) and queues any that was deleted or whose owned content drifted.
async fn watch_secrets(shared: Arc<Shared>) {
    let api: Api<Secret> = Api::all(shared.client.clone());
    let config = watcher_config(&shared.config).fields(&format!("metadata.name={}", shared.config.secret_name));
    let mut relisted: Option<HashMap<String, Seen>> = None;
    let mut stream = watcher(api, config).default_backoff().boxed();
    while let Some(event) = next_event(&mut stream, "Secret").await {
        match event {
            watcher::Event::Init => relisted = Some(HashMap::new()),
            watcher::Event::InitApply(s) => {
                if let (Some(map), Some(ns)) = (relisted.as_mut(), s.metadata.namespace.clone()) {
                    map.insert(ns, shared.seen(&s));
                }
            }
            watcher::Event::InitDone => {
                let map = relisted.take().unwrap_or_default();
                shared.state().secrets = map;
                shared.synced.send_modify(|s| s.1 = true);
                let namespaces: Vec<String> = shared.state().namespaces.iter().cloned().collect();
                for ns in namespaces {
                    if drifted(&shared, &ns) {
                        shared.enqueue(&ns);
                    }
                }
            }
            watcher::Event::Apply(s) => {
                let Some(ns) = s.metadata.namespace.clone() else { continue };
                let seen = shared.seen(&s);
                let newer = {
                    let mut state = shared.state();
                    let secrets = &mut state.secrets;
                    let newer = secrets.get(&ns).is_none_or(|old| old.resource_version != seen.resource_version);
                    secrets.insert(ns.clone(), seen);
                    newer
                };
                if newer && drifted(&shared, &ns) {
                    debug!(namespace = ns, "managed Secret changed by someone else; restoring");
                    shared.enqueue(&ns);
                }
            }
            watcher::Event::Delete(s) => {
                let Some(ns) = s.metadata.namespace.clone() else { continue };
                shared.state().secrets.remove(&ns);
                shared.enqueue(&ns);
            }
        }
    }
}

/// Whether the Secret in `ns` differs from the current document.
fn drifted(shared: &Shared, ns: &str) -> bool {
    let state = shared.state();
    let Some(current) = &state.current else { return false };
    state.secrets.get(ns).is_none_or(|s| !s.opted_out && !current.is_held_by(s))
}
