//! Namespace fan-out: every selected namespace gets the Secret, new ones
//! within moments, drift is repaired from the watch, ServiceAccounts patched.

mod common;

use std::time::Duration;

use common::{password, terminate, wait_for, Kit};
use regcred_testkit::Fault;
use serde_json::json;

fn has_secret(kit: &Kit, ns: &str) -> bool {
    kit.kube.secret(ns, "gcr-pull").is_some()
}

#[tokio::test]
async fn once_writes_every_namespace_with_one_token_skipping_excluded_ones() {
    let kit = Kit::start().await;
    for i in 0..20 {
        kit.kube.create_namespace(&format!("team-{i}"), &[]);
    }
    kit.kube.create_namespace("tmp-1", &[]);
    let out = kit.once(&["--secret", "gcr-pull", "--all-namespaces", "--exclude-namespace", "tmp-*"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(kit.issued().len(), 1, "one token for all namespaces");
    let token = kit.issued().pop().unwrap();
    for i in 0..20 {
        let doc = kit.secret_doc(&format!("team-{i}"), "gcr-pull", ".dockerconfigjson").expect("written");
        assert_eq!(password(&doc), token);
    }
    assert!(has_secret(&kit, "default"));
    for ns in ["kube-system", "kube-public", "kube-node-lease", "tmp-1"] {
        assert!(!has_secret(&kit, ns), "{ns} is excluded");
    }
}

#[tokio::test]
async fn new_namespaces_get_the_secret_and_drift_is_repaired_from_the_watch() {
    let kit = Kit::start().await;
    kit.kube.create_namespace("ci", &[("regcred", "enabled")]);
    kit.kube.create_namespace("other", &[]);
    // A long resync interval: anything restored below was restored by the watch.
    let child = kit.daemon(&[
        "--secret",
        "gcr-pull",
        "--namespace-selector",
        "regcred=enabled",
        "--resync-interval",
        "1h",
        "--admin-addr",
        "off",
    ]);
    wait_for(Duration::from_secs(20), "ci's Secret", || has_secret(&kit, "ci").then_some(())).await;
    assert!(!has_secret(&kit, "other") && !has_secret(&kit, "default"), "only matching namespaces");

    kit.kube.create_namespace("ws-1", &[("regcred", "enabled")]);
    wait_for(Duration::from_secs(5), "a new namespace's Secret", || has_secret(&kit, "ws-1").then_some(())).await;
    kit.kube.label_namespace("other", &[("regcred", "enabled")]);
    wait_for(Duration::from_secs(5), "a newly labelled namespace's Secret", || has_secret(&kit, "other").then_some(()))
        .await;

    let good = kit.secret_doc("ci", "gcr-pull", ".dockerconfigjson").unwrap();
    kit.kube.delete_object("ci", "secrets", "gcr-pull");
    wait_for(Duration::from_secs(5), "the deleted Secret back", || has_secret(&kit, "ci").then_some(())).await;
    let mut edited = kit.kube.secret("ws-1", "gcr-pull").unwrap();
    edited["data"][".dockerconfigjson"] = json!("eyJhdXRocyI6e319");
    kit.kube.put_object("ws-1", "secrets", edited);
    wait_for(Duration::from_secs(5), "the edited Secret restored", || {
        (kit.secret_doc("ws-1", "gcr-pull", ".dockerconfigjson").as_ref() == Some(&good)).then_some(())
    })
    .await;
    assert_eq!(kit.issued().len(), 1, "repairs reuse the current token");
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn prune_removes_only_managed_secrets_from_namespaces_that_stop_matching() {
    let kit = Kit::start().await;
    kit.kube.create_namespace("a", &[("regcred", "enabled")]);
    kit.kube.create_namespace("b", &[("regcred", "enabled")]);
    let child = kit.daemon(&[
        "--secret",
        "gcr-pull",
        "--namespace-selector",
        "regcred=enabled",
        "--prune",
        "--admin-addr",
        "off",
    ]);
    wait_for(Duration::from_secs(20), "both Secrets", || {
        (has_secret(&kit, "a") && has_secret(&kit, "b")).then_some(())
    })
    .await;
    // Someone takes over b's Secret: it is no longer regcred's to write or delete.
    let mut theirs = kit.kube.secret("b", "gcr-pull").unwrap();
    theirs["metadata"]["labels"] =
        json!({"app.kubernetes.io/managed-by": "someone-else", "regcred.dev/managed": "false"});
    theirs["data"][".dockerconfigjson"] = json!("eyJhdXRocyI6e319");
    kit.kube.put_object("b", "secrets", theirs.clone());
    kit.kube.label_namespace("b", &[("regcred", "")]);
    kit.kube.label_namespace("a", &[("regcred", "")]);
    wait_for(Duration::from_secs(5), "a's Secret pruned", || (!has_secret(&kit, "a")).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(has_secret(&kit, "b"), "an unmanaged Secret is never deleted");
    let b = kit.kube.secret("b", "gcr-pull").unwrap();
    assert_eq!(b["data"], theirs["data"], "nor written");
    assert_eq!(b["metadata"]["labels"], theirs["metadata"]["labels"]);
    let (code, _) = terminate(child).await;
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn service_accounts_are_patched_idempotently() {
    let kit = Kit::start().await;
    kit.kube.create_namespace("ci", &[]);
    kit.kube.put_object(
        "ci",
        "serviceaccounts",
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": "ci"},
            "imagePullSecrets": [{"name": "theirs"}]
        }),
    );
    kit.kube.put_object(
        "ci",
        "serviceaccounts",
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "builder", "namespace": "ci", "annotations": {"regcred.dev/image-pull-secret": "true"}}
        }),
    );
    kit.kube.put_object(
        "ci",
        "serviceaccounts",
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "untouched", "namespace": "ci"}
        }),
    );
    let args = [
        "once",
        "--key-file",
        &kit.key_file(),
        "--secret",
        "gcr-pull",
        "--namespace",
        "ci",
        "--patch-service-account",
        "default",
        "--patch-annotated-service-accounts",
    ];
    for _ in 0..2 {
        let out = kit.run(&args).await;
        assert_eq!(out.code, Some(0), "{out:?}");
    }
    let pull = |name: &str| kit.kube.object("ci", "serviceaccounts", name).unwrap()["imagePullSecrets"].clone();
    assert_eq!(pull("default"), json!([{"name": "theirs"}, {"name": "gcr-pull"}]));
    assert_eq!(pull("builder"), json!([{"name": "gcr-pull"}]));
    assert_eq!(pull("untouched"), serde_json::Value::Null);
    // The second run found everything in place and patched nothing.
    let patches =
        kit.kube.requests().iter().filter(|r| r.method == "PATCH" && r.path.contains("/serviceaccounts/")).count();
    assert_eq!(patches, 2, "one patch per ServiceAccount, ever");
}

#[tokio::test]
async fn one_failing_namespace_does_not_block_the_others() {
    let kit = Kit::start().await;
    for ns in ["a", "b", "broken", "c"] {
        kit.kube.create_namespace(ns, &[]);
    }
    kit.kube.faults().inject(
        Some("POST"),
        "/api/v1/namespaces/broken/secrets",
        Fault::Status { code: 500, body: None, retry_after: None },
        1000,
    );
    let out = kit.once(&["--secret", "gcr-pull", "--namespace", "a,b,broken,c"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let last = out.stderr.lines().last().unwrap();
    assert!(last.contains("1 of 4 namespaces failed") && last.contains("broken"), "{last}");
    for ns in ["a", "b", "c"] {
        assert!(has_secret(&kit, ns), "{ns} written despite broken");
    }
    assert!(!has_secret(&kit, "broken"));
    let events = kit.kube.events("broken");
    assert!(events.iter().any(|e| e["reason"] == "WriteFailed"), "the failing namespace gets an Event: {events:?}");
}

#[tokio::test]
async fn fan_out_flags_are_validated() {
    let kit = Kit::start().await;
    for (args, expected) in [
        (vec!["once", "--secret", "ns/x", "--all-namespaces"], "exactly one --secret NAME, without a namespace"),
        (vec!["once", "--secret", "x", "--all-namespaces", "--namespace", "a"], "only one of --namespace"),
        (vec!["once", "--secret", "x", "--prune"], "need --namespace"),
        (vec!["once", "--secret", "x", "--all-namespaces", "--prune"], "use it with --namespace-selector"),
        (vec!["once", "--secret", "x", "--namespace", "Bad_NS"], "invalid value 'Bad_NS' for '--namespace"),
    ] {
        let out = kit.run(&args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
    }
}
