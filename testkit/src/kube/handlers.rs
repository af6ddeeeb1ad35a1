//! HTTP surface of the Kubernetes emulator: URL routing, verbs, LIST, WATCH
//! and discovery.
//!
//! One fallback handler parses the path itself (rather than an axum route
//! table) so that every miss, wrong verb or wrong content type is answered with
//! the apiserver's `Status` body and code, not axum's defaults.

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

use super::resources::{self, Resource, CORE, EVENTS_GROUP};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{json_response, success_status, ApiError};
use super::store::{Change, ChangeType, PatchKind, WriteOpts};
use super::validate::go_json_syntax_error;
use super::view::View;
use super::Shared;

/// Default watch duration when `timeoutSeconds` is absent (the apiserver picks
/// a random value in [minRequestTimeout, 2*minRequestTimeout], 30-60 min).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

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

    /// The field manager of a write: the `fieldManager` parameter, else the
    /// user agent up to its first `/` (what the apiserver derives).
    fn field_manager(&self) -> String {
        if let Some(m) = self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        self.headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string()
    }

    fn write_opts(&self) -> Result<WriteOpts, ApiError> {
        let dry_run = match self.query.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "meta.k8s.io",
                    "CreateOptions",
                    "",
                    vec![super::status::Cause::not_supported("dryRun", other, &["All"])],
                ))
            }
        };
        let field_manager = self.field_manager();
        if field_manager.len() > 128 {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "CreateOptions",
                "",
                vec![super::status::Cause::invalid(
                    "fieldManager",
                    &field_manager,
                    "must be no more than 128 characters",
                )],
            ));
        }
        Ok(WriteOpts { field_manager, dry_run, force: matches!(self.query.get("force"), Some("true") | Some("1")) })
    }

    /// Decodes a POST/PUT body: JSON (or YAML that is JSON), or protobuf for
    /// the kinds kubectl's generators send (see [`super::protobuf`]).
    fn json_body(&self) -> Result<Value, ApiError> {
        let ct = self.content_type();
        if ct == "application/vnd.kubernetes.protobuf" {
            return super::protobuf::decode(&self.body).map_err(|e| match e {
                super::protobuf::DecodeError::Malformed(m) => ApiError::bad_request(m),
                // What the emulator does not decode: it says what it takes.
                super::protobuf::DecodeError::Unsupported(what) => ApiError::unsupported_media_type(
                    &format!("{ct} ({what}: the emulator decodes protobuf only for v1 Namespace, Secret, ConfigMap and ServiceAccount)"),
                    &["application/json", "application/yaml"],
                ),
            });
        }
        if ct != "application/json" && ct != "application/yaml" {
            return Err(ApiError::unsupported_media_type(
                &ct,
                &["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"],
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::bad_request(format!(
                "couldn't get version/kind; json parse error: {}",
                go_json_syntax_error(&self.body, &e)
            ))
        })
    }
}

async fn route(req: &Req, segs: &[&str]) -> Result<Response, ApiError> {
    let get_only = |r: Response| -> Result<Response, ApiError> {
        if req.method == Method::GET {
            Ok(r)
        } else {
            Err(ApiError::method_not_allowed())
        }
    };
    match segs {
        ["api"] => get_only(discovery_api(req)),
        ["apis"] => get_only(json_response(StatusCode::OK, &api_group_list())),
        ["apis", "events.k8s.io"] => get_only(json_response(StatusCode::OK, &events_group())),
        ["api", "v1"] => get_only(json_response(StatusCode::OK, &resource_list("v1", CORE))),
        ["apis", "events.k8s.io", "v1"] => {
            get_only(json_response(StatusCode::OK, &resource_list("events.k8s.io/v1", EVENTS_GROUP)))
        }
        ["version"] => get_only(json_response(StatusCode::OK, &version())),
        ["healthz"] | ["livez"] | ["readyz"] => get_only(
            Response::builder()
                .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Body::from("ok"))
                .expect("valid"),
        ),
        ["api", "v1", rest @ ..] => resource_route(req, CORE, rest).await,
        ["apis", "events.k8s.io", "v1", rest @ ..] => resource_route(req, EVENTS_GROUP, rest).await,
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
        ["namespaces", name] if group.iter().any(|r| r.plural == "namespaces") => {
            item(req, &resources::NAMESPACES, "", name)
        }
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
            let obj = req.json_body()?;
            let opts = req.write_opts()?;
            let created = req.store().create(res, ns, obj, &opts)?;
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
            let obj = present(res, obj).into_owned();
            drop(store);
            Ok(json_response(StatusCode::OK, &req.view.object(res, obj)?))
        }
        Method::PUT => {
            let obj = req.json_body()?;
            let opts = req.write_opts()?;
            let updated = req.store().replace(res, ns, name, obj, &opts)?;
            Ok(json_response(StatusCode::OK, &req.view.object(res, updated)?))
        }
        Method::PATCH => patch(req, res, ns, name),
        Method::DELETE => {
            let opts: Value = if req.body.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&req.body).map_err(|e| {
                    ApiError::bad_request(format!(
                        "couldn't get version/kind; json parse error: {}",
                        go_json_syntax_error(&req.body, &e)
                    ))
                })?
            };
            let dry_run = req.query.get("dryRun") == Some("All")
                || opts.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All"));
            let uid = opts.pointer("/preconditions/uid").and_then(Value::as_str);
            let rv = opts.pointer("/preconditions/resourceVersion").and_then(Value::as_str);
            let deleted = req.store().delete(res, ns, name, uid, rv, dry_run)?;
            if res.plural == "namespaces" {
                // Namespaces are finalized asynchronously: DELETE answers with
                // the object in its Terminating phase.
                return Ok(json_response(StatusCode::OK, &req.view.object(res, deleted)?));
            }
            let uid = deleted.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
            Ok(json_response(StatusCode::OK, &success_status(res, name, uid)))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn patch(req: &Req, res: &'static Resource, ns: &str, name: &str) -> Result<Response, ApiError> {
    let kind = match req.content_type().as_str() {
        "application/json-patch+json" => PatchKind::Json,
        "application/merge-patch+json" => PatchKind::Merge,
        "application/strategic-merge-patch+json" => PatchKind::Strategic,
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchKind::Apply,
        other => {
            return Err(ApiError::unsupported_media_type(
                other,
                &[
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                    "application/strategic-merge-patch+json",
                ],
            ))
        }
    };
    let mut opts = req.write_opts()?;
    let force = req.query.get("force");
    let mut causes = Vec::new();
    if kind == PatchKind::Apply {
        if req.query.get("fieldManager").unwrap_or("").is_empty() {
            causes.push(super::status::Cause::required("fieldManager", "is required for apply patch"));
        }
    } else if force.is_some() {
        causes.push(super::status::Cause::forbidden("force", "may not be specified for non-apply patch"));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("meta.k8s.io", "PatchOptions", "", causes));
    }
    if kind == PatchKind::Apply {
        opts.field_manager = req.query.get("fieldManager").unwrap_or("").to_string();
    }
    let body: Value = serde_json::from_slice(&req.body).map_err(|e| {
        if kind == PatchKind::Apply {
            ApiError::bad_request(format!("error decoding YAML: the test kit accepts JSON apply bodies only: {e}"))
        } else {
            ApiError::bad_request(format!("error decoding patch: {}", go_json_syntax_error(&req.body, &e)))
        }
    })?;
    if kind != PatchKind::Json && !body.is_object() {
        return Err(ApiError::bad_request("json: cannot unmarshal into Go value of type map[string]interface {}"));
    }
    let (obj, created) = req.store().patch(res, ns, name, kind, &body, &opts)?;
    let code = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(json_response(code, &req.view.object(res, obj)?))
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
        let obj = present(self.res, obj);
        self.labels.matches_object(&obj) && self.fields.matches(&obj)
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

/// An object as `res` shows it: stored events become core/v1 ones under `/api/v1`.
fn present<'o>(res: &Resource, obj: &'o Value) -> Cow<'o, Value> {
    if res.read_only && res.plural == "events" {
        Cow::Owned(super::core_events::to_core(obj))
    } else {
        Cow::Borrowed(obj)
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

fn list(req: &Req, filter: Filter) -> Result<Response, ApiError> {
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
        .map(|o| present(filter.res, o).into_owned())
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
fn object_line(view: View, res: &Resource, kind: &str, obj: &Value) -> Option<Bytes> {
    view.event_object(&present(res, obj)).map(|o| event_line(kind, &o))
}

fn bookmark(view: View, res: &Resource, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let (kind, api_version) = view.bookmark_type(res);
    event_line("BOOKMARK", &json!({"kind": kind, "apiVersion": api_version, "metadata": meta}))
}

struct WatchState {
    shared: Arc<Shared>,
    rx: tokio::sync::watch::Receiver<u64>,
    filter: Filter,
    cursor: u64,
    pending: VecDeque<Bytes>,
    deadline: tokio::time::Instant,
    bookmarks: bool,
    view: View,
    done: bool,
}

/// WATCH: a chunked stream of newline-delimited events, from the requested
/// resourceVersion (or the current state as synthetic ADDED events when none
/// or "0" is given), until `timeoutSeconds`.
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
            match object_line(req.view, filter.res, "ADDED", o) {
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
        let rv: u64 = rv_param.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid resource version: {}", super::status::go_quote(rv_param)))
        })?;
        if rv < store.compacted() {
            // The apiserver answers 200 and then an ERROR event carrying 410.
            pending.push_back(event_line("ERROR", &ApiError::expired(rv, store.compacted() + 1).to_json()));
        }
        rv
    };
    let expired = rv_param.parse::<u64>().is_ok_and(|rv| rv < store.compacted()) && !send_initial;
    drop(store);
    let state = WatchState {
        shared: req.shared.clone(),
        rx,
        filter,
        cursor,
        pending,
        deadline: tokio::time::Instant::now() + timeout,
        bookmarks,
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
                        match object_line(st.view, st.filter.res, kind.as_str(), &obj) {
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
            if st.done || !st.pending.is_empty() {
                continue;
            }
            tokio::select! {
                changed = st.rx.changed() => {
                    if changed.is_err() {
                        st.done = true;
                    }
                }
                _ = tokio::time::sleep_until(st.deadline) => {
                    if st.bookmarks {
                        st.pending.push_back(bookmark(st.view, st.filter.res, st.cursor, false));
                    }
                    st.done = true;
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

fn discovery_api(req: &Req) -> Response {
    let host = req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1").to_string();
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }),
    )
}

fn events_group() -> Value {
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": "events.k8s.io",
        "versions": [{"groupVersion": "events.k8s.io/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "events.k8s.io/v1", "version": "v1"},
    })
}

fn api_group_list() -> Value {
    let mut g = events_group();
    let m = g.as_object_mut().expect("object");
    m.remove("kind");
    m.remove("apiVersion");
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [g]})
}

fn resource_list(group_version: &str, list: &[&Resource]) -> Value {
    let resources: Vec<Value> = list
        .iter()
        .map(|r| {
            let mut v = json!({
                "name": r.plural,
                "singularName": r.singular,
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": if r.read_only {
                    json!(["get", "list", "watch"])
                } else {
                    json!(["create", "delete", "get", "list", "patch", "update", "watch"])
                },
            });
            if !r.short_names.is_empty() {
                v["shortNames"] = json!(r.short_names);
            }
            v
        })
        .collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0",
        "gitCommit": "60a317eadfcb839692a68eab88b2096f4d708f4f",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T13:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}
