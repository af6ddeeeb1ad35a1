//! The Kubernetes emulator over plain HTTP: status codes and `Status` bodies
//! exactly as a client sees them on the wire.

mod common;
mod requests;

use std::time::{Duration, Instant};

use common::*;
use regcred_testkit::KubeApi;
use requests::dockerconfig_secret;
use serde_json::{json, Value};

fn secrets_url(k: &KubeApi, ns: &str) -> String {
    format!("{}/api/v1/namespaces/{ns}/secrets", k.url())
}

fn assert_status(r: &Resp, code: u16, reason: &str) -> Value {
    assert_eq!(r.status, code, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let s = r.json();
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["apiVersion"], "v1");
    assert_eq!(s["status"], "Failure");
    assert_eq!(s["reason"], reason);
    assert_eq!(s["code"], code);
    s
}

/// The requests whose answers kube-apiserver gives (`requests/`, checked
/// against a real one by `kube_conformance.rs`), answered alike.
#[tokio::test]
async fn answers_as_kube_apiserver_does() {
    let k = KubeApi::start().await;
    let mut emulator = requests::Backend::emulator(&k).await;
    let mut report = Vec::new();
    for (i, step) in requests::steps().iter().enumerate() {
        let (answer, differences) = emulator.run(step).await;
        if !differences.is_empty() {
            report.push(format!(
                "step {i}, {}: {}\n  answered {}",
                step.name(),
                differences.join("; "),
                requests::short(&answer.body)
            ));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[tokio::test]
async fn create_get_patch_delete_and_conflicts() {
    let k = KubeApi::start().await;
    let url = secrets_url(&k, "default");
    let r = json_req("POST", &url, &dockerconfig_secret("gcr-pull", r#"{"auths":{}}"#)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    assert_eq!(created["kind"], "Secret");
    assert_eq!(created["apiVersion"], "v1");
    assert_eq!(created["metadata"]["namespace"], "default");
    let rv1: u64 = created["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(!created["metadata"]["uid"].as_str().unwrap().is_empty());
    assert!(created["metadata"]["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(k.secret("default", "gcr-pull").unwrap(), created);

    // AlreadyExists
    let r = json_req("POST", &url, &dockerconfig_secret("gcr-pull", "{}")).await;
    let s = assert_status(&r, 409, "AlreadyExists");
    assert_eq!(s["message"], "secrets \"gcr-pull\" already exists");
    assert_eq!(s["details"], json!({"name": "gcr-pull", "kind": "secrets"}));

    // GET
    let r = get(&format!("{url}/gcr-pull")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), created);

    // A merge patch carrying the current resourceVersion (what regcred sends).
    let item = format!("{url}/gcr-pull");
    let doc = b64(r#"{"auths":{"gcr.io":{}}}"#);
    let conditional = json!({"metadata": {"resourceVersion": rv1.to_string()}, "data": {".dockerconfigjson": doc}});
    let r = patch(&item, "application/merge-patch+json", &conditional).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let updated = r.json();
    let rv2: u64 = updated["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rv2 > rv1);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(k.secret("default", "gcr-pull").unwrap(), updated);

    // The same patch again carries a stale one.
    let s = assert_status(&patch(&item, "application/merge-patch+json", &conditional).await, 409, "Conflict");
    assert_eq!(
        s["message"],
        "Operation cannot be fulfilled on secrets \"gcr-pull\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(s["details"], json!({"name": "gcr-pull", "kind": "secrets"}));

    // Without a resourceVersion the patch is unconditional; RFC 7386 null removes.
    let r = patch(&item, "application/merge-patch+json", &json!({"metadata": {"labels": {"x": "y"}}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = patch(&item, "application/merge-patch+json", &json!({"metadata": {"labels": {"x": null}}})).await;
    let updated = r.json();
    assert!(updated["metadata"].get("labels").is_none(), "{updated}");
    assert_eq!(updated["data"][".dockerconfigjson"], doc);

    // A no-op patch writes nothing.
    let r = patch(&item, "application/merge-patch+json", &json!({"metadata": {"labels": null}})).await;
    assert_eq!(r.json()["metadata"]["resourceVersion"], updated["metadata"]["resourceVersion"]);

    // Patch of a missing object; server-set fields cannot be patched.
    let s = assert_status(
        &patch(&format!("{url}/nope"), "application/merge-patch+json", &json!({})).await,
        404,
        "NotFound",
    );
    assert_eq!(s["message"], "secrets \"nope\" not found");
    let r = patch(&item, "application/merge-patch+json", &json!({"metadata": {"uid": "forged"}})).await;
    let s = assert_status(&r, 422, "Invalid");
    assert_eq!(
        s["message"],
        "Secret \"gcr-pull\" is invalid: metadata.uid: Invalid value: \"forged\": field is immutable"
    );
    let r = patch(
        &item,
        "application/merge-patch+json",
        &json!({"metadata": {"uid": null, "creationTimestamp": "2001-01-01T00:00:00Z"}}),
    )
    .await;
    assert_eq!(r.json()["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(r.json()["metadata"]["creationTimestamp"], created["metadata"]["creationTimestamp"]);
    assert_status(
        &patch(&item, "application/merge-patch+json", &json!({"metadata": {"name": "other"}})).await,
        400,
        "BadRequest",
    );

    // What the emulator does not take is refused as the apiserver refuses an
    // unsupported type, naming what it accepts.
    for other in
        ["application/json-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"]
    {
        let s = assert_status(&patch(&item, other, &json!({})).await, 415, "UnsupportedMediaType");
        assert_eq!(
            s["message"],
            "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json"
        );
    }
    // A type kube-apiserver does not know: its own answer.
    let s = assert_status(&patch(&item, "application/json", &json!({})).await, 415, "UnsupportedMediaType");
    assert_eq!(s["message"], "415: Unsupported Media Type");
    let pb = [("content-type", "application/vnd.kubernetes.protobuf")];
    assert_status(&send("POST", &url, &pb, Some("k8s\0")).await.unwrap(), 415, "UnsupportedMediaType");
    assert_status(&json_req("PUT", &item, &updated).await, 405, "MethodNotAllowed");

    // DELETE returns a Success Status, then 404.
    let r = send("DELETE", &format!("{url}/gcr-pull"), &[], None).await.unwrap();
    assert_eq!(r.status, 200);
    let s = r.json();
    assert_eq!(s["status"], "Success");
    assert_eq!(s["details"]["uid"], created["metadata"]["uid"]);
    let r = send("DELETE", &format!("{url}/gcr-pull"), &[], None).await.unwrap();
    assert_status(&r, 404, "NotFound");
    assert_status(&get(&format!("{url}/gcr-pull")).await, 404, "NotFound");
}

#[tokio::test]
async fn namespace_rules_on_create() {
    let k = KubeApi::start().await;
    let r = json_req("POST", &secrets_url(&k, "missing"), &dockerconfig_secret("a", "{}")).await;
    let s = assert_status(&r, 404, "NotFound");
    assert_eq!(s["message"], "namespaces \"missing\" not found");
    let mut body = dockerconfig_secret("a", "{}");
    body["metadata"]["namespace"] = json!("kube-system");
    let r = json_req("POST", &secrets_url(&k, "default"), &body).await;
    let s = assert_status(&r, 400, "BadRequest");
    assert_eq!(s["message"], "the namespace of the provided object does not match the namespace sent on the request");
}

/// A 422's message, in apimachinery's words: `Kind "name" is invalid: `
/// and the causes, bracketed when there are several; a docker config
/// Secret's contents never appear in it (regcred logs these messages).
#[tokio::test]
async fn validation_errors_name_the_fields_and_never_the_secret() {
    let k = KubeApi::start().await;
    let url = secrets_url(&k, "default");

    let r = json_req("POST", &url, &dockerconfig_secret("gcr-pull", "not json")).await;
    let s = assert_status(&r, 422, "Invalid");
    let message = s["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "Secret \"gcr-pull\" is invalid: data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": "
        ),
        "{s}"
    );
    assert_eq!(s["details"]["kind"], "Secret");
    assert_eq!(s["details"]["name"], "gcr-pull");
    assert!(!r.body.contains(&b64("not json")) && !r.body.contains("not json"), "{}", r.body);

    let mut body = dockerconfig_secret("Bad_Name", "{}");
    body["data"]["a/b"] = json!(b64("x"));
    let s = assert_status(&json_req("POST", &url, &body).await, 422, "Invalid");
    assert!(s["message"].as_str().unwrap().starts_with(
        "Secret \"Bad_Name\" is invalid: [metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
    ));

    // A patch that breaks a rule writes nothing.
    assert_eq!(json_req("POST", &url, &dockerconfig_secret("s", "{}")).await.status, 201);
    let r =
        patch(&format!("{url}/s"), "application/merge-patch+json", &json!({"data": {".dockerconfigjson": b64("[]")}}))
            .await;
    let s = assert_status(&r, 422, "Invalid");
    assert!(s["message"].as_str().unwrap().contains("<secret contents redacted>"), "{s}");
    assert_eq!(k.secret("default", "s").unwrap()["data"][".dockerconfigjson"], b64("{}"));
}

#[tokio::test]
async fn label_selectors_on_namespaces() {
    let k = KubeApi::start().await;
    k.create_namespace("team-a", &[("regcred", "enabled"), ("tier", "web")]);
    k.create_namespace("team-b", &[("regcred", "disabled")]);
    k.create_namespace("team-c", &[]);
    let names = |v: Value| -> Vec<String> {
        v["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect()
    };
    let list = |sel: &str| {
        let url = format!("{}/api/v1/namespaces?labelSelector={}", k.url(), urlenc(sel));
        async move { get(&url).await }
    };
    let r = list("regcred=enabled").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["kind"], "NamespaceList");
    assert_eq!(v["apiVersion"], "v1");
    assert!(v["items"][0].get("kind").is_none(), "list items carry no kind");
    assert_eq!(names(v), ["team-a"]);
    assert_eq!(names(list("regcred").await.json()), ["team-a", "team-b"]);
    assert_eq!(names(list("regcred in (enabled,disabled),tier!=db").await.json()), ["team-a", "team-b"]);
    assert_eq!(names(list("regcred notin (enabled),kubernetes.io/metadata.name!=default,!foo").await.json()).len(), 5);
    assert_eq!(names(list("kubernetes.io/metadata.name=team-c").await.json()), ["team-c"]);
    assert_status(&list("a=b=c").await, 400, "BadRequest");

    // Pagination
    let r = get(&format!("{}/api/v1/namespaces?limit=2", k.url())).await.json();
    assert_eq!(r["items"].as_array().unwrap().len(), 2);
    let cont = r["metadata"]["continue"].as_str().unwrap();
    let r2 = get(&format!("{}/api/v1/namespaces?limit=10&continue={cont}", k.url())).await.json();
    assert_eq!(r2["items"].as_array().unwrap().len(), 5);
    assert!(r2["metadata"].get("continue").is_none());
}

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn watch_streams_events_from_a_resource_version() {
    let k = KubeApi::start().await;
    k.create_namespace("apps", &[("regcred", "enabled")]);
    let list = get(&format!("{}/api/v1/namespaces/apps/secrets", k.url())).await.json();
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let (status, mut body) = open_stream(&format!(
        "{}/api/v1/namespaces/apps/secrets?watch=true&resourceVersion={rv}&timeoutSeconds=5",
        k.url()
    ))
    .await;
    assert_eq!(status, 200);
    let mut buf = String::new();

    k.put_object("apps", "secrets", json!({"metadata": {"name": "one"}, "stringData": {"a": "1"}}));
    k.put_object("apps", "secrets", json!({"metadata": {"name": "one"}, "stringData": {"a": "2"}}));
    k.put_object("default", "secrets", json!({"metadata": {"name": "elsewhere"}}));
    k.delete_object("apps", "secrets", "one");
    let evs = read_events(&mut body, &mut buf, 3, Duration::from_secs(5)).await;
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"]);
    assert_eq!(evs[0]["object"]["kind"], "Secret");
    assert_eq!(evs[1]["object"]["data"]["a"], b64("2"));
    let rvs: Vec<u64> =
        evs.iter().map(|e| e["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()).collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]));

    // Resuming from the first event replays the rest.
    let (_, mut body2) = open_stream(&format!(
        "{}/api/v1/namespaces/apps/secrets?watch=1&resourceVersion={}&timeoutSeconds=1",
        k.url(),
        rvs[0]
    ))
    .await;
    let mut buf2 = String::new();
    let replay = read_events(&mut body2, &mut buf2, 10, Duration::from_secs(3)).await;
    assert_eq!(replay.len(), 2, "{replay:?}");

    // A compacted resourceVersion yields an ERROR event with 410 Expired.
    k.compact();
    let (status, mut body3) =
        open_stream(&format!("{}/api/v1/namespaces/apps/secrets?watch=1&resourceVersion={}", k.url(), rvs[0])).await;
    assert_eq!(status, 200);
    let mut buf3 = String::new();
    let ev = read_events(&mut body3, &mut buf3, 1, Duration::from_secs(3)).await;
    assert_eq!(ev[0]["type"], "ERROR");
    assert_eq!(ev[0]["object"]["code"], 410);
    assert_eq!(ev[0]["object"]["reason"], "Expired");
}

#[tokio::test]
async fn watch_without_resource_version_and_label_transitions() {
    let k = KubeApi::start().await;
    let (_, mut body) = open_stream(&format!(
        "{}/api/v1/namespaces?watch=true&labelSelector=regcred%3Denabled&timeoutSeconds=5",
        k.url()
    ))
    .await;
    let mut buf = String::new();
    k.create_namespace("x", &[]);
    k.label_namespace("x", &[("regcred", "enabled")]);
    k.label_namespace("x", &[("regcred", "")]);
    k.label_namespace("x", &[("regcred", "enabled")]);
    k.delete_namespace("x");
    let evs = read_events(&mut body, &mut buf, 5, Duration::from_secs(5)).await;
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    // entering the selection is ADDED, leaving it DELETED; deletion goes through Terminating.
    assert_eq!(types, ["ADDED", "DELETED", "ADDED", "MODIFIED", "DELETED"]);
    assert_eq!(evs[3]["object"]["status"]["phase"], "Terminating");
}

/// Watch bookmarks come when kube-apiserver v1.34's watch cache sends them
/// (`cacheWatcher.nextBookmarkTime`, and what a real server did): about once
/// a minute and 2 s before the watch's timeout, only if something was written
/// since the watch began, never as soon as the watch opens. An early bookmark
/// would keep a watcher's resourceVersion fresh and hide its 410 path.
#[tokio::test]
async fn watch_bookmarks_come_when_the_api_server_sends_them() {
    let k = KubeApi::start().await;
    let namespaces = format!("{}/api/v1/namespaces", k.url());
    let watch = |timeout: u64| {
        format!(
            "{namespaces}?watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={timeout}",
            k.resource_version()
        )
    };
    let started = Instant::now();
    let (_, mut busy) = open_stream(&watch(4)).await;
    let (_, mut short) = open_stream(&watch(2)).await;
    let (_, mut long) = open_stream(&watch(30)).await;
    k.create_namespace("x", &[]);
    // Opened after the last write: nothing to bookmark.
    let (_, mut idle) = open_stream(&watch(3)).await;

    let (mut buf, mut buf_short, mut buf_long, mut buf_idle) =
        (String::new(), String::new(), String::new(), String::new());
    let evs = read_events(&mut busy, &mut buf, 1, Duration::from_secs(2)).await;
    assert_eq!(evs[0]["type"], "ADDED");
    let evs = read_events(&mut busy, &mut buf, 1, Duration::from_secs(5)).await;
    let at = started.elapsed();
    let bookmark = json!({"kind": "Namespace", "apiVersion": "v1", "spec": {}, "status": {},
                          "metadata": {"resourceVersion": k.resource_version().to_string()}});
    assert_eq!(evs, [json!({"type": "BOOKMARK", "object": bookmark})]);
    assert!(at > Duration::from_millis(1500) && at < Duration::from_millis(3500), "2 s before the timeout, not {at:?}");
    assert!(read_events(&mut busy, &mut buf, 1, Duration::from_secs(5)).await.is_empty(), "then only the end");

    // A watch of 2 s has no time left for one; a long watch none yet; an idle one none.
    let evs = read_events(&mut short, &mut buf_short, 2, Duration::from_secs(5)).await;
    assert_eq!(evs.iter().map(|e| e["type"].as_str().unwrap()).collect::<Vec<_>>(), ["ADDED"]);
    let evs = read_events(&mut idle, &mut buf_idle, 1, Duration::from_secs(5)).await;
    assert!(evs.is_empty(), "{evs:?}");
    let evs = read_events(&mut long, &mut buf_long, 2, Duration::from_millis(200)).await;
    assert_eq!(evs.iter().map(|e| e["type"].as_str().unwrap()).collect::<Vec<_>>(), ["ADDED"]);
}

/// The test-only knob brings periodic bookmarks sooner; they still wait a period.
#[tokio::test]
async fn bookmark_frequency_can_be_shortened_for_tests() {
    let k = KubeApi::start().await;
    k.set_bookmark_frequency(Duration::from_millis(300));
    let url = format!(
        "{}/api/v1/namespaces?watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds=30",
        k.url(),
        k.resource_version()
    );
    let started = Instant::now();
    let (_, mut body) = open_stream(&url).await;
    k.create_namespace("x", &[]);
    let mut buf = String::new();
    let evs = read_events(&mut body, &mut buf, 3, Duration::from_secs(5)).await;
    let types: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "BOOKMARK", "BOOKMARK"]);
    assert!(started.elapsed() >= Duration::from_millis(600), "{:?}", started.elapsed());
}

const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

async fn get_as(url: &str, accept: &str) -> Resp {
    send("GET", url, &[("accept", accept)], None).await.expect("GET")
}

/// What kube-rs' `list_metadata`, `watch_metadata` and `metadata_watcher` ask
/// for, answered as kube-apiserver answers it (checked against v1.34).
#[tokio::test]
async fn metadata_only_views() {
    let k = KubeApi::start().await;
    k.create_namespace("apps", &[("team", "ci")]);
    let namespaces = format!("{}/api/v1/namespaces", k.url());
    let partial = |ns: &Value| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": ns["metadata"]});

    let r = get_as(&format!("{namespaces}?labelSelector=team%3Dci"), METADATA_LIST).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json();
    assert_eq!(
        (list["kind"].as_str(), list["apiVersion"].as_str()),
        (Some("PartialObjectMetadataList"), Some("meta.k8s.io/v1"))
    );
    assert_eq!(list["metadata"]["resourceVersion"], k.resource_version().to_string());
    assert_eq!(list["items"], json!([partial(&k.namespace("apps").unwrap())]), "items carry their kind");
    let r = get_as(&format!("{namespaces}/apps"), METADATA).await;
    assert_eq!(r.json(), partial(&k.namespace("apps").unwrap()));

    // The single form of a list, or the list form of an object: 406.
    let s = assert_status(&get_as(&namespaces, METADATA).await, 406, "NotAcceptable");
    assert_eq!(
        s["message"],
        "you requested PartialObjectMetadata, but the requested object is a list (*core.NamespaceList)"
    );
    let s = assert_status(&get_as(&format!("{namespaces}/apps"), METADATA_LIST).await, 406, "NotAcceptable");
    assert_eq!(
        s["message"],
        "you requested PartialObjectMetadataList, but the requested object is not a list (*core.Namespace)"
    );
    // What the emulator cannot serve is refused before anything is written.
    let table = "application/json;as=Table;g=meta.k8s.io;v=v1";
    let headers = [("content-type", "application/merge-patch+json"), ("accept", table)];
    let patch = r#"{"metadata":{"labels":{"team":"cd"}}}"#;
    let r = send("PATCH", &format!("{namespaces}/apps"), &headers, Some(patch)).await.unwrap();
    let s = assert_status(&r, 406, "NotAcceptable");
    assert_eq!(s["message"], "only the following media types are accepted: application/json");
    assert_eq!(k.namespace("apps").unwrap()["metadata"]["labels"]["team"], "ci");

    // Watch events and bookmarks carry metadata only. (The bookmark is the
    // one sent 2 s before the timeout: a real server sends none to a watch
    // of 2 s or less.)
    let rv = k.resource_version();
    let url = format!("{namespaces}?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=3");
    let (status, mut body) = open_stream_with(&url, &[("accept", METADATA)]).await;
    assert_eq!(status, 200);
    k.label_namespace("apps", &[("team", "cd")]);
    let mut buf = String::new();
    let evs = read_events(&mut body, &mut buf, 2, Duration::from_secs(5)).await;
    assert_eq!(evs[0], json!({"type": "MODIFIED", "object": partial(&k.namespace("apps").unwrap())}));
    let bookmark = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                          "metadata": {"resourceVersion": k.resource_version().to_string()}});
    assert_eq!(evs[1], json!({"type": "BOOKMARK", "object": bookmark}));

    // A watch asking for lists cannot encode its first event: the stream ends empty.
    let started = std::time::Instant::now();
    let (status, mut body) =
        open_stream_with(&format!("{namespaces}?watch=true&timeoutSeconds=30"), &[("accept", METADATA_LIST)]).await;
    assert_eq!(status, 200);
    assert!(read_events(&mut body, &mut buf, 1, Duration::from_secs(10)).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(5), "the stream ended instead of running to its timeout");
}

#[tokio::test]
async fn namespace_deletion_deletes_contents() {
    let k = KubeApi::start().await;
    k.create_namespace("gone", &[]);
    let r = json_req("POST", &secrets_url(&k, "gone"), &dockerconfig_secret("s", "{}")).await;
    assert_eq!(r.status, 201);
    // Namespaces are written by the test's helpers only.
    let r = send("DELETE", &format!("{}/api/v1/namespaces/gone", k.url()), &[], None).await.unwrap();
    assert_status(&r, 405, "MethodNotAllowed");
    let r = json_req("POST", &format!("{}/api/v1/namespaces", k.url()), &json!({"metadata": {"name": "x"}})).await;
    assert_status(&r, 405, "MethodNotAllowed");
    k.delete_namespace("gone");
    assert!(k.secret("gone", "s").is_none());
    assert!(k.namespace("gone").is_none());
    assert_status(&get(&format!("{}/api/v1/namespaces/gone/secrets/s", k.url())).await, 404, "NotFound");
    let r = json_req("POST", &secrets_url(&k, "gone"), &dockerconfig_secret("s", "{}")).await;
    assert_status(&r, 404, "NotFound");
}

/// An Event regcred publishes is stored as created, in UTC, and read back
/// with [`KubeApi::events`]; Events are only created (a PATCH is not
/// emulated: 405).
#[tokio::test]
async fn events_are_stored_as_created() {
    let k = KubeApi::start().await;
    let url = format!("{}/apis/events.k8s.io/v1/namespaces/default/events", k.url());
    let mut ev = requests::event("gcr-pull.1", "default");
    ev["eventTime"] = json!("2025-01-01T01:00:00.000000+01:00");
    let r = json_req("POST", &url, &ev).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    assert_eq!(created["eventTime"], "2025-01-01T00:00:00.000000Z");
    assert_eq!(k.events("default"), [created]);
    let r = patch(&format!("{url}/gcr-pull.1"), "application/merge-patch+json", &json!({"note": "x"})).await;
    assert_status(&r, 405, "MethodNotAllowed");
    let r = get(&url).await.json();
    assert_eq!((r["kind"].as_str(), r["apiVersion"].as_str()), (Some("EventList"), Some("events.k8s.io/v1")));
}

/// A DELETE whose preconditions do not hold, as `rest.BeforeDelete` words
/// it: the object's kind (not its resource), UID checked first.
#[tokio::test]
async fn delete_preconditions_conflict_in_the_api_servers_words() {
    let k = KubeApi::start().await;
    let url = secrets_url(&k, "default");
    let created = json_req("POST", &url, &dockerconfig_secret("x", "{}")).await.json();
    let (uid, rv) =
        (created["metadata"]["uid"].as_str().unwrap(), created["metadata"]["resourceVersion"].as_str().unwrap());
    let item = format!("{url}/x");

    let r = json_req("DELETE", &item, &json!({"preconditions": {"resourceVersion": "1"}})).await;
    let s = assert_status(&r, 409, "Conflict");
    assert_eq!(
        s["message"],
        format!("Operation cannot be fulfilled on Secret \"x\": the ResourceVersion in the precondition (1) does not match the ResourceVersion in record ({rv}). The object might have been modified")
    );
    assert_eq!(s["details"], json!({"name": "x", "kind": "Secret"}));

    let r = json_req("DELETE", &item, &json!({"preconditions": {"uid": "abc", "resourceVersion": "1"}})).await;
    let s = assert_status(&r, 409, "Conflict");
    assert_eq!(
        s["message"],
        format!("Operation cannot be fulfilled on Secret \"x\": the UID in the precondition (abc) does not match the UID in record ({uid}). The object might have been deleted and then recreated")
    );
    assert!(k.secret("default", "x").is_some());

    // Other kinds, including events.k8s.io Events, are named the same way.
    let sa_url = format!("{}/api/v1/namespaces/default/serviceaccounts", k.url());
    assert_eq!(json_req("POST", &sa_url, &json!({"metadata": {"name": "sa"}})).await.status, 201);
    let r = json_req("DELETE", &format!("{sa_url}/sa"), &json!({"preconditions": {"uid": "u"}})).await;
    let s = assert_status(&r, 409, "Conflict");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .starts_with("Operation cannot be fulfilled on ServiceAccount \"sa\": the UID in the precondition (u)"),
        "{s}"
    );
    assert_eq!(s["details"], json!({"name": "sa", "kind": "ServiceAccount"}));
    let ev_url = format!("{}/apis/events.k8s.io/v1/namespaces/default/events", k.url());
    let ev = json!({"metadata": {"name": "e0"}, "eventTime": "2025-01-01T00:00:00.000000Z",
                    "reportingController": "a.b/c", "reportingInstance": "i", "action": "A", "reason": "R",
                    "type": "Normal", "regarding": {"kind": "Secret", "namespace": "default", "name": "x"}});
    assert_eq!(json_req("POST", &ev_url, &ev).await.status, 201);
    let r = json_req("DELETE", &format!("{ev_url}/e0"), &json!({"preconditions": {"resourceVersion": "1"}})).await;
    let s = assert_status(&r, 409, "Conflict");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .starts_with("Operation cannot be fulfilled on Event \"e0\": the ResourceVersion"),
        "{s}"
    );
    assert_eq!(s["details"], json!({"name": "e0", "kind": "Event"}));

    // Matching preconditions delete.
    let r = json_req("DELETE", &item, &json!({"preconditions": {"uid": uid, "resourceVersion": rv}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A merge patch whose result does not decode is an invalid patch (422),
/// not a bad request (400) as a create is: no kind or name, one cause on
/// `patch` whose value is the patched document; nothing is written.
#[tokio::test]
async fn a_patch_that_does_not_decode_is_an_invalid_patch() {
    let k = KubeApi::start().await;
    let url = secrets_url(&k, "default");
    let r = json_req("POST", &url, &json!({"metadata": {"name": "x"}, "stringData": {"a": "b"}})).await;
    assert_eq!(r.status, 201);
    let r = patch(&format!("{url}/x"), "application/merge-patch+json", &json!({"data": {"a": "abc!"}})).await;
    let s = assert_status(&r, 422, "Invalid");
    assert_eq!(s["details"].as_object().unwrap().keys().collect::<Vec<_>>(), ["causes"], "no name or kind: {s}");
    let cause = &s["details"]["causes"][0];
    assert_eq!((cause["reason"].as_str(), cause["field"].as_str()), (Some("FieldValueInvalid"), Some("patch")));
    let message = cause["message"].as_str().unwrap();
    assert_eq!(s["message"], format!(" \"\" is invalid: patch: {message}"));
    // `Invalid value: "<the patched document>": <why it does not decode>`
    let quoted = message.strip_prefix("Invalid value: ").unwrap();
    let end = quoted.find("\": ").unwrap() + 1;
    let patched: Value = serde_json::from_str(&serde_json::from_str::<String>(&quoted[..end]).unwrap()).unwrap();
    assert_eq!((patched["kind"].as_str(), patched["metadata"]["name"].as_str()), (Some("Secret"), Some("x")));
    assert_eq!(patched["data"]["a"], "abc!");
    assert_eq!(k.secret("default", "x").unwrap()["data"]["a"], b64("b"));
}

/// ServiceAccount references as the decoder and the strategy leave them
/// (`requests/` checks the answer against kube-apiserver's) are what is stored.
#[tokio::test]
async fn service_account_references_are_stored_as_returned() {
    let k = KubeApi::start().await;
    let url = format!("{}/api/v1/namespaces/default/serviceaccounts", k.url());
    assert_eq!(json_req("POST", &url, &json!({"metadata": {"name": "sa"}})).await.status, 201);
    let body = json!({"imagePullSecrets": [{"name": ""}, {"name": "a", "extra": 1}, null]});
    let r = patch(&format!("{url}/sa"), "application/merge-patch+json", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sa = r.json();
    assert_eq!(sa["imagePullSecrets"], json!([{}, {"name": "a"}, {}]));
    assert_eq!(k.object("default", "serviceaccounts", "sa").unwrap(), sa);
}

#[tokio::test]
async fn auth_and_unknown_paths() {
    let k = KubeApi::start_with_token("s3cret").await;
    let s = assert_status(&get(&format!("{}/api/v1/namespaces", k.url())).await, 401, "Unauthorized");
    assert_eq!(s["message"], "Unauthorized");
    let r = send("GET", &format!("{}/api/v1/namespaces", k.url()), &[("authorization", "Bearer s3cret")], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Discovery is not served: regcred's typed clients never ask for it.
    let r = send("GET", &format!("{}/api/v1", k.url()), &[("authorization", "Bearer s3cret")], None).await.unwrap();
    assert_status(&r, 404, "NotFound");
    let r =
        send("GET", &format!("{}/api/v1/pods", k.url()), &[("authorization", "Bearer s3cret")], None).await.unwrap();
    assert_status(&r, 404, "NotFound");
    let r =
        send("PUT", &format!("{}/api/v1/secrets", k.url()), &[("authorization", "Bearer s3cret")], None).await.unwrap();
    assert_status(&r, 405, "MethodNotAllowed");
    assert_eq!(k.requests().len(), 5);
    assert_eq!(k.requests()[0].status, 401);
    assert_eq!(k.requests()[1].path, "/api/v1/namespaces");
}
