//! End to end with Helm (v4) on a real kube-apiserver + etcd: the chart is
//! installed, regcred (as the chart's ServiceAccount) fills the chart's
//! placeholder Secret, the chart is upgraded and uninstalled. Hooks are not
//! run: without controllers the install Job could never complete (the real
//! node runs them: tests/node.rs). Ignored unless asked for (`--ignored`)
//! with `REGCRED_E2E_DIR` naming a running control plane.

mod common;

use std::collections::BTreeMap;

use common::e2e::{data_json, password_for, Cluster};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::ListParams;
use kube::Api;
use regcred_testkit::Google;
use serde_json::json;

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

struct Release {
    name: String,
    ns: String,
    values: tempfile::NamedTempFile,
}

impl Release {
    async fn helm(&self, cluster: &Cluster, verb: &str) -> common::Output {
        let values = self.values.path().to_str().unwrap();
        let mut args = vec![verb, &self.name];
        if verb != "uninstall" {
            args.extend([common::e2e::CHART, "--values", values, "--no-hooks"]);
        }
        args.extend(["--namespace", &self.ns]);
        cluster.helm(&args).await
    }
}

async fn release(cluster: &Cluster) -> Release {
    let ns = cluster.unique("helm");
    cluster.create_namespace(&ns, &[]).await;
    let values = tempfile::NamedTempFile::new().unwrap();
    let v = json!({"targets": {"secrets": [{"name": "gcr-pull"}], "createSecrets": true}});
    std::fs::write(values.path(), serde_json::to_vec(&v).unwrap()).unwrap();
    Release { name: cluster.unique("regcred"), ns, values }
}

fn labels(s: &Secret) -> BTreeMap<String, String> {
    s.metadata.labels.clone().unwrap_or_default()
}

/// install, regcred fills the placeholder, uninstall leaves nothing of the
/// release behind.
#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn install_then_regcred_writes_then_uninstall_leaves_nothing_behind() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let rel = release(&cluster).await;
    let out = rel.helm(&cluster, "install").await;
    assert_eq!(out.code, Some(0), "helm install: {out:?}");
    let placeholder = cluster.secret(&rel.ns, "gcr-pull").await.expect("the chart's placeholder");
    assert_eq!(labels(&placeholder)[MANAGED_BY], "Helm");

    let id = cluster.identity(&rel.ns, &rel.name).await;
    let out = id.once(&google, &["--secret", &format!("{}/gcr-pull", rel.ns)]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let token = google.issued_tokens().pop().unwrap().access_token;
    let doc = data_json(&cluster.secret(&rel.ns, "gcr-pull").await.unwrap(), ".dockerconfigjson").unwrap();
    assert_eq!(password_for(&doc, "gcr.io"), token);
    assert_eq!(cluster.forbidden(&id.user), Vec::<String>::new(), "regcred was refused");

    let out = rel.helm(&cluster, "uninstall").await;
    assert_eq!(out.code, Some(0), "helm uninstall: {out:?}");
    assert_nothing_left(&cluster, &rel.ns).await;
}

async fn assert_nothing_left(cluster: &Cluster, ns: &str) {
    let lp = ListParams::default();
    assert!(Api::<Role>::namespaced(cluster.admin.clone(), ns).list(&lp).await.unwrap().items.is_empty());
    assert!(Api::<RoleBinding>::namespaced(cluster.admin.clone(), ns).list(&lp).await.unwrap().items.is_empty());
    let sas = Api::<ServiceAccount>::namespaced(cluster.admin.clone(), ns).list(&lp).await.unwrap();
    assert!(sas.items.is_empty(), "{:?}", sas.items.iter().map(|s| &s.metadata.name).collect::<Vec<_>>());
    assert!(cluster.secrets(ns).list(&lp).await.unwrap().items.is_empty(), "no Secret left behind");
}

/// install, regcred writes, upgrade keeps regcred's credential, regcred
/// keeps writing, uninstall cleans up.
#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn helm_upgrade_after_regcred_wrote_keeps_the_credential() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let rel = release(&cluster).await;
    let out = rel.helm(&cluster, "install").await;
    assert_eq!(out.code, Some(0), "helm install: {out:?}");
    let id = cluster.identity(&rel.ns, &rel.name).await;
    let target = format!("{}/gcr-pull", rel.ns);
    let out = id.once(&google, &["--secret", &target]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let token = google.issued_tokens().pop().unwrap().access_token;

    let out = rel.helm(&cluster, "upgrade").await;
    assert_eq!(out.code, Some(0), "helm upgrade after regcred wrote: {out:?}");
    let after = cluster.secret(&rel.ns, "gcr-pull").await.unwrap();
    let doc = data_json(&after, ".dockerconfigjson").unwrap();
    assert_eq!(password_for(&doc, "gcr.io"), token, "the upgrade kept regcred's credential");

    let out = id.once(&google, &["--secret", &target]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(cluster.forbidden(&id.user), Vec::<String>::new(), "regcred was refused");
    let out = rel.helm(&cluster, "uninstall").await;
    assert_eq!(out.code, Some(0), "helm uninstall: {out:?}");
    assert_nothing_left(&cluster, &rel.ns).await;
}

/// The chart and regcred must not contest any field of the Secret: after
/// regcred writes, `helm upgrade` changes nothing regcred set, and regcred's
/// next write changes nothing the chart set (beyond the credential itself).
#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn helm_and_regcred_do_not_contest_the_secrets_labels() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let rel = release(&cluster).await;
    let out = rel.helm(&cluster, "install").await;
    assert_eq!(out.code, Some(0), "helm install: {out:?}");
    let id = cluster.identity(&rel.ns, &rel.name).await;
    let target = format!("{}/gcr-pull", rel.ns);
    let chart_labels = labels(&cluster.secret(&rel.ns, "gcr-pull").await.unwrap());

    assert_eq!(id.once(&google, &["--secret", &target]).await.code, Some(0));
    let written = labels(&cluster.secret(&rel.ns, "gcr-pull").await.unwrap());
    for (k, v) in &chart_labels {
        assert_eq!(written.get(k), Some(v), "regcred changed the chart's label {k}");
    }
    let out = rel.helm(&cluster, "upgrade").await;
    assert_eq!(out.code, Some(0), "helm upgrade: {out:?}");
    let upgraded = labels(&cluster.secret(&rel.ns, "gcr-pull").await.unwrap());
    assert_eq!(upgraded, written, "helm upgrade changed labels regcred set");
}
