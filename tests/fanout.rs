//! Namespace fan-out: every selected namespace gets the Secret, new ones
//! within moments, drift is repaired from the watch, ServiceAccounts patched.
//! On either Kubernetes backend (see `common::backend`): on a real server the
//! namespaces and selector labels carry the kit's unique suffix.

mod common;

use std::time::Duration;

use common::{password, terminate, wait_for, Kit};
use regcred_testkit::Fault;
use serde_json::json;

async fn has_secret(kit: &Kit, ns: &str) -> bool {
    kit.kube.secret(ns, "gcr-pull").await.is_some()
}

#[tokio::test]
async fn new_namespaces_get_the_secret_and_drift_is_repaired_from_the_watch() {
    let kit = Kit::start().await;
    let (ci, other, ws1, enabled) = (kit.name("ci"), kit.name("other"), kit.name("ws-1"), kit.name("enabled"));
    kit.kube.create_namespace(&ci, &[("regcred", &enabled)]).await;
    kit.kube.create_namespace(&other, &[]).await;
    // A long resync interval: anything restored below was restored by the watch.
    let child = kit.daemon(&[
        "--secret",
        "gcr-pull",
        "--namespace-selector",
        &format!("regcred={enabled}"),
        "--resync-interval",
        "1h",
        "--admin-addr",
        "off",
    ]);
    wait_for(Duration::from_secs(20), "ci's Secret", async || has_secret(&kit, &ci).await.then_some(())).await;
    assert!(!has_secret(&kit, &other).await && !has_secret(&kit, &kit.namespace).await, "only matching namespaces");

    kit.kube.create_namespace(&ws1, &[("regcred", &enabled)]).await;
    wait_for(Duration::from_secs(5), "a new namespace's Secret", async || has_secret(&kit, &ws1).await.then_some(()))
        .await;
    kit.kube.label_namespace(&other, &[("regcred", &enabled)]).await;
    wait_for(Duration::from_secs(5), "a newly labelled namespace's Secret", async || {
        has_secret(&kit, &other).await.then_some(())
    })
    .await;

    let good = kit.secret_doc(&ci, "gcr-pull", ".dockerconfigjson").await.unwrap();
    kit.kube.delete_object(&ci, "secrets", "gcr-pull").await;
    wait_for(Duration::from_secs(5), "the deleted Secret back", async || has_secret(&kit, &ci).await.then_some(()))
        .await;
    let mut edited = kit.kube.secret(&ws1, "gcr-pull").await.unwrap();
    edited["data"][".dockerconfigjson"] = json!("eyJhdXRocyI6e319");
    kit.kube.put_secret(&ws1, edited).await;
    wait_for(Duration::from_secs(5), "the edited Secret restored", async || {
        (kit.secret_doc(&ws1, "gcr-pull", ".dockerconfigjson").await.as_ref() == Some(&good)).then_some(())
    })
    .await;
    assert_eq!(kit.issued().len(), 1, "repairs reuse the current token");
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn prune_removes_only_managed_secrets_from_namespaces_that_stop_matching() {
    let kit = Kit::start().await;
    let (a, b, enabled) = (kit.name("a"), kit.name("b"), kit.name("enabled"));
    kit.kube.create_namespace(&a, &[("regcred", &enabled)]).await;
    kit.kube.create_namespace(&b, &[("regcred", &enabled)]).await;
    let child = kit.daemon(&[
        "--secret",
        "gcr-pull",
        "--namespace-selector",
        &format!("regcred={enabled}"),
        "--prune",
        "--admin-addr",
        "off",
    ]);
    wait_for(Duration::from_secs(20), "both Secrets", async || {
        (has_secret(&kit, &a).await && has_secret(&kit, &b).await).then_some(())
    })
    .await;
    // Someone takes over b's Secret: it is no longer regcred's to write or delete.
    let mut theirs = kit.kube.secret(&b, "gcr-pull").await.unwrap();
    theirs["metadata"]["labels"] =
        json!({"app.kubernetes.io/managed-by": "someone-else", "regcred.dev/managed": "false"});
    theirs["data"][".dockerconfigjson"] = json!("eyJhdXRocyI6e319");
    kit.kube.put_secret(&b, theirs.clone()).await;
    kit.kube.label_namespace(&b, &[("regcred", "")]).await;
    kit.kube.label_namespace(&a, &[("regcred", "")]).await;
    wait_for(Duration::from_secs(5), "a's Secret pruned", async || (!has_secret(&kit, &a).await).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(has_secret(&kit, &b).await, "an unmanaged Secret is never deleted");
    let after = kit.kube.secret(&b, "gcr-pull").await.unwrap();
    assert_eq!(after["data"], theirs["data"], "nor written");
    assert_eq!(after["metadata"]["labels"], theirs["metadata"]["labels"]);
    let (code, _) = terminate(child).await;
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn service_accounts_are_patched_idempotently() {
    let kit = Kit::start().await;
    let ci = kit.name("ci");
    kit.kube.create_namespace(&ci, &[]).await;
    for account in [
        json!({"metadata": {"name": "default"}, "imagePullSecrets": [{"name": "theirs"}]}),
        json!({"metadata": {"name": "builder", "annotations": {"regcred.dev/image-pull-secret": "true"}}}),
        json!({"metadata": {"name": "untouched"}}),
    ] {
        kit.kube.put_object(&ci, "serviceaccounts", account).await;
    }
    let args = [
        "--secret",
        "gcr-pull",
        "--namespace",
        &ci,
        "--patch-service-account",
        "default",
        "--patch-annotated-service-accounts",
    ];
    for _ in 0..2 {
        let out = kit.once(&args).await;
        assert_eq!(out.code, Some(0), "{out:?}");
    }
    let pull =
        async |name: &str| kit.kube.object(&ci, "serviceaccounts", name).await.unwrap()["imagePullSecrets"].clone();
    assert_eq!(pull("default").await, json!([{"name": "theirs"}, {"name": "gcr-pull"}]));
    assert_eq!(pull("builder").await, json!([{"name": "gcr-pull"}]));
    assert_eq!(pull("untouched").await, serde_json::Value::Null);
    // The second run found everything in place and patched nothing (only
    // the emulator counts requests; a real server does not say).
    if let Some(emulator) = kit.on_emulator() {
        let patches =
            emulator.requests().iter().filter(|r| r.method == "PATCH" && r.path.contains("/serviceaccounts/")).count();
        assert_eq!(patches, 2, "one patch per ServiceAccount, ever");
    }
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
        (vec!["once", "--secret", "x", "--namespace", "a", "--namespace-selector", "x=y"], "cannot be used with"),
        (vec!["once", "--secret", "x", "--patch-annotated-service-accounts"], "need --namespace"),
        (vec!["once", "--secret", "x", "--namespace", "a", "--exclude-namespace", "b"], "cannot be used with"),
    ] {
        let out = kit.run(&args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
    }
}

/// Tests that need the emulator: `--all-namespaces` would write into every
/// namespace of a shared server, and 500s and 403s are injected.
mod emulator_only {
    use super::*;

    #[tokio::test]
    async fn once_writes_every_namespace_with_one_token_skipping_excluded_ones() {
        let kit = Kit::start_emulator().await;
        for i in 0..20 {
            kit.kube.create_namespace(&format!("team-{i}"), &[]).await;
        }
        kit.kube.create_namespace("tmp-1", &[]).await;
        let out = kit.once(&["--secret", "gcr-pull", "--all-namespaces", "--exclude-namespace", "tmp-*"]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        assert_eq!(kit.issued().len(), 1, "one token for all namespaces");
        let token = kit.issued().pop().unwrap();
        for i in 0..20 {
            let doc = kit.secret_doc(&format!("team-{i}"), "gcr-pull", ".dockerconfigjson").await.expect("written");
            assert_eq!(password(&doc), token);
        }
        assert!(has_secret(&kit, "default").await);
        for ns in ["kube-system", "kube-public", "kube-node-lease", "tmp-1"] {
            assert!(!has_secret(&kit, ns).await, "{ns} is excluded");
        }
        // Names, labels and the deletion mark are all fan-out reads of a
        // namespace: it asks for metadata only, never for whole objects.
        let namespace_reads: Vec<_> = kit
            .emulator()
            .requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path == "/api/v1/namespaces")
            .collect();
        assert!(!namespace_reads.is_empty());
        for r in namespace_reads {
            let accept = r.header("accept").unwrap_or_default().to_string();
            let wanted = if r.query.contains("watch=true") {
                "as=PartialObjectMetadata;"
            } else {
                "as=PartialObjectMetadataList;"
            };
            assert!(accept.contains(wanted), "{} ?{}: Accept {accept:?}", r.path, r.query);
        }
    }
    #[tokio::test]
    async fn one_failing_namespace_does_not_block_the_others() {
        let kit = Kit::start_emulator().await;
        for ns in ["a", "b", "broken", "c"] {
            kit.kube.create_namespace(ns, &[]).await;
        }
        kit.emulator().faults().inject(
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
            assert!(has_secret(&kit, ns).await, "{ns} written despite broken");
        }
        assert!(!has_secret(&kit, "broken").await);
        let events = kit.kube.events("broken").await;
        assert!(events.iter().any(|e| e["reason"] == "WriteFailed"), "the failing namespace gets an Event: {events:?}");
    }

    #[tokio::test]
    async fn a_forbidden_service_account_patch_names_the_service_account() {
        let kit = Kit::start_emulator().await;
        kit.kube.create_namespace("ci", &[]).await;
        kit.kube.put_object("ci", "serviceaccounts", json!({"metadata": {"name": "default"}})).await;
        let forbidden = Fault::Status { code: 403, body: None, retry_after: None };
        kit.emulator().faults().inject(Some("PATCH"), "/api/v1/namespaces/ci/serviceaccounts", forbidden, 100);
        let out = kit.once(&["--secret", "gcr-pull", "--namespace", "ci", "--patch-service-account", "default"]).await;
        assert_eq!(out.code, Some(1), "{out:?}");
        let last = out.stderr.lines().last().unwrap();
        assert!(
            last.contains("cannot `patch` serviceaccounts/default in namespace ci; grant it with a Role"),
            "{last}"
        );
        assert!(has_secret(&kit, "ci").await, "the Secret itself was written");
    }
}
