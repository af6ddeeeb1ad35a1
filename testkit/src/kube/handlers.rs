//! HTTP surface of the Kubernetes emulator: URL routing, verbs, LIST and WATCH.
//!
//! One fallback handler parses the path itself (rather than an axum route
//! table) so that every miss, wrong verb or wrong content type is answered with
//! the apiserver's `Status` body and code, not axum's defaults. Discovery is
//! not served: regcred's typed kube-rs clients never ask for it.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{json, Value};

use super::resources::{self, Resource, COORDINATION_GROUP, CORE, EVENTS_GROUP};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{json_response, success_status, ApiError};
use super::store::{Change, ChangeType};
use super::view::View;
use super::Shared;

/// Default watch duration when `timeoutSeconds` is absent (the apiserver picks
/// a random value in [minRequestTimeout, 2*minRequestTimeout], 30-60 min).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// How long before its timeout a watch gets its last bookmark (the cacher's
/// `nextBookmarkTime`: "for now we simply set it 2s before the deadline").
const BOOKMARK_BEFORE_TIMEOUT: Duration = Duration::from_secs(2);

/// When a watch's next periodic bookmark is due, as k8s.io/apiserver's cacher
/// (`cacheWatcher.nextBookmarkTime`) schedules it: `every` from now (a minute
/// there), or 2 s before the deadline if that is sooner; none if that moment
/// has passed (a watch of `timeoutSeconds` 2 or less never gets one).
fn next_bookmark(
    now: tokio::time::Instant,
    every: Duration,
    deadline: tokio::time::Instant,
) -> Option<tokio::time::Instant> {
    let before_timeout = deadline.checked_sub(BOOKMARK_BEFORE_TIMEOUT)?;
    let at = (now + every).min(before_timeout);
    (at > now).then_some(at)
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(uri: &Uri) -> Query {
        Query(serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default())
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
}

/// The single entry point of the emulator's router.
pub(crate) async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(token) = &shared.token {
        let ok = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t.trim() == token);
        if !ok {
            return ApiError::unauthorized().into_response();
        }
    }
    // Negotiated before anything is done: a refused `Accept` writes nothing.
    let view = match View::negotiate(headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok())) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let req = Req { shared, method, query: Query::parse(&uri), headers, body, view };
    let path = uri.path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match route(&req, &segs).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

struct Req {
    shared: Arc<Shared>,
    method: Method,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
    view: View,
}

impl Req {
    fn store(&self) -> std::sync::MutexGuard<'_, super::store::Store> {
        self.shared.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn content_type(&self) -> String {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }

    /// Decodes a body of content type `accepted`; anything else is a 415
    /// (JSON only: no YAML, protobuf or CBOR; for PATCH, merge patches only).
    fn json_body(&self, accepted: &str) -> Result<Value, ApiError> {
        let ct = self.content_type();
        // A PATCH type kube-apiserver does not know never reaches its handler.
        const PATCH_TYPES: [&str; 5] = [
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
            "application/apply-patch+cbor",
        ];
        if self.method == Method::PATCH && !PATCH_TYPES.contains(&ct.as_str()) {
            return Err(
                ApiError::new(415, "UnsupportedMediaType", "415: Unsupported Media Type").with_details(json!({}))
            );
        }
        if ct != accepted {
            return Err(ApiError::unsupported_media_type(accepted));
        }
        // kube-apiserver's message ends with Go's decoder's; this one with serde's.
        serde_json::from_slice(&self.body).map_err(|e| {
            let what =
                if accepted == "application/json" { "couldn't get version/kind; json parse" } else { "decoding patch" };
            ApiError::bad_request(format!("{what} error: {e}"))
        })
    }
}

async fn route(req: &Req, segs: &[&str]) -> Result<Response, ApiError> {
    match segs {
        ["api", "v1", rest @ ..] => resource_route(req, CORE, rest).await,
        ["apis", "events.k8s.io", "v1", rest @ ..] => resource_route(req, EVENTS_GROUP, rest).await,
        ["apis", "coordination.k8s.io", "v1", rest @ ..] => resource_route(req, COORDINATION_GROUP, rest).await,
        _ => Err(ApiError::path_not_found()),
    }
}

async fn resource_route(req: &Req, group: &'static [&'static Resource], rest: &[&str]) -> Result<Response, ApiError> {
    let find = |p: &str| resources::find(group, p).ok_or_else(ApiError::path_not_found);
    match rest {
        [plural] => {
            let res = find(plural)?;
            if res.namespaced {
                // Cluster-wide view of a namespaced resource: read-only.
                match req.method {
                    Method::GET => collection_get(req, res, None).await,
                    _ => Err(ApiError::method_not_allowed()),
                }
            } else {
                collection(req, res, "").await
            }
        }
        ["namespaces", name] if std::ptr::eq(group, CORE) => item(req, &resources::NAMESPACES, "", name),
        ["namespaces", ns, plural] => {
            let res = find(plural)?;
            if !res.namespaced {
                return Err(ApiError::path_not_found());
            }
            collection(req, res, ns).await
        }
        ["namespaces", ns, plural, name] => {
            let res = find(plural)?;
            if !res.namespaced {
                return Err(ApiError::path_not_found());
            }
            item(req, res, ns, name)
        }
        _ => Err(ApiError::path_not_found()),
    }
}

async fn collection(req: &Req, res: &'static Resource, ns: &str) -> Result<Response, ApiError> {
    if res.read_only && req.method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    match req.method {
        Method::GET => collection_get(req, res, res.namespaced.then_some(ns)).await,
        Method::POST => {
            let obj = req.json_body("application/json")?;
            let created = req.store().create(res, ns, obj)?;
            Ok(json_response(StatusCode::CREATED, &req.view.object(res, created)?))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn item(req: &Req, res: &'static Resource, ns: &str, name: &str) -> Result<Response, ApiError> {
    if res.read_only && req.method != Method::GET {
        return Err(ApiError::method_not_allowed());
    }
    match req.method {
        Method::GET => {
            let store = req.store();
            let obj = store.get(res, ns, name).ok_or_else(|| ApiError::not_found(res, name))?;
            let obj = obj.clone();
            drop(store);
            Ok(json_response(StatusCode::OK, &req.view.object(res, obj)?))
        }
        Method::PATCH if res.patchable => {
            let patch = req.json_body("application/merge-patch+json")?;
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "json: cannot unmarshal into Go value of type map[string]interface {}",
                ));
            }
            let patched = req.store().merge_patch(res, ns, name, &patch)?;
            Ok(json_response(StatusCode::OK, &req.view.object(res, patched)?))
        }
        Method::DELETE => {
            // DeleteOptions that do not parse are not an API error there: 500.
            let opts = match req.body.is_empty() {
                true => json!({}),
                false => req.json_body("application/json").map_err(|e| match e.code {
                    400 => ApiError::unclassified(e.message),
                    _ => e,
                })?,
            };
            let uid = opts.pointer("/preconditions/uid").and_then(Value::as_str);
            let rv = opts.pointer("/preconditions/resourceVersion").and_then(Value::as_str);
            let deleted = req.store().delete(res, ns, name, uid, rv)?;
            let uid = deleted.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
            Ok(json_response(StatusCode::OK, &success_status(res, name, uid)))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Which objects a LIST or WATCH selects.
struct Filter {
    res: &'static Resource,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn parse(req: &Req, res: &'static Resource, ns: Option<&str>) -> Result<Filter, ApiError> {
        Ok(Filter {
            res,
            ns: ns.map(str::to_string),
            labels: LabelSelector::parse(req.query.get("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(req.query.get("fieldSelector").unwrap_or(""), res)?,
        })
    }

    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches(obj)
    }

    /// Translates a stored change into the watch event this watcher sees, if any:
    /// an object entering the selection is ADDED, leaving it is DELETED.
    fn event<'c>(&self, c: &'c Change) -> Option<(ChangeType, Cow<'c, Value>)> {
        if c.res.plural != self.res.plural || self.ns.as_deref().is_some_and(|ns| ns != c.ns) {
            return None;
        }
        let now = self.matches(&c.object);
        let before = c.old.as_ref().is_some_and(|o| self.matches(o));
        match c.kind {
            ChangeType::Added => now.then_some((ChangeType::Added, Cow::Borrowed(&c.object))),
            ChangeType::Deleted => before.then_some((ChangeType::Deleted, Cow::Borrowed(&c.object))),
            ChangeType::Modified => match (before, now) {
                (true, true) => Some((ChangeType::Modified, Cow::Borrowed(&c.object))),
                (false, true) => Some((ChangeType::Added, Cow::Borrowed(&c.object))),
                (true, false) => {
                    let mut o = c.old.clone().expect("before implies old");
                    o["metadata"]["resourceVersion"] = json!(c.rv.to_string());
                    Some((ChangeType::Deleted, Cow::Owned(o)))
                }
                (false, false) => None,
            },
        }
    }
}

async fn collection_get(req: &Req, res: &'static Resource, ns: Option<&str>) -> Result<Response, ApiError> {
    let filter = Filter::parse(req, res, ns)?;
    if req.query.flag("watch") {
        return watch(req, filter);
    }
    list(req, filter)
}

/// The opaque `continue` token: where the next page starts.
fn encode_continue(rv: u64, after: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!({"rv": rv, "start": after}).to_string())
}

fn decode_continue(token: &str) -> Result<(u64, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok((v["rv"].as_u64().ok_or_else(bad)?, v["start"].as_str().ok_or_else(bad)?.to_string()))
}

/// A `resourceVersion` parameter, or the error kube-apiserver gives for one
/// that is not a number.
fn parse_resource_version(rv: &str) -> Result<u64, String> {
    rv.parse().map_err(|_| {
        let quoted = super::status::go_quote(rv);
        format!("resourceVersion: Invalid value: {quoted}: strconv.ParseUint: parsing {quoted}: invalid syntax")
    })
}

fn list(req: &Req, filter: Filter) -> Result<Response, ApiError> {
    if let Some(rv) = req.query.get("resourceVersion").filter(|rv| !rv.is_empty()) {
        parse_resource_version(rv).map_err(|e| ApiError::bad_request(format!("invalid resource version: {e}")))?;
    }
    let limit: usize = match req.query.get("limit") {
        None | Some("") => 0,
        Some(l) => l.parse().map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
    };
    let store = req.store();
    let (list_rv, after) = match req.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (rv, after) = decode_continue(token)?;
            if rv < store.compacted() {
                return Err(ApiError::new(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ));
            }
            (rv, Some(after))
        }
        None => (store.resource_version(), None),
    };
    let key_of = |o: &Value| {
        format!(
            "{}/{}",
            o.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(""),
            o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
        )
    };
    let mut items: Vec<Value> = store
        .list(filter.res, filter.ns.as_deref())
        .filter(|o| after.as_ref().is_none_or(|a| key_of(o) > *a))
        .filter(|o| filter.matches(o))
        .cloned()
        .collect();
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if limit > 0 && items.len() > limit {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = key_of(items.last().expect("limit > 0"));
        metadata["continue"] = json!(encode_continue(list_rv, &last));
        metadata["remainingItemCount"] = json!(remaining);
    }
    // List items carry no kind/apiVersion on the wire (kubernetes#3030).
    for it in &mut items {
        if let Some(m) = it.as_object_mut() {
            m.remove("kind");
            m.remove("apiVersion");
        }
    }
    drop(store);
    Ok(json_response(StatusCode::OK, &req.view.list(filter.res, metadata, items)?))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    // Serialized in place (no copy of the object); keys in the order the
    // `json!` map this replaced wrote them.
    #[derive(serde::Serialize)]
    struct Event<'a> {
        object: &'a Value,
        #[serde(rename = "type")]
        kind: &'a str,
    }
    let mut v = serde_json::to_vec(&Event { object, kind }).expect("json");
    v.push(b'\n');
    Bytes::from(v)
}

/// The line of an ADDED/MODIFIED/DELETED event as `view` shows it; `None`
/// when it cannot (see [`View::event_object`]).
fn object_line(view: View, kind: &str, obj: &Value) -> Option<Bytes> {
    view.event_object(obj).map(|o| event_line(kind, &o))
}

fn bookmark(view: View, res: &Resource, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let (kind, api_version) = view.bookmark_type(res);
    let mut object = json!({"kind": kind, "apiVersion": api_version, "metadata": meta});
    // The cacher sends an empty object of the resource's Go type: a
    // Namespace's struct-typed `spec` and `status` come out as `{}`.
    if view == View::Full && res.plural == "namespaces" {
        object["spec"] = json!({});
        object["status"] = json!({});
    }
    event_line("BOOKMARK", &object)
}

struct WatchState {
    shared: Arc<Shared>,
    rx: tokio::sync::watch::Receiver<u64>,
    filter: Filter,
    cursor: u64,
    pending: VecDeque<Bytes>,
    deadline: tokio::time::Instant,
    /// When the next periodic bookmark is due; `None` without
    /// `allowWatchBookmarks` or once none is left before the deadline.
    next_bookmark: Option<tokio::time::Instant>,
    bookmark_every: Duration,
    /// Set when `next_bookmark` has passed; the bookmark is written once the
    /// changes up to that moment have been.
    bookmark_due: bool,
    /// The resourceVersion the watch started from: a bookmark must be newer.
    start_rv: u64,
    view: View,
    done: bool,
}

/// WATCH: a chunked stream of newline-delimited events, from the requested
/// resourceVersion (or the current state as synthetic ADDED events when none
/// or "0" is given), until `timeoutSeconds`. With `allowWatchBookmarks`, a
/// BOOKMARK comes when the cacher would send one: about once a minute and 2 s
/// before the timeout (see [`next_bookmark`]), never right away, so a test
/// sees one only if it waits for it or asks for a shorter period
/// ([`KubeApi::set_bookmark_frequency`](super::KubeApi::set_bookmark_frequency)).
fn watch(req: &Req, filter: Filter) -> Result<Response, ApiError> {
    let timeout = match req.query.get("timeoutSeconds") {
        None | Some("") => DEFAULT_WATCH_TIMEOUT,
        Some(t) => {
            Duration::from_secs(t.parse().map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {t}")))?)
        }
    };
    let send_initial = req.query.flag("sendInitialEvents");
    if req.query.get("sendInitialEvents").is_some() && req.query.get("resourceVersionMatch") != Some("NotOlderThan") {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![super::status::Cause::forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )],
        ));
    }
    let bookmarks = req.query.flag("allowWatchBookmarks");
    let mut rx = req.shared.changes.clone();
    rx.borrow_and_update();
    let store = req.store();
    let mut pending = VecDeque::new();
    let mut unencodable = false;
    let rv_param = req.query.get("resourceVersion").unwrap_or("");
    let cursor = if rv_param.is_empty() || rv_param == "0" || send_initial {
        let start = if send_initial && !rv_param.is_empty() && rv_param != "0" {
            rv_param.parse::<u64>().unwrap_or(0).max(store.resource_version())
        } else {
            store.resource_version()
        };
        for o in store.list(filter.res, filter.ns.as_deref()).filter(|o| filter.matches(o)) {
            match object_line(req.view, "ADDED", o) {
                Some(line) => pending.push_back(line),
                None => {
                    unencodable = true;
                    break;
                }
            }
        }
        if send_initial && !unencodable {
            pending.push_back(bookmark(req.view, filter.res, start, true));
        }
        start
    } else {
        // Not an API error on a watch: 500 with no reason.
        let rv = parse_resource_version(rv_param).map_err(ApiError::unclassified)?;
        if rv < store.compacted() {
            // The apiserver answers 200 and then an ERROR event carrying 410.
            pending.push_back(event_line("ERROR", &ApiError::expired(rv, store.compacted() + 1).to_json()));
        }
        rv
    };
    let expired = rv_param.parse::<u64>().is_ok_and(|rv| rv < store.compacted()) && !send_initial;
    drop(store);
    let now = tokio::time::Instant::now();
    let deadline = now + timeout;
    let bookmark_every = req.shared.bookmark_every();
    let state = WatchState {
        shared: req.shared.clone(),
        rx,
        filter,
        cursor,
        pending,
        deadline,
        next_bookmark: if bookmarks { next_bookmark(now, bookmark_every, deadline) } else { None },
        bookmark_every,
        bookmark_due: false,
        start_rv: cursor,
        view: req.view,
        done: expired || unencodable,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(line) = st.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(line), st));
            }
            if st.done {
                return None;
            }
            st.rx.borrow_and_update();
            {
                let store = st.shared.store.lock().unwrap_or_else(|e| e.into_inner());
                if st.cursor < store.compacted() {
                    st.pending
                        .push_back(event_line("ERROR", &ApiError::expired(st.cursor, store.compacted() + 1).to_json()));
                    st.done = true;
                    continue;
                }
                for c in store.changes_after(st.cursor) {
                    if let Some((kind, obj)) = st.filter.event(c) {
                        match object_line(st.view, kind.as_str(), &obj) {
                            Some(line) => st.pending.push_back(line),
                            None => {
                                st.done = true;
                                break;
                            }
                        }
                    }
                }
                st.cursor = st.cursor.max(store.resource_version());
            }
            if st.bookmark_due && !st.done {
                st.bookmark_due = false;
                // The cacher drops a bookmark no newer than where the watch
                // started: an idle watch gets none. (Its bookmark carries the
                // newest resourceVersion the resource's cache has seen, which
                // etcd's progress notifications keep close to the newest
                // revision; the global counter stands in for that here.)
                if st.cursor > st.start_rv {
                    st.pending.push_back(bookmark(st.view, st.filter.res, st.cursor, false));
                }
                st.next_bookmark = next_bookmark(tokio::time::Instant::now(), st.bookmark_every, st.deadline);
            }
            if st.done || !st.pending.is_empty() {
                continue;
            }
            let next_bookmark = st.next_bookmark;
            tokio::select! {
                changed = st.rx.changed() => {
                    if changed.is_err() {
                        st.done = true;
                    }
                }
                _ = tokio::time::sleep_until(st.deadline) => st.done = true,
                _ = async { tokio::time::sleep_until(next_bookmark.expect("guarded")).await }, if next_bookmark.is_some() => {
                    st.bookmark_due = true;
                }
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .expect("valid response"))
}
