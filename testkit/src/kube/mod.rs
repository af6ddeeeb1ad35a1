//! An in-process emulator of the Kubernetes API server, over real HTTP.
//!
//! It serves the slice of the API that regcred and its tests use, with the
//! apiserver's observable behaviour for that slice: secrets and service
//! accounts (create, get, merge patch, delete with preconditions),
//! `events.k8s.io/v1` events (create), namespaces (read: the test writes them
//! through the helpers below), JSON objects with server-set
//! `uid`/`resourceVersion`/`creationTimestamp`, one global resourceVersion
//! counter, optimistic concurrency (409 Conflict), the validation rules
//! regcred's writes can break (see `validate`) as `422 Invalid` `Status`
//! bodies with `details.causes`, label and field selectors, chunked LIST,
//! WATCH streams that resume from a resourceVersion, and metadata-only
//! responses (`PartialObjectMetadata[List]`, see [`view`](self::view)). The
//! test drives "the rest of the cluster" through the synchronous helpers
//! (`create_namespace`, `put_object`, ...), which produce the same watch
//! events an external writer would.
//!
//! What it does not serve is refused the way the apiserver refuses what it
//! does not support, never silently accepted: other patch types and body
//! encodings (415), PUT, Event patches and namespace writes (405), other
//! resources and discovery (404), YAML/protobuf/Table responses (406). No
//! `managedFields` are kept. Namespace deletion completes at once instead of
//! lingering in `Terminating`. This crate's `tests/kube_conformance.rs`
//! holds the emulator's answers to a real kube-apiserver's; regcred's
//! end-to-end tests (`tests/e2e_*.rs`) guard the rest.

mod handlers;
mod resources;
mod selector;
mod status;
mod store;
mod validate;
mod view;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::IntoResponse;
use axum::Router;
use serde_json::{json, Value};

use crate::faults::Faults;
pub use crate::server::RecordedRequest;
use crate::server::{self, Peer, Recorder, Server};
use resources::Resource;
use store::Store;

/// State shared by the HTTP handlers and the test-facing helpers.
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// Bumped to the newest resourceVersion after every write; watches wait on it.
    changes: tokio::sync::watch::Receiver<u64>,
    token: Option<String>,
    /// The period of watch bookmarks, in milliseconds (see
    /// [`KubeApi::set_bookmark_frequency`]).
    bookmark_every_ms: AtomicU64,
}

/// kube-apiserver's `defaultBookmarkFrequency` (storage/cacher): a minute.
const DEFAULT_BOOKMARK_FREQUENCY: Duration = Duration::from_secs(60);

impl Shared {
    fn bookmark_every(&self) -> Duration {
        Duration::from_millis(self.bookmark_every_ms.load(Ordering::Relaxed))
    }
}

/// A running Kubernetes API emulator bound to `127.0.0.1:<random port>`.
/// Dropping it stops the server and ends open watches.
pub struct KubeApi {
    shared: Arc<Shared>,
    faults: Faults,
    recorder: Arc<Recorder>,
    server: Server,
}

impl KubeApi {
    /// Starts an emulator that accepts unauthenticated requests. The namespaces
    /// `default`, `kube-system`, `kube-public` and `kube-node-lease` exist.
    pub async fn start() -> KubeApi {
        Self::start_inner(None).await
    }

    /// Starts an emulator that requires `Authorization: Bearer <bearer>` on every
    /// request and answers `401 Unauthorized` (a `Status`) otherwise.
    pub async fn start_with_token(bearer: &str) -> KubeApi {
        Self::start_inner(Some(bearer.to_string())).await
    }

    async fn start_inner(token: Option<String>) -> KubeApi {
        let (tx, rx) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(tx)),
            changes: rx,
            token,
            bookmark_every_ms: AtomicU64::new(DEFAULT_BOOKMARK_FREQUENCY.as_millis() as u64),
        });
        let faults = Faults::default();
        let recorder = Arc::new(Recorder::default());
        let router = Router::new().fallback(handlers::dispatch).with_state(shared.clone());
        let peer = Peer {
            name: "kube",
            faults: faults.clone(),
            recorder: recorder.clone(),
            error: Arc::new(|code, _path| status::ApiError::for_code(code.as_u16()).into_response()),
        };
        let server = server::serve(router, peer).await;
        KubeApi { shared, faults, recorder, server }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The bearer token the emulator requires, if any.
    pub fn token(&self) -> Option<&str> {
        self.shared.token.as_deref()
    }

    /// Writes a kubeconfig whose current context points at this emulator, with
    /// `namespace` as the context namespace and the bearer token (if any) as
    /// the user's credentials. Usable by kube-rs `Config::infer()` through
    /// `KUBECONFIG`.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) {
        let user = match &self.shared.token {
            Some(t) => format!("  user:\n    token: {}\n", serde_json::to_string(t).expect("json")),
            None => "  user: {}\n".to_string(),
        };
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: testkit\n  cluster:\n    server: {url}\n\
             contexts:\n\
             - name: testkit\n  context:\n    cluster: testkit\n    user: testkit\n    namespace: {ns}\n\
             current-context: testkit\n\
             preferences: {{}}\n\
             users:\n\
             - name: testkit\n{user}",
            url = self.url(),
            ns = serde_json::to_string(namespace).expect("json"),
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.shared.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resource(kind_plural: &str) -> &'static Resource {
        resources::by_plural(kind_plural).unwrap_or_else(|| panic!("the test kit does not serve {kind_plural:?}"))
    }

    /// Creates a namespace (or overwrites its labels if it exists).
    pub fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        self.store().seed("", &resources::NAMESPACES, json!({"metadata": {"name": name, "labels": labels}}));
    }

    /// Deletes a namespace and everything in it (emitting the watch events).
    pub fn delete_namespace(&self, name: &str) {
        self.store().unseed(&resources::NAMESPACES, "", name);
    }

    /// Adds or overwrites labels on an existing namespace; an empty value
    /// removes the label. Panics if the namespace does not exist.
    pub fn label_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let mut store = self.store();
        let mut ns = store
            .get(&resources::NAMESPACES, "", name)
            .unwrap_or_else(|| panic!("namespace {name:?} does not exist"))
            .clone();
        for (k, v) in labels {
            if v.is_empty() {
                if let Some(m) = ns["metadata"]["labels"].as_object_mut() {
                    m.remove(*k);
                }
            } else {
                ns["metadata"]["labels"][*k] = json!(v);
            }
        }
        store.seed("", &resources::NAMESPACES, ns);
    }

    /// A namespace object as `GET /api/v1/namespaces/{name}` returns it.
    pub fn namespace(&self, name: &str) -> Option<Value> {
        self.store().get(&resources::NAMESPACES, "", name).cloned()
    }

    /// The stored Secret as `GET` would return it.
    pub fn secret(&self, ns: &str, name: &str) -> Option<Value> {
        self.object(ns, "secrets", name)
    }

    /// Any stored object (`kind_plural`: `secrets`, `serviceaccounts`,
    /// `events`, `namespaces`).
    pub fn object(&self, ns: &str, kind_plural: &str, name: &str) -> Option<Value> {
        let res = Self::resource(kind_plural);
        let ns = if res.namespaced { ns } else { "" };
        self.store().get(res, ns, name).cloned()
    }

    /// Seeds or overwrites an object directly, as "someone else" would: no
    /// validation, a new resourceVersion, and an ADDED/MODIFIED watch event.
    /// `metadata.namespace` is set to `ns`. Returns nothing; read it back with
    /// [`object`](Self::object).
    pub fn put_object(&self, ns: &str, kind_plural: &str, obj: Value) {
        let res = Self::resource(kind_plural);
        self.store().seed(ns, res, obj);
    }

    /// Deletes an object directly (a DELETED watch event); no-op if missing.
    pub fn delete_object(&self, ns: &str, kind_plural: &str, name: &str) {
        let res = Self::resource(kind_plural);
        let ns = if res.namespaced { ns } else { "" };
        self.store().unseed(res, ns, name);
    }

    /// The newest resourceVersion (the global counter).
    pub fn resource_version(&self) -> u64 {
        self.store().resource_version()
    }

    /// Forgets the watch history, as an etcd compaction would: watches and
    /// continue tokens from older resourceVersions get `410 Expired`.
    pub fn compact(&self) {
        self.store().compact();
    }

    /// Test-only: the period of watch bookmarks for watches opened from now
    /// on, instead of kube-apiserver's minute. Bookmarks still never come
    /// before the first period has passed, only when something has been
    /// written since the watch began, and also 2 s before a watch's timeout. A test that calls this should say why it needs bookmarks
    /// sooner than a real server sends them: an early bookmark keeps a
    /// watcher's resourceVersion fresh and can hide a 410-and-relist path.
    pub fn set_bookmark_frequency(&self, every: Duration) {
        self.shared.bookmark_every_ms.store(every.as_millis() as u64, Ordering::Relaxed);
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorder.all()
    }

    pub fn clear_requests(&self) {
        self.recorder.clear();
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The stored `events.k8s.io/v1` Events of a namespace, in name order.
    pub fn events(&self, ns: &str) -> Vec<Value> {
        self.store().list(&resources::EVENTS, Some(ns)).cloned().collect()
    }
}
