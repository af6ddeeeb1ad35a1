//! End to end, watches on a real kube-apiserver + etcd: regcred's fan-out
//! watches survive a kube-apiserver restart and an etcd compaction past
//! their resourceVersion (410 Gone), keep repairing drift, and do so without
//! a burst of requests. The one test in this file stops and starts the API
//! server, so it lives alone (cargo runs test files one after another).
//! Ignored unless asked for (`--ignored`) with `REGCRED_E2E_DIR` naming a running control plane.

mod common;

use std::time::Duration;

use common::e2e::{eventually, password_for, Cluster};
use common::terminate;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::Api;
use regcred_testkit::Google;
use serde_json::{json, Value};

/// Deletes the Secret in `a`, edits it in `b`, labels a new namespace in:
/// all three are repaired from the watches (the resync interval is an hour).
async fn drift_is_repaired(cluster: &Cluster, google: &Google, name: &str, label: (&str, &str), a: &str, b: &str) {
    let token = google.issued_tokens().pop().unwrap().access_token;
    cluster.secrets(a).delete(name, &Default::default()).await.unwrap();
    let edit = json!({"data": {".dockerconfigjson": common::e2e::b64(r#"{"auths":{}}"#)}});
    cluster.secrets(b).patch(name, &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();
    let fresh = cluster.unique("watch-new");
    cluster.create_namespace(&fresh, &[label]).await;
    for ns in [a, b, &fresh] {
        eventually(Duration::from_secs(15), "the Secret repaired from the watch", || async {
            let doc = cluster.secret_doc(ns, name, ".dockerconfigjson").await?;
            (password_for(&doc, "gcr.io") == token).then_some(())
        })
        .await;
    }
}

/// regcred's requests since `from` (an index into its request list), by verb and resource.
fn summary(requests: &[Value]) -> Vec<String> {
    requests
        .iter()
        .map(|e| format!("{} {}", e["verb"].as_str().unwrap_or(""), e["objectRef"]["resource"].as_str().unwrap_or("")))
        .collect()
}

fn count(requests: &[Value], verb: &str, resource: &str) -> usize {
    requests.iter().filter(|e| e["verb"] == verb && e["objectRef"]["resource"] == resource).count()
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn watches_survive_an_apiserver_restart_and_a_compaction_without_a_request_storm() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let name = cluster.unique("pull");
    let home = cluster.unique("regcred");
    let value = cluster.unique("w");
    let label = ("regcred-e2e-watch", value.as_str());
    let a = cluster.unique("watch-a");
    let b = cluster.unique("watch-b");
    cluster.create_namespace(&home, &[]).await;
    cluster.create_namespace(&a, &[label]).await;
    cluster.create_namespace(&b, &[label]).await;
    let selector = format!("{}={}", label.0, label.1);
    let id = cluster
        .install(&home, &home, json!({"targets": {"secrets": [{"name": name}], "namespaceSelector": selector}}))
        .await;
    let child = id.daemon(&google, &["--secret", &name, "--namespace-selector", &selector, "--resync-interval", "1h"]);
    for ns in [&a, &b] {
        eventually(Duration::from_secs(30), "the first Secrets", || async {
            cluster.secret(ns, &name).await.map(|_| ())
        })
        .await;
    }

    // 1. kube-apiserver restarts (same etcd): the watches reconnect.
    cluster.control("stop-apiserver").await;
    cluster.control("start-apiserver").await;
    drift_is_repaired(&cluster, &google, &name, label, &a, &b).await;

    // 2. etcd is compacted past the watches' resourceVersion while the API
    // server is down; when it comes back its watch cache starts at the
    // current revision, so resuming from the old one is answered 410 Gone
    // and regcred must list again.
    let before = cluster.requests(&id.user).len();
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.admin.clone(), &home);
    for i in 0..5 {
        let cm = ConfigMap {
            metadata: ObjectMeta { name: Some(format!("bump-{i}")), ..Default::default() },
            ..Default::default()
        };
        configmaps.create(&PostParams::default(), &cm).await.unwrap();
    }
    cluster.control("stop-apiserver").await;
    let status: Value = serde_json::from_str(&cluster.etcdctl(&["endpoint", "status", "-w", "json"]).await).unwrap();
    let revision = status[0]["Status"]["header"]["revision"].as_i64().expect("etcd revision");
    cluster.etcdctl(&["compact", &revision.to_string()]).await;
    cluster.control("start-apiserver").await;
    drift_is_repaired(&cluster, &google, &name, label, &a, &b).await;

    let after: Vec<Value> = cluster.requests(&id.user).split_off(before);
    eprintln!("regcred's requests after the compaction: {:?}", summary(&after));
    assert!(
        count(&after, "list", "secrets") >= 1,
        "regcred listed Secrets again after 410 Gone: {:?}",
        summary(&after)
    );
    assert!(count(&after, "list", "secrets") <= 3, "relists of Secrets: {:?}", summary(&after));
    assert!(count(&after, "list", "namespaces") <= 3, "relists of namespaces: {:?}", summary(&after));
    // Three repairs per round need a handful of writes, not a storm.
    assert!(after.len() <= 30, "{} requests after the compaction: {:?}", after.len(), summary(&after));

    // Quiet once repaired: nothing but the open watches.
    let settled = cluster.requests(&id.user).len();
    let quiet = tokio::time::Instant::now() + Duration::from_secs(5);
    tokio::time::sleep_until(quiet).await;
    let idle: Vec<Value> = cluster.requests(&id.user).split_off(settled);
    assert!(idle.len() <= 2, "requests while idle: {:?}", summary(&idle));

    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(google.issued_tokens().len(), 1, "repairs reuse the current token");
    assert_eq!(cluster.forbidden(&id.user), Vec::<String>::new(), "regcred was refused");
}
