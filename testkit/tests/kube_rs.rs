//! The Kubernetes emulator driven by kube-rs, the client regcred uses: every
//! response must deserialize into k8s-openapi types and every error must come
//! out as `kube::Error::Api` with the right code and reason.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Client, Config};
use regcred_testkit::KubeApi;
use serde_json::json;

async fn client(k: &KubeApi, ns: &str) -> Client {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    k.write_kubeconfig(&path, ns);
    let kc = Kubeconfig::read_from(&path).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap();
    assert_eq!(config.default_namespace, ns);
    Client::try_from(config).unwrap()
}

fn pull_secret(name: &str, doc: &[u8]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        type_: Some("kubernetes.io/dockerconfigjson".into()),
        data: Some([(".dockerconfigjson".to_string(), ByteString(doc.to_vec()))].into()),
        ..Default::default()
    }
}

fn api_err(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn secrets_crud_and_errors() {
    let k = KubeApi::start().await;
    let c = client(&k, "default").await;
    let api: Api<Secret> = Api::default_namespaced(c.clone());
    let pp = PostParams::default();

    let created = api.create(&pp, &pull_secret("gcr-pull", br#"{"auths":{}}"#)).await.unwrap();
    let rv = created.metadata.resource_version.clone().unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());

    let (code, reason, _) = api_err(api.create(&pp, &pull_secret("gcr-pull", b"{}")).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let got = api.get("gcr-pull").await.unwrap();
    assert_eq!(got.metadata.resource_version.as_deref(), Some(rv.as_str()));
    assert!(api.get_opt("missing").await.unwrap().is_none());
    let (code, reason, _) = api_err(api.get("missing").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));

    // regcred's write: a merge patch conditional on the resourceVersion it saw.
    let pp_merge = PatchParams::default();
    let doc = ByteString(br#"{"auths":{"gcr.io":{}}}"#.to_vec());
    let write = Patch::Merge(json!({"metadata": {"resourceVersion": rv}, "data": {".dockerconfigjson": doc}}));
    let patched = api.patch("gcr-pull", &pp_merge, &write).await.unwrap();
    assert_ne!(patched.metadata.resource_version, got.metadata.resource_version);
    assert_eq!(patched.data.unwrap()[".dockerconfigjson"], doc);
    let (code, reason, message) = api_err(api.patch("gcr-pull", &pp_merge, &write).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(message.contains("the object has been modified"));

    let (code, reason, message) = api_err(api.create(&pp, &pull_secret("bad", b"{oops")).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(message.contains("<secret contents redacted>"), "{message}");

    let opaque = Patch::Merge(json!({"type": "Opaque"}));
    let (code, reason, message) = api_err(api.patch("gcr-pull", &pp_merge, &opaque).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert_eq!(message, "Secret \"gcr-pull\" is invalid: type: Invalid value: \"Opaque\": field is immutable");

    let (code, reason, _) = api_err(api.replace("gcr-pull", &pp, &got).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (405, "MethodNotAllowed"), "PUT is not emulated");
    let apply = Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gcr-pull"}}));
    let (code, reason, _) = api_err(api.patch("gcr-pull", &PatchParams::apply("regcred"), &apply).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"), "server-side apply is not emulated");

    api.create(&pp, &pull_secret("other", b"{}")).await.unwrap();
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    let stale = DeleteParams::default()
        .preconditions(kube::api::Preconditions { resource_version: got.metadata.resource_version.clone(), uid: None });
    let (code, reason, _) = api_err(api.delete("gcr-pull", &stale).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let deleted = api.delete("other", &DeleteParams::default()).await.unwrap();
    assert!(deleted.is_right(), "secrets delete answers a Status");
    assert!(k.secret("default", "other").is_none());
}

#[tokio::test]
async fn namespaces_by_label_and_deletion() {
    let k = KubeApi::start().await;
    k.create_namespace("a", &[("regcred.dev/inject", "true")]);
    k.create_namespace("b", &[("regcred.dev/inject", "false")]);
    let c = client(&k, "default").await;
    let ns: Api<Namespace> = Api::all(c.clone());
    let picked = ns.list(&ListParams::default().labels("regcred.dev/inject=true")).await.unwrap();
    let names: Vec<_> = picked.items.iter().map(|n| n.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["a"]);

    let secrets: Api<Secret> = Api::namespaced(c.clone(), "a");
    secrets.create(&PostParams::default(), &pull_secret("s", b"{}")).await.unwrap();
    let all: Api<Secret> = Api::all(c.clone());
    assert_eq!(all.list(&ListParams::default()).await.unwrap().items.len(), 1);
    k.delete_namespace("a");
    assert!(secrets.get_opt("s").await.unwrap().is_none());
    let (code, _, _) = api_err(secrets.create(&PostParams::default(), &pull_secret("t", b"{}")).await.unwrap_err());
    assert_eq!(code, 404);
}

#[tokio::test]
async fn watcher_delivers_changes() {
    let k = KubeApi::start().await;
    let c = client(&k, "default").await;
    let api: Api<Secret> = Api::default_namespaced(c);
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    // The initial list completes.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await {
            Ok(Ok(Some(watcher::Event::InitDone))) => break,
            Ok(Ok(Some(_))) => {}
            other => panic!("watcher did not initialise: {other:?}"),
        }
    }
    k.put_object("default", "secrets", json!({"metadata": {"name": "seeded"}, "stringData": {"k": "v"}}));
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await.unwrap().unwrap().unwrap();
    match ev {
        watcher::Event::Apply(s) => assert_eq!(s.metadata.name.as_deref(), Some("seeded")),
        other => panic!("expected Apply, got {other:?}"),
    }
    k.delete_object("default", "secrets", "seeded");
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(ev, watcher::Event::Delete(_)), "{ev:?}");
}

#[tokio::test]
async fn bearer_token_and_events() {
    let k = KubeApi::start_with_token("t0ken").await;
    let c = client(&k, "default").await;
    let events: Api<Event> = Api::default_namespaced(c.clone());
    let ev: Event = serde_json::from_value(json!({
        "metadata": {"name": "gcr-pull.abc"},
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "reportingController": "regcred.dev/regcred",
        "reportingInstance": "pod-1",
        "action": "Refresh", "reason": "Refreshed", "type": "Normal",
        "regarding": {"kind": "Secret", "name": "gcr-pull", "namespace": "default", "apiVersion": "v1"},
    }))
    .unwrap();
    events.create(&PostParams::default(), &ev).await.unwrap();
    assert_eq!(k.events("default").len(), 1);
    assert!(k.requests().iter().all(|r| r.header("authorization") == Some("Bearer t0ken")));

    // Without the token: 401 Unauthorized.
    let anon = Client::try_from(Config::new(k.url().parse().unwrap())).unwrap();
    let api: Api<Secret> = Api::namespaced(anon, "default");
    let (code, reason, _) = api_err(api.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (401, "Unauthorized"));
}

/// Fan-out's view of namespaces: names and labels only, as
/// `PartialObjectMetadata`, through kube-runtime's watcher on an
/// `Api<PartialObjectMeta<Namespace>>` (what `metadata_watcher` became).
#[tokio::test]
async fn metadata_watcher_sees_namespaces_by_label() {
    let k = KubeApi::start().await;
    k.create_namespace("a", &[("regcred.dev/inject", "true")]);
    k.create_namespace("b", &[]);
    let c = client(&k, "default").await;

    let listed = Api::<Namespace>::all(c.clone()).list_metadata(&ListParams::default()).await.unwrap();
    let names: Vec<_> = listed.items.iter().map(|n| n.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["a", "b", "default", "kube-node-lease", "kube-public", "kube-system"]);
    assert_eq!(listed.types.api_version, "meta.k8s.io/v1");
    assert_eq!(listed.types.kind, "PartialObjectMetadataList");

    let api: Api<PartialObjectMeta<Namespace>> = Api::all(c);
    let config = watcher::Config::default().labels("regcred.dev/inject=true").page_size(1);
    let mut stream = watcher(api, config).boxed();
    let mut next =
        async || tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await.unwrap().unwrap().unwrap();
    let mut initial = Vec::new();
    loop {
        match next().await {
            watcher::Event::Init => {}
            watcher::Event::InitApply(ns) => initial.push(ns),
            watcher::Event::InitDone => break,
            other => panic!("{other:?} during the initial list"),
        }
    }
    assert_eq!(initial.len(), 1);
    let a = &initial[0];
    assert_eq!(a.metadata.name.as_deref(), Some("a"));
    assert_eq!(a.metadata.labels.as_ref().unwrap()["regcred.dev/inject"], "true");
    let is_partial = |ns: &PartialObjectMeta<Namespace>| {
        ns.types.as_ref().is_some_and(|t| t.api_version == "meta.k8s.io/v1" && t.kind == "PartialObjectMetadata")
    };
    assert!(is_partial(a), "{a:?}");

    k.label_namespace("b", &[("regcred.dev/inject", "true")]);
    match next().await {
        watcher::Event::Apply(ns) => assert!(ns.metadata.name.as_deref() == Some("b") && is_partial(&ns), "{ns:?}"),
        other => panic!("expected b to enter the selection, got {other:?}"),
    }
    k.delete_namespace("a");
    match next().await {
        watcher::Event::Apply(ns) => {
            assert_eq!(ns.metadata.name.as_deref(), Some("a"));
            assert!(ns.metadata.deletion_timestamp.is_some(), "a terminating namespace shows its deletionTimestamp");
        }
        other => panic!("expected a to turn Terminating, got {other:?}"),
    }
    assert!(matches!(next().await, watcher::Event::Delete(ns) if ns.metadata.name.as_deref() == Some("a")));
    let watches: Vec<_> = k.requests().into_iter().filter(|r| r.path.starts_with("/api/v1/namespaces")).collect();
    assert!(watches.iter().any(|r| r.query.contains("watch=true")));
    assert!(watches.iter().all(|r| r.header("accept").is_some_and(|a| a.contains("as=PartialObjectMetadata"))));
}
