//! End to end, namespace fan-out with the chart's ClusterRole on a real
//! kube-apiserver + etcd. Every test writes a Secret name of its own, so tests
//! sharing the control plane (and its namespaces) do not see each other's
//! writes. Ignored unless asked for (`--ignored`) with `REGCRED_E2E_DIR` naming a running control plane.

mod common;

use std::time::{Duration, Instant};

use common::e2e::{eventually, password_for, Cluster};
use common::terminate;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::Api;
use regcred_testkit::Google;
use serde_json::json;

/// Creates ServiceAccount `name` in `ns` (nothing else does: there is no
/// kube-controller-manager to create `default`).
async fn create_service_account(cluster: &Cluster, ns: &str, name: &str, annotated: bool) {
    let mut sa =
        ServiceAccount { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() };
    if annotated {
        sa.metadata.annotations = Some([("regcred.dev/image-pull-secret".to_string(), "true".to_string())].into());
    }
    Api::<ServiceAccount>::namespaced(cluster.admin.clone(), ns).create(&PostParams::default(), &sa).await.unwrap();
}

async fn pull_secrets_of(cluster: &Cluster, ns: &str, sa: &str) -> Vec<String> {
    let sa = Api::<ServiceAccount>::namespaced(cluster.admin.clone(), ns).get(sa).await.unwrap();
    sa.image_pull_secrets.unwrap_or_default().into_iter().map(|r| r.name).collect()
}

async fn has(cluster: &Cluster, ns: &str, name: &str) -> bool {
    cluster.secret(ns, name).await.is_some()
}

/// Namespaces `--all-namespaces` selects: all but the system ones and those
/// being deleted.
async fn selectable_namespaces(cluster: &Cluster) -> Vec<String> {
    let all = Api::<Namespace>::all(cluster.admin.clone()).list(&ListParams::default()).await.unwrap();
    all.items
        .into_iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter_map(|n| n.metadata.name)
        .filter(|n| !["kube-system", "kube-public", "kube-node-lease"].contains(&n.as_str()))
        .collect()
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn all_namespaces_new_ones_and_drift_with_a_terminating_namespace_present() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let name = cluster.unique("pull");
    let home = cluster.unique("regcred");
    let a = cluster.unique("fan-a");
    let b = cluster.unique("fan-b");
    let gone = cluster.unique("fan-gone");
    for ns in [&home, &a, &b, &gone] {
        cluster.create_namespace(ns, &[]).await;
    }
    for ns in [&a, &b] {
        create_service_account(&cluster, ns, "default", false).await;
    }
    // Without a namespace controller a deleted namespace stays Terminating.
    cluster.delete_namespace(&gone).await;
    let id = cluster
        .install(
            &home,
            &home,
            json!({"targets": {"secrets": [{"name": name}], "allNamespaces": true, "serviceAccounts": ["default"]}}),
        )
        .await;
    assert!(id.rendered.contains("kind: ClusterRole"), "fan-out renders a ClusterRole");

    let child = id.daemon(
        &google,
        &["--secret", &name, "--all-namespaces", "--patch-service-account", "default", "--resync-interval", "1h"],
    );
    eventually(Duration::from_secs(30), "the Secret in every selectable namespace", || async {
        for ns in selectable_namespaces(&cluster).await {
            if !has(&cluster, &ns, &name).await {
                return None;
            }
        }
        Some(())
    })
    .await;
    assert!(!has(&cluster, &gone, &name).await, "nothing written into a Terminating namespace");
    for ns in ["kube-system", "kube-public", "kube-node-lease"] {
        assert!(!has(&cluster, ns, &name).await, "{ns} is skipped");
    }
    for ns in [&a, &b] {
        let sa = eventually(Duration::from_secs(10), "the default ServiceAccount patched", || async {
            let list = pull_secrets_of(&cluster, ns, "default").await;
            list.contains(&name).then_some(list)
        })
        .await;
        assert_eq!(sa, std::slice::from_ref(&name));
    }

    // A new namespace gets the Secret within moments.
    let fresh = cluster.unique("fan-new");
    let created = Instant::now();
    cluster.create_namespace(&fresh, &[]).await;
    eventually(Duration::from_secs(5), "the new namespace's Secret", || async {
        has(&cluster, &fresh, &name).await.then_some(())
    })
    .await;
    let latency = created.elapsed();
    eprintln!("new namespace -> Secret: {latency:?}");
    assert!(latency < Duration::from_secs(2), "new namespace served in {latency:?}");

    // Drift is repaired from the watch (the resync interval is an hour).
    let token = google.issued_tokens().pop().unwrap().access_token;
    cluster.secrets(&a).delete(&name, &Default::default()).await.unwrap();
    let edit = json!({"data": {".dockerconfigjson": common::e2e::b64(r#"{"auths":{}}"#)}});
    cluster.secrets(&b).patch(&name, &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();
    for ns in [&a, &b] {
        eventually(Duration::from_secs(5), "the Secret repaired", || async {
            let doc = cluster.secret_doc(ns, &name, ".dockerconfigjson").await?;
            (password_for(&doc, "gcr.io") == token).then_some(())
        })
        .await;
    }
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(google.issued_tokens().len(), 1, "repairs reuse the current token");
    assert_eq!(cluster.forbidden(&id.user), Vec::<String>::new(), "regcred was refused");
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn namespace_selector_prunes_and_patches_annotated_service_accounts() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let name = cluster.unique("pull");
    let home = cluster.unique("regcred");
    let label = cluster.unique("team");
    let selector = format!("regcred-e2e={label}");
    let inside = cluster.unique("sel-in");
    let outside = cluster.unique("sel-out");
    cluster.create_namespace(&home, &[]).await;
    cluster.create_namespace(&inside, &[("regcred-e2e", &label)]).await;
    cluster.create_namespace(&outside, &[]).await;
    for ns in [&inside, &outside] {
        create_service_account(&cluster, ns, "builder", true).await;
        create_service_account(&cluster, ns, "plain", false).await;
    }
    let id = cluster
        .install(
            &home,
            &home,
            json!({"targets": {
                "secrets": [{"name": name}],
                "namespaceSelector": selector,
                "prune": true,
                "annotatedServiceAccounts": true,
            }}),
        )
        .await;
    let child = id.daemon(
        &google,
        &["--secret", &name, "--namespace-selector", &selector, "--prune", "--patch-annotated-service-accounts"],
    );
    eventually(Duration::from_secs(30), "the selected namespace's Secret and ServiceAccount", || async {
        (has(&cluster, &inside, &name).await && pull_secrets_of(&cluster, &inside, "builder").await.contains(&name))
            .then_some(())
    })
    .await;
    assert!(!has(&cluster, &outside, &name).await, "only selected namespaces");
    assert!(pull_secrets_of(&cluster, &inside, "plain").await.is_empty(), "only annotated ServiceAccounts");

    // Labelling a namespace brings it in, unlabelling prunes it.
    let ns_api = Api::<Namespace>::all(cluster.admin.clone());
    let label_patch = |v: Option<&str>| json!({"metadata": {"labels": {"regcred-e2e": v}}});
    ns_api.patch(&outside, &PatchParams::default(), &Patch::Merge(&label_patch(Some(&label)))).await.unwrap();
    eventually(Duration::from_secs(10), "a newly labelled namespace served", || async {
        (has(&cluster, &outside, &name).await && pull_secrets_of(&cluster, &outside, "builder").await.contains(&name))
            .then_some(())
    })
    .await;
    ns_api.patch(&inside, &PatchParams::default(), &Patch::Merge(&label_patch(None))).await.unwrap();
    eventually(Duration::from_secs(10), "the Secret pruned from an unlabelled namespace", || async {
        (!has(&cluster, &inside, &name).await).then_some(())
    })
    .await;
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(cluster.forbidden(&id.user), Vec::<String>::new(), "regcred was refused");
}
