//! End to end, `regcred credential-provider` run by the kubelet's own
//! plugin code (`k8s.io/kubernetes/pkg/credentialprovider/plugin`, through
//! `testkit/control-plane/cmd/credprovider`) with a real
//! CredentialProviderConfig. Pod identity tokens come from the real API
//! server's TokenRequest API, bound to real Pods, as the kubelet asks for
//! them; the test kit's STS verifies them against the API server's OIDC
//! discovery and JWKS. Ignored unless asked for (`--ignored`) with `REGCRED_E2E_DIR`
//! naming a running control plane.

mod common;

use std::path::Path;

use common::e2e::Cluster;
use regcred_testkit::{Aws, Azure, Google};
use serde_json::{json, Value};

const ANNOTATION: &str = "iam.gke.io/gcp-service-account";
const GOOGLE_IMAGES: [&str; 2] = ["gcr.io/p/i:1", "europe-west1-docker.pkg.dev/p/r/i:tag"];
const OTHER_IMAGE: &str = "docker.io/library/nginx:1";

/// A kubelet bin dir holding regcred under the provider's name, and a
/// CredentialProviderConfig whose one provider has `args` and, for pod
/// identity, `tokenAttributes` with `audience`.
fn kubelet_config(dir: &Path, args: &[String], audience: Option<&str>) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let _ = std::fs::remove_file(bin.join("regcred"));
    std::os::unix::fs::symlink(common::BIN, bin.join("regcred")).unwrap();
    let mut provider = json!({
        "name": "regcred",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "matchImages": ["gcr.io", "*.gcr.io", "*-docker.pkg.dev"],
        "defaultCacheDuration": "10m",
        "args": args,
    });
    if let Some(aud) = audience {
        provider["tokenAttributes"] = json!({
            "serviceAccountTokenAudience": aud,
            "cacheType": "ServiceAccount",
            "requireServiceAccount": true,
            "optionalServiceAccountAnnotationKeys": [ANNOTATION],
        });
    }
    let config = dir.join("credential-provider.json");
    let doc =
        json!({"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig", "providers": [provider]});
    std::fs::write(&config, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    config
}

/// Runs the kubelet's plugin code for `pod` (NAMESPACE/NAME) with the
/// Google images and another registry's: one JSON object per round, image →
/// credentials.
async fn kubelet_lookup(
    cluster: &Cluster,
    dir: &Path,
    config: &Path,
    pod: &str,
    rounds: u32,
    interval: &str,
) -> Vec<Value> {
    let images: Vec<&str> = GOOGLE_IMAGES.iter().chain([&OTHER_IMAGE]).copied().collect();
    kubelet_lookup_images(cluster, dir, config, pod, rounds, interval, &images).await
}

/// Runs the kubelet's plugin code for `pod` and `images`, with the bin dir
/// `dir/bin`.
async fn kubelet_lookup_images(
    cluster: &Cluster,
    dir: &Path,
    config: &Path,
    pod: &str,
    rounds: u32,
    interval: &str,
    images: &[&str],
) -> Vec<Value> {
    let mut args = vec![
        "-config".to_string(),
        config.display().to_string(),
        "-bin-dir".into(),
        dir.join("bin").display().to_string(),
        "-kubeconfig".into(),
        cluster.admin_kubeconfig().display().to_string(),
        "-rounds".into(),
        rounds.to_string(),
        "-interval".into(),
        interval.into(),
        pod.into(),
    ];
    args.extend(images.iter().map(|s| s.to_string()));
    let out = tokio::process::Command::new(cluster.dir.join("bin/credprovider"))
        .args(&args)
        .env("HOME", dir)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "credprovider: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The one password the kubelet would use for every Google image; checks
/// that other images get nothing.
fn google_password(round: &Value) -> Option<String> {
    assert_eq!(round[OTHER_IMAGE], json!([]), "no credential for another registry: {round}");
    let passwords: Vec<Option<String>> = GOOGLE_IMAGES
        .iter()
        .map(|i| {
            let creds = round[*i].as_array().unwrap();
            assert!(creds.len() <= 1, "{round}");
            creds.first().map(|c| {
                assert_eq!(c["username"], "oauth2accesstoken");
                c["password"].as_str().unwrap().to_string()
            })
        })
        .collect();
    assert!(passwords.windows(2).all(|w| w[0] == w[1]), "the same credential for every Google host: {round}");
    passwords[0].clone()
}

/// A namespace with a ServiceAccount (annotated when `google_sa` is given)
/// and a Pod running as it; returns NAMESPACE/POD.
async fn pod_as(cluster: &Cluster, ns: &str, sa: &str, google_sa: Option<&str>) -> String {
    let annotations = google_sa.map_or(json!({}), |g| json!({ANNOTATION: g}));
    pod_annotated(cluster, ns, sa, annotations).await
}

/// A ServiceAccount with `annotations` and a Pod running as it; returns
/// NAMESPACE/POD.
async fn pod_annotated(cluster: &Cluster, ns: &str, sa: &str, annotations: Value) -> String {
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns, "annotations": annotations}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": sa, "namespace": ns},
         "spec": {"serviceAccountName": sa, "automountServiceAccountToken": false,
                  "containers": [{"name": "app", "image": GOOGLE_IMAGES[0]}]}},
    ]});
    cluster.kubectl(&["apply", "-f", "-"], &objects.to_string()).await;
    format!("{ns}/{sa}")
}

fn pod_args(google: &Google) -> Vec<String> {
    vec![
        "credential-provider".into(),
        format!("--workload-identity-provider={}", google.sts_audience()),
        format!("--sts-endpoint={}", google.sts_uri()),
        format!("--impersonation-endpoint={}", google.iam_credentials_uri()),
    ]
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn each_pod_pulls_as_its_own_service_account() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    cluster.trust_in_google(&google).await;
    google.allow_impersonation("builder@project-1.iam.gserviceaccount.com");
    google.allow_impersonation("runner@project-1.iam.gserviceaccount.com");
    let ns = cluster.unique("pulls");
    cluster.create_namespace(&ns, &[]).await;
    let builder = pod_as(&cluster, &ns, "builder", Some("builder@project-1.iam.gserviceaccount.com")).await;
    let runner = pod_as(&cluster, &ns, "runner", Some("runner@project-1.iam.gserviceaccount.com")).await;
    let plain = pod_as(&cluster, &ns, "plain", None).await;
    let dir = tempfile::tempdir().unwrap();
    let audience = format!("https:{}", google.sts_audience());
    let config = kubelet_config(dir.path(), &pod_args(&google), Some(&audience));

    let issued = |password: &str| google.issued_tokens().into_iter().find(|t| t.access_token == password).unwrap();
    let b = google_password(&kubelet_lookup(&cluster, dir.path(), &config, &builder, 1, "0s").await[0]).unwrap();
    let r = google_password(&kubelet_lookup(&cluster, dir.path(), &config, &runner, 1, "0s").await[0]).unwrap();
    let p = google_password(&kubelet_lookup(&cluster, dir.path(), &config, &plain, 1, "0s").await[0]).unwrap();
    assert_eq!(
        (issued(&b).grant, issued(&b).subject),
        ("impersonation".into(), "builder@project-1.iam.gserviceaccount.com".into())
    );
    assert_eq!(
        (issued(&r).grant, issued(&r).subject),
        ("impersonation".into(), "runner@project-1.iam.gserviceaccount.com".into())
    );
    let federated = issued(&p);
    assert_eq!(federated.grant, "sts", "without the annotation, the federated token itself");
    assert!(federated.subject.ends_with(&format!("system:serviceaccount:{ns}:plain")), "{}", federated.subject);
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn a_token_for_another_audience_is_refused_and_the_pull_gets_nothing() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    cluster.trust_in_google(&google).await;
    let ns = cluster.unique("refused");
    cluster.create_namespace(&ns, &[]).await;
    let pod = pod_as(&cluster, &ns, "app", None).await;
    let dir = tempfile::tempdir().unwrap();
    // The kubelet asks for a token the pool provider does not accept.
    let config = kubelet_config(dir.path(), &pod_args(&google), Some("https://not-the-pool.example"));
    let rounds = kubelet_lookup(&cluster, dir.path(), &config, &pod, 1, "0s").await;
    assert_eq!(google_password(&rounds[0]), None, "no credential: {}", rounds[0]);
    assert!(google.issued_tokens().is_empty(), "STS refused the exchange");
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn the_kubelet_caches_for_the_duration_regcred_returns() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    cluster.trust_in_google(&google).await;
    // 8-second tokens: regcred tells the kubelet to cache for half that, 4 s.
    google.set_token_lifetime(std::time::Duration::from_secs(8));
    let ns = cluster.unique("cached");
    cluster.create_namespace(&ns, &[]).await;
    let pod = pod_as(&cluster, &ns, "app", None).await;
    let dir = tempfile::tempdir().unwrap();
    let audience = format!("https:{}", google.sts_audience());
    let config = kubelet_config(dir.path(), &pod_args(&google), Some(&audience));
    // One kubelet, lookups at 0 s, 1 s and 2 s: all from its cache.
    let rounds = kubelet_lookup(&cluster, dir.path(), &config, &pod, 3, "1s").await;
    let first = google_password(&rounds[0]).unwrap();
    assert_eq!(google_password(&rounds[1]).unwrap(), first);
    assert_eq!(google_password(&rounds[2]).unwrap(), first);
    assert_eq!(google.issued_tokens().len(), 1, "one exchange while cached");
    // Another kubelet, lookups 5 s apart: past the 4 s, regcred runs again.
    let spaced = kubelet_lookup(&cluster, dir.path(), &config, &pod, 2, "5s").await;
    let (a, b) = (google_password(&spaced[0]).unwrap(), google_password(&spaced[1]).unwrap());
    assert_ne!(a, b, "a fresh credential once the cache duration has passed");
    assert_eq!(google.issued_tokens().len(), 3);
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn node_identity_without_token_attributes() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    google.write_key_file(&key);
    let args = vec!["credential-provider".to_string(), format!("--key-file={}", key.display())];
    let config = kubelet_config(dir.path(), &args, None);
    let ns = cluster.unique("node");
    cluster.create_namespace(&ns, &[]).await;
    let pod = pod_as(&cluster, &ns, "app", None).await;
    let rounds = kubelet_lookup(&cluster, dir.path(), &config, &pod, 1, "0s").await;
    let password = google_password(&rounds[0]).unwrap();
    let token = google.issued_tokens().pop().unwrap();
    assert_eq!((token.grant.as_str(), token.access_token), ("jwt-bearer", password));
}

/// The DaemonSet's container args, as the real API server accepts the
/// DaemonSet the chart renders for `values` (server-side dry run).
async fn installer_args(cluster: &Cluster, ns: &str, values: &Value) -> Vec<String> {
    let rendered = cluster.helm_template("node", ns, values).await;
    let daemonset = common::e2e::select_kinds(&rendered, &["DaemonSet"]);
    assert!(daemonset.contains("kind: DaemonSet"), "the chart renders the installer:\n{rendered}");
    let accepted = cluster.kubectl(&["apply", "--dry-run=server", "-o", "json", "-n", ns, "-f", "-"], &daemonset).await;
    let accepted: Value = serde_json::from_str(&accepted).unwrap();
    serde_json::from_value(accepted["spec"]["template"]["spec"]["containers"][0]["args"].clone()).unwrap()
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn the_kubelet_runs_what_the_charts_installer_put_on_the_node() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    cluster.trust_in_google(&google).await;
    google.allow_impersonation("builder@project-1.iam.gserviceaccount.com");
    let ns = cluster.unique("installed");
    cluster.create_namespace(&ns, &[]).await;
    let builder = pod_as(&cluster, &ns, "builder", Some("builder@project-1.iam.gserviceaccount.com")).await;
    let plain = pod_as(&cluster, &ns, "plain", None).await;

    // The node: the kubelet's bin dir and the config's directory, as the
    // DaemonSet's hostPath volumes (DirectoryOrCreate) leave them.
    let node = tempfile::tempdir().unwrap();
    let (bin_dir, config) = (node.path().join("bin"), node.path().join("etc/credential-provider.json"));
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let values = json!({
        "mode": "none",
        "credentialProvider": {
            "workloadIdentityProvider": google.sts_audience(),
            "extraArgs": [format!("--sts-endpoint={}", google.sts_uri()),
                          format!("--impersonation-endpoint={}", google.iam_credentials_uri())],
            "nodeInstaller": {"enabled": true, "binDir": bin_dir, "configFile": config},
        },
    });
    let args = installer_args(&cluster, &ns, &values).await;
    assert_eq!(args[0], "install-credential-provider", "{args:?}");

    // The image's entrypoint is regcred: run it with the DaemonSet's args.
    let installer = tokio::process::Command::new(common::BIN)
        .args(&args)
        .env_clear()
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    common::wait_for(std::time::Duration::from_secs(60), "the installer's config", async || {
        config.exists().then_some(())
    })
    .await;

    // The kubelet's own plugin code, with the config and bin dir the
    // installer wrote (no hand-written config, no symlink).
    let b = kubelet_lookup(&cluster, node.path(), &config, &builder, 1, "0s").await;
    let p = kubelet_lookup(&cluster, node.path(), &config, &plain, 1, "0s").await;
    let b = google_password(&b[0]).expect("the builder pod gets a credential");
    let p = google_password(&p[0]).expect("the plain pod gets a credential");
    let issued = |password: &str| google.issued_tokens().into_iter().find(|t| t.access_token == password).unwrap();
    assert_eq!(
        (issued(&b).grant, issued(&b).subject),
        ("impersonation".into(), "builder@project-1.iam.gserviceaccount.com".into())
    );
    assert!(issued(&p).subject.ends_with(&format!("system:serviceaccount:{ns}:plain")), "{}", issued(&p).subject);
    assert!(std::fs::symlink_metadata(bin_dir.join("regcred")).unwrap().file_type().is_file(), "a copy, not a link");

    let (code, stderr) = common::terminate(installer).await;
    assert_eq!(code, Some(0), "the installer stops cleanly on SIGTERM: {stderr}");
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn the_kubelet_runs_one_installed_entry_per_cloud_each_with_its_own_audience() {
    // One cluster issuer, trusted by the three clouds' exchanges, each for
    // its own audience only.
    let cluster = Cluster::get().await;
    let (google, aws, azure) = (Google::start().await, Aws::start().await, Azure::start().await);
    cluster.trust_in_google(&google).await;
    let (issuer, jwks) = cluster.oidc_issuer().await;
    aws.trust_oidc_issuer(&issuer, &jwks, "sts.amazonaws.com");
    azure.trust_issuer(&issuer, &jwks);
    let ns = cluster.unique("clouds");
    cluster.create_namespace(&ns, &[]).await;
    let role = "arn:aws:iam::111122223333:role/app-puller";
    aws.allow_role(role);
    let app = azure.create_app();
    azure.add_federated_credential(&app, &issuer, &format!("system:serviceaccount:{ns}:puller"));
    azure.allow_pull(&app);
    let puller = pod_annotated(
        &cluster,
        &ns,
        "puller",
        json!({"eks.amazonaws.com/role-arn": role, "kubernetes.azure.com/acr-client-id": app}),
    )
    .await;
    let plain = pod_as(&cluster, &ns, "plain", None).await;

    // The installer, as the chart's DaemonSet runs it, for all three clouds.
    let node = tempfile::tempdir().unwrap();
    let config = node.path().join("etc/credential-provider.json");
    std::fs::create_dir_all(node.path().join("bin")).unwrap();
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let out = tokio::process::Command::new(common::BIN)
        .arg("install-credential-provider")
        .arg(format!("--bin-dir={}", node.path().join("bin").display()))
        .arg(format!("--config={}", config.display()))
        .args(["--exit-after-install", "--ecr-pod-identity", "--acr-pod-identity"])
        .arg(format!("--workload-identity-provider={}", google.sts_audience()))
        .arg("--")
        .arg(format!("--sts-endpoint={}", google.sts_uri()))
        .arg(format!("--aws-sts-endpoint={}", aws.url()))
        .arg(format!("--aws-ecr-endpoint={}", aws.url()))
        .arg(format!("--azure-authority-host={}", azure.url()))
        .arg(format!("--azure-registry-endpoint={}", azure.url()))
        .arg(format!("--azure-tenant-id={}", azure.tenant_id()))
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "installer: {}", String::from_utf8_lossy(&out.stderr));

    // The kubelet's own code registers the three entries (unique names, a
    // file for each) and asks the API server for a token of each entry's
    // audience, bound to the pod.
    let ecr = "111122223333.dkr.ecr.eu-west-1.amazonaws.com";
    let acr = azure.login_server();
    let images = ["gcr.io/p/i:1".to_string(), format!("{ecr}/team/app:1"), format!("{acr}/team/app:1")];
    let images: Vec<&str> = images.iter().map(String::as_str).collect();
    let round = kubelet_lookup_images(&cluster, node.path(), &config, &puller, 1, "0s", &images).await.remove(0);
    let one = |image: &str| {
        let creds = round[image].as_array().unwrap_or_else(|| panic!("{image}: {round}"));
        assert_eq!(creds.len(), 1, "one credential, from its cloud's entry alone: {round}");
        (creds[0]["username"].as_str().unwrap().to_string(), creds[0]["password"].as_str().unwrap().to_string())
    };
    let (_, password) = one(images[0]);
    let issued = google.issued_tokens().into_iter().find(|t| t.access_token == password).expect("issued by STS");
    assert!(issued.subject.ends_with(&format!("system:serviceaccount:{ns}:puller")), "{}", issued.subject);
    let (username, password) = one(images[1]);
    assert_eq!(username, "AWS");
    let token = aws.current_ecr_token(&password).expect("an ECR token AWS issued");
    assert!(token.principal.starts_with("arn:aws:sts::111122223333:assumed-role/app-puller/"), "{token:?}");
    let (username, password) = one(images[2]);
    assert_eq!(username, "00000000-0000-0000-0000-000000000000");
    let refresh = azure.issued_tokens().into_iter().find(|t| t.token == password && t.kind == "acr_refresh");
    assert_eq!(refresh.expect("an ACR refresh token Entra ID's identity got").client_id, app);

    // A ServiceAccount that names no role and no identity: Google's
    // federated token still, nothing for ECR or ACR (regcred refuses; the
    // kubelet logs it and pulls without a credential from that entry).
    let round = kubelet_lookup_images(&cluster, node.path(), &config, &plain, 1, "0s", &images).await.remove(0);
    assert_eq!(round[images[0]].as_array().map(Vec::len), Some(1), "{round}");
    assert_eq!(round[images[1]], json!([]), "{round}");
    assert_eq!(round[images[2]], json!([]), "{round}");
}
