//! End to end, what /readyz and Events say when a Secret is gone for good or
//! has the wrong type, on a real API server with the chart's RBAC (the
//! fault-injection side of these lives in tests/hardening.rs). Ignored unless asked for
//! (`--ignored`) with `REGCRED_E2E_DIR` naming a running control plane.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::e2e::{events_about, eventually, Cluster};
use common::{free_port, http_get, terminate};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use regcred_testkit::Google;
use serde_json::json;

fn secret(type_: &str, key: &str, value: &[u8]) -> Secret {
    Secret {
        metadata: ObjectMeta { name: Some("gcr-pull".into()), ..Default::default() },
        type_: Some(type_.into()),
        data: Some(BTreeMap::from([(key.to_string(), ByteString(value.to_vec()))])),
        ..Default::default()
    }
}

/// Polls /readyz until it answers `want` with a body containing `says`.
async fn readyz(port: u16, want: u16, says: &str, what: &str) -> String {
    eventually(Duration::from_secs(20), what, || async move {
        http_get(port, "/readyz").await.filter(|(code, body)| *code == want && body.contains(says)).map(|(_, b)| b)
    })
    .await
}

/// The notes of the WriteFailed Warnings about the Secret.
async fn warnings(cluster: &Cluster, ns: &str) -> Vec<String> {
    events_about(cluster, ns, "gcr-pull")
        .await
        .into_iter()
        .filter(|e| e["reason"] == "WriteFailed")
        .map(|e| e["note"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn readiness_and_events_follow_a_secret_that_is_gone_for_good_then_of_the_wrong_type() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let ns = cluster.unique("hardening");
    cluster.create_namespace(&ns, &[]).await;
    // createSecrets: the chart makes the placeholder and grants no `create`.
    let values = json!({"targets": {"secrets": [{"name": "gcr-pull", "namespace": ns}], "createSecrets": true}});
    let id = cluster.install(&cluster.unique("regcred"), &ns, values).await;
    let port = free_port();
    let admin = format!("127.0.0.1:{port}");
    let target = format!("{ns}/gcr-pull");
    let args = ["run", "--secret", &target, "--resync-interval", "1s", "--admin-addr", &admin];
    let child = id.command(&google, &args).spawn().unwrap();
    readyz(port, 200, "", "ready").await;

    // Deleted, and regcred may not create it: unready at once, one Warning.
    let secrets = cluster.secrets(&ns);
    secrets.delete("gcr-pull", &DeleteParams::default()).await.unwrap();
    let body = readyz(port, 503, "forbidden", "unready once the Secret is gone").await;
    assert!(body.contains("cannot `create` secrets/gcr-pull"), "{body}");
    eventually(Duration::from_secs(10), "a forbidden Warning", || async {
        warnings(&cluster, &ns).await.iter().any(|n| n.contains("forbidden")).then_some(())
    })
    .await;

    // Someone makes a Secret of another type under the name: a new failure,
    // with its own Warning whose note says so.
    secrets.create(&PostParams::default(), &secret("Opaque", "token", b"theirs")).await.unwrap();
    readyz(port, 503, "has type Opaque", "unready with the wrong type").await;
    eventually(Duration::from_secs(10), "a wrong-type Warning", || async {
        warnings(&cluster, &ns).await.iter().any(|n| n.contains("has type Opaque")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(warnings(&cluster, &ns).await.len(), 2, "each failure once: {:?}", warnings(&cluster, &ns).await);

    // The right Secret back: regcred fills it, ready again, Recovered.
    secrets.delete("gcr-pull", &DeleteParams::default()).await.unwrap();
    let placeholder = secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", br#"{"auths":{}}"#);
    secrets.create(&PostParams::default(), &placeholder).await.unwrap();
    readyz(port, 200, "", "ready again").await;
    let events = events_about(&cluster, &ns, "gcr-pull").await;
    assert!(events.iter().any(|e| e["reason"] == "Recovered"), "{events:#?}");
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    // The only refusals were the creates the chart's RBAC withholds.
    let refused = cluster.forbidden(&id.user);
    assert!(!refused.is_empty() && refused.iter().all(|r| r.contains("create")), "{refused:?}");
}
