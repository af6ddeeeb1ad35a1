//! End to end, one Secret: regcred as the chart's ServiceAccount with the
//! chart's Role against a real kube-apiserver + etcd, and the kubelet's own
//! keyring code reading what it wrote. Skipped (with a message) unless
//! `REGCRED_E2E_DIR` names a running control plane; see
//! `testkit/control-plane/cluster`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::e2e::{data_json, events_about, eventually, password_for, Cluster, Identity};
use common::terminate;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use regcred_testkit::Google;
use serde_json::{json, Value};

const GCR: &str = "gcr.io";
const AR: &str = "europe-west1-docker.pkg.dev";

/// One Secret in its own namespace, and the chart's RBAC for it.
async fn single(cluster: &Cluster, key: &str, create_secrets: bool) -> (String, Identity) {
    let ns = cluster.unique("single");
    cluster.create_namespace(&ns, &[]).await;
    let values = json!({
        "targets": {
            "secrets": [{"name": "gcr-pull", "namespace": ns, "key": key}],
            "createSecrets": create_secrets,
        },
    });
    let id = cluster.install(&cluster.unique("regcred"), &ns, values).await;
    (ns, id)
}

fn type_for(key: &str) -> &'static str {
    if key == ".dockerconfigjson" {
        "kubernetes.io/dockerconfigjson"
    } else {
        "Opaque"
    }
}

/// `once` creates (or fills the chart's placeholder), then updates, keeping
/// what others put in the Secret; never refused by the API server.
async fn once_creates_then_updates(key: &str, create_secrets: bool) {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let (ns, id) = single(&cluster, key, create_secrets).await;
    let target = format!("{ns}/gcr-pull");
    let args = ["--secret", &target, "--secret-key", key, "--registry", &format!("{GCR},{AR}")];

    if create_secrets {
        let placeholder = cluster.secret(&ns, "gcr-pull").await.expect("the chart's placeholder");
        assert_eq!(data_json(&placeholder, key).unwrap(), json!({"auths": {}}));
    }
    let first = id.once(&google, &args).await;
    assert_eq!(first.code, Some(0), "{first:?}");
    let secret = cluster.secret(&ns, "gcr-pull").await.expect("written");
    assert_eq!(secret.type_.as_deref(), Some(type_for(key)));
    let token1 = google.issued_tokens().pop().unwrap().access_token;
    let doc = data_json(&secret, key).unwrap();
    assert_eq!(password_for(&doc, GCR), token1);
    assert_eq!(password_for(&doc, AR), token1);

    // Someone else's key, label and annotation.
    let patch = json!({
        "metadata": {"labels": {"team": "builds"}, "annotations": {"example.com/owner": "ci"}},
        "data": {"other": common::e2e::b64("keep me")},
    });
    cluster.secrets(&ns).patch("gcr-pull", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();

    let second = id.once(&google, &args).await;
    assert_eq!(second.code, Some(0), "{second:?}");
    let secret = cluster.secret(&ns, "gcr-pull").await.unwrap();
    let token2 = google.issued_tokens().pop().unwrap().access_token;
    assert_ne!(token1, token2);
    assert_eq!(password_for(&data_json(&secret, key).unwrap(), GCR), token2, "updated");
    let data = secret.data.clone().unwrap();
    assert_eq!(data["other"].0, b"keep me", "foreign key kept");
    let meta = &secret.metadata;
    assert_eq!(meta.labels.as_ref().unwrap()["team"], "builds", "foreign label kept");
    assert_eq!(meta.annotations.as_ref().unwrap()["example.com/owner"], "ci", "foreign annotation kept");
    assert!(meta.annotations.as_ref().unwrap().contains_key("regcred.dev/expires-at"));
    assert_eq!(cluster.forbidden(&id.user), Vec::<String>::new(), "regcred was refused");
    let audit = cluster.audit(&id.user);
    assert!(!audit.is_empty(), "the audit log records regcred's requests");
    // Operators find regcred in the audit log by its User-Agent.
    let wanted = format!("regcred/{}", env!("CARGO_PKG_VERSION"));
    for record in &audit {
        assert_eq!(record["userAgent"], wanted.as_str(), "{record}");
    }
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn once_creates_and_updates_a_dockerconfigjson_secret() {
    once_creates_then_updates(".dockerconfigjson", false).await;
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn once_creates_and_updates_an_opaque_secret() {
    once_creates_then_updates("registry-auth.json", false).await;
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn once_fills_the_charts_dockerconfigjson_placeholder_without_create() {
    once_creates_then_updates(".dockerconfigjson", true).await;
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn once_fills_the_charts_opaque_placeholder_without_create() {
    once_creates_then_updates("registry-auth.json", true).await;
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn run_rotates_short_lived_tokens_and_the_server_accepts_its_events() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    google.set_token_lifetime(Duration::from_secs(6));
    let (ns, id) = single(&cluster, ".dockerconfigjson", true).await;
    let target = format!("{ns}/gcr-pull");
    let child =
        id.daemon(&google, &["--secret", &target, "--refresh-before", "3s", "--jitter", "0s", "--rotation-events"]);
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < 3 {
        let tok = eventually(Duration::from_secs(20), "the next token", || {
            let (cluster, ns, last) = (&cluster, ns.clone(), seen.last().cloned());
            async move {
                let t = password_for(&cluster.secret_doc(&ns, "gcr-pull", ".dockerconfigjson").await?, GCR);
                // The chart's placeholder holds no token at all.
                (!t.is_empty() && Some(&t) != last.as_ref()).then_some(t)
            }
        })
        .await;
        seen.push(tok);
    }
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    let issued: Vec<String> = google.issued_tokens().into_iter().map(|t| t.access_token).collect();
    for t in &seen {
        assert!(issued.contains(t), "the Secret holds tokens the kit issued");
    }
    assert!(issued.len() <= seen.len() + 1, "one token per rotation: {} issued for {} seen", issued.len(), seen.len());

    // Rotated Events, accepted by the real server's events.k8s.io/v1 validation.
    let events = events_about(&cluster, &ns, "gcr-pull").await;
    assert!(events.iter().any(|e| e["reason"] == "Rotated" && e["reportingController"] == "regcred"), "{events:#?}");
    let event_writes: Vec<Value> =
        cluster.audit(&id.user).into_iter().filter(|e| e["objectRef"]["resource"] == "events").collect();
    assert!(!event_writes.is_empty());
    for e in &event_writes {
        let code = e["responseStatus"]["code"].as_i64().unwrap_or(0);
        // A write cut short by stopping regcred is logged as 504 "context canceled".
        let cancelled =
            code == 504 && e["responseStatus"]["message"].as_str().unwrap_or("").contains("context canceled");
        assert!((200..300).contains(&code) || cancelled, "event write refused: {e}");
    }
    assert_eq!(cluster.forbidden(&id.user), Vec::<String>::new(), "regcred was refused");
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn a_secret_of_the_wrong_type_is_reported_not_replaced() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let (ns, id) = single(&cluster, ".dockerconfigjson", false).await;
    let opaque = Secret {
        metadata: ObjectMeta { name: Some("gcr-pull".into()), ..Default::default() },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([("token".to_string(), ByteString(b"theirs".to_vec()))])),
        ..Default::default()
    };
    cluster.secrets(&ns).create(&PostParams::default(), &opaque).await.unwrap();
    let before = cluster.secret(&ns, "gcr-pull").await.unwrap();

    let out = id.once(&google, &["--secret", &format!("{ns}/gcr-pull")]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("Opaque"), "the error names the type found: {}", out.stderr);
    let after = cluster.secret(&ns, "gcr-pull").await.unwrap();
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version, "not replaced");
    let events = events_about(&cluster, &ns, "gcr-pull").await;
    assert!(events.iter().any(|e| e["reason"] == "WriteFailed" && e["type"] == "Warning"), "{events:#?}");
    assert_eq!(cluster.forbidden(&id.user), Vec::<String>::new(), "regcred was refused");
}

/// The kubelet's own keyring code, given the Secret regcred wrote as a pod's
/// image-pull Secret, finds the current token for every host regcred was
/// asked for and nothing for other hosts.
#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn the_kubelet_keyring_resolves_every_requested_host_to_the_current_token() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let (ns, id) = single(&cluster, ".dockerconfigjson", false).await;
    let out = id.once(&google, &["--secret", &format!("{ns}/gcr-pull"), "--registry", &format!("{GCR},{AR}")]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let token = google.issued_tokens().pop().unwrap().access_token;
    let secret = cluster.secret(&ns, "gcr-pull").await.unwrap();

    let covered = [
        "europe-west1-docker.pkg.dev/p/r/i:tag",
        "europe-west1-docker.pkg.dev/p/r/i@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "gcr.io/p/i",
        "gcr.io/p/i:1.0",
    ];
    let others = ["us.gcr.io/p/i", "us-docker.pkg.dev/p/r/i", "nginx", "docker.io/library/busybox:1"];
    let all: Vec<&str> = covered.iter().chain(others.iter()).copied().collect();
    let creds = cluster.kubelet_credentials(std::slice::from_ref(&secret), &all).await;
    for image in covered {
        assert_eq!(
            creds[image],
            json!([{"username": "oauth2accesstoken", "password": token}]),
            "{image}: the kubelet uses the current token"
        );
    }
    for image in others {
        assert_eq!(creds[image], json!([]), "{image}: no credential for a host regcred was not asked for");
    }
}

/// An Opaque Secret (`--secret-key registry-auth.json`, for tools that read
/// the document themselves) is not an image-pull Secret: the kubelet ignores it.
#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn the_kubelet_ignores_an_opaque_secret() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let (ns, id) = single(&cluster, "registry-auth.json", false).await;
    let out = id.once(&google, &["--secret", &format!("{ns}/gcr-pull"), "--secret-key", "registry-auth.json"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let secret = cluster.secret(&ns, "gcr-pull").await.unwrap();
    assert!(data_json(&secret, "registry-auth.json").is_some());
    let creds = cluster.kubelet_credentials(&[secret], &["gcr.io/p/i"]).await;
    assert_eq!(creds["gcr.io/p/i"], json!([]));
}

/// The API server names the writer of every field (`managedFields`, and
/// server-side apply conflicts such as Helm's): regcred's writes should carry
/// its name.
#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn writes_are_attributed_to_regcred_in_managed_fields() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let (ns, id) = single(&cluster, ".dockerconfigjson", false).await;
    let out = id.once(&google, &["--secret", &format!("{ns}/gcr-pull")]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let secret = cluster.secret(&ns, "gcr-pull").await.unwrap();
    let managers: Vec<String> =
        secret.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
    assert_eq!(managers, ["regcred"]);
}
