//! `regcred install-credential-provider`: the real binary copies itself into
//! a kubelet bin dir and writes the kubelet's CredentialProviderConfig; the
//! copy, run as that config says, answers the kubelet.

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{Kit, Output};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// A node's directories: `bin` (the kubelet's bin dir) and `etc`.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        Node { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("etc/credential-provider.json")
    }

    /// `regcred install-credential-provider --bin-dir BIN --config CONFIG ARGS`,
    /// with an empty environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(common::BIN);
        cmd.arg("install-credential-provider")
            .arg(format!("--bin-dir={}", self.bin().display()))
            .arg(format!("--config={}", self.config().display()))
            .args(args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn install(&self, args: &[&str]) -> Output {
        let mut all = vec!["--exit-after-install"];
        all.extend_from_slice(args);
        common::finish(self.command(&all).spawn().unwrap()).await
    }

    fn written_config(&self) -> Value {
        common::read_json(&self.config()).expect("the config is JSON")
    }
}

fn pool_flags(kit: &Kit) -> Vec<String> {
    vec![
        format!("--workload-identity-provider={}", kit.google.sts_audience()),
        "--".into(),
        format!("--sts-endpoint={}", kit.google.sts_uri()),
        format!("--impersonation-endpoint={}", kit.google.iam_credentials_uri()),
    ]
}

/// Runs the installed binary as the kubelet would: the config's `args`, the
/// request on stdin.
async fn run_as_the_kubelet_would(kit: &Kit, node: &Node, request: &Value) -> Output {
    exec_entry(node, &node.written_config()["providers"][0], kit.dir.path(), request).await
}

/// Runs the file the config entry `entry` names with its `args`, in an
/// environment holding only `HOME`, `request` on stdin.
async fn exec_entry(node: &Node, entry: &Value, home: &Path, request: &Value) -> Output {
    let args: Vec<String> = serde_json::from_value(entry["args"].clone()).unwrap();
    let mut child = Command::new(node.bin().join(entry["name"].as_str().unwrap()))
        .args(&args)
        .env_clear()
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    common::finish(child).await
}

#[tokio::test]
async fn installs_a_copy_that_answers_the_kubelet_with_the_written_config() {
    let kit = Kit::start().await;
    let node = Node::new();
    let flags = pool_flags(&kit);
    let out = node.install(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    let copy = node.bin().join("regcred");
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(common::BIN).unwrap(), "a byte-for-byte copy");
    assert_eq!(std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777, 0o755);
    let pool = kit.google.sts_audience();
    assert_eq!(
        node.written_config(),
        json!({
            "apiVersion": "kubelet.config.k8s.io/v1",
            "kind": "CredentialProviderConfig",
            "providers": [{
                "name": "regcred",
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "matchImages": ["gcr.io", "*.gcr.io", "*-docker.pkg.dev"],
                "defaultCacheDuration": "10m",
                "args": ["credential-provider", format!("--workload-identity-provider={pool}"), &flags[2], &flags[3]],
                "tokenAttributes": {
                    "serviceAccountTokenAudience": format!("https:{pool}"),
                    "cacheType": "ServiceAccount",
                    "requireServiceAccount": true,
                    "optionalServiceAccountAnnotationKeys": ["iam.gke.io/gcp-service-account"],
                },
            }],
        })
    );

    // The copy, with the config's args, exchanges a pod's token.
    let token = "eyJ.puller.sig";
    kit.google.accept_subject_token(token);
    let request = json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderRequest",
                         "image": "gcr.io/p/i:1", "serviceAccountToken": token, "serviceAccountAnnotations": {}});
    let out = run_as_the_kubelet_would(&kit, &node, &request).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let response: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(response["auth"]["gcr.io"]["password"], json!(kit.issued().pop().unwrap()));
}

#[tokio::test]
async fn installing_again_rewrites_nothing_and_repairs_what_changed() {
    let node = Node::new();
    let key = ["--", "--key-file=/etc/kubernetes/regcred/key.json"];
    assert_eq!(node.install(&key).await.code, Some(0));
    let (bin, config) = (node.bin().join("regcred"), node.config());
    let stamp = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec())
    };
    let before = (stamp(&bin), stamp(&config));
    let out = node.install(&key).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!((stamp(&bin), stamp(&config)), before, "identical files are left alone");
    assert!(out.stderr.contains("unchanged"), "{}", out.stderr);
    assert_eq!(std::fs::read_dir(node.bin()).unwrap().count(), 1, "no temporary file left in the bin dir");

    // Another identity replaces the config; a tampered binary is restored.
    std::fs::write(&bin, b"#!/bin/sh\nexit 1\n").unwrap();
    let out = node.install(&["--workload-identity-provider=//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kubelet"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(common::BIN).unwrap());
    assert_eq!(node.written_config()["providers"][0]["tokenAttributes"]["cacheType"], "ServiceAccount");
}

#[tokio::test]
async fn a_bad_bin_dir_is_one_line_naming_it_and_exit_2() {
    let node = Node::new();
    let missing = node.dir.path().join("nope");
    let out = common::finish(
        Command::new(common::BIN)
            .args(["install-credential-provider", "--exit-after-install"])
            .arg(format!("--bin-dir={}", missing.display()))
            .arg(format!("--config={}", node.config().display()))
            .env_clear()
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
    .await;
    assert_eq!(out.code, Some(2));
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains(&format!("--bin-dir {}", missing.display())), "{}", out.stderr);
    assert!(out.stderr.contains("does not exist") && out.stderr.contains("hostPath"), "{}", out.stderr);
    assert!(!node.config().exists(), "nothing written");

    // A file where the directory should be.
    std::fs::remove_dir(node.bin()).unwrap();
    std::fs::write(node.bin(), "").unwrap();
    let out = node.install(&[]).await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("is not a directory"), "{}", out.stderr);
}

/// `install-credential-provider ARGS` with an empty environment: what it printed.
async fn install_with(args: &[String]) -> Output {
    let mut cmd = Command::new(common::BIN);
    cmd.args(["install-credential-provider", "--exit-after-install"]).args(args).env_clear().stderr(Stdio::piped());
    common::finish(cmd.spawn().unwrap()).await
}

/// The installer runs as root on the node: paths that could lead its writes
/// somewhere else than where the kubelet reads are refused, in one line that
/// names the flag, before anything is written.
#[tokio::test]
async fn paths_that_lead_elsewhere_are_refused_before_anything_is_written() {
    let node = Node::new();
    let (bin, config) = (node.bin().display().to_string(), node.config().display().to_string());
    let elsewhere = node.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let link = node.dir.path().join("link");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let link = link.display().to_string();
    let etc = node.dir.path().join("etc").display().to_string();
    let dot_dot = format!("{bin}/../elsewhere");
    let cases: Vec<([String; 2], &str, &str)> = vec![
        ([format!("--bin-dir={dot_dot}"), format!("--config={config}")], "--bin-dir", "without `..`"),
        ([format!("--bin-dir={bin}"), format!("--config={etc}/../elsewhere/c.json")], "--config", "without `..`"),
        ([format!("--bin-dir={link}"), format!("--config={config}")], "--bin-dir", "is a symbolic link"),
        ([format!("--bin-dir={bin}"), format!("--config={etc}")], "--config", "is a directory"),
    ];
    for (args, flag, expected) in &cases {
        let out = install_with(args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line: {}", out.stderr);
        assert!(lines[0].starts_with(&format!("regcred: error: {flag} ")), "{args:?}: {}", lines[0]);
        assert!(lines[0].contains(expected), "{args:?}: {}", lines[0]);
        for dir in [node.bin(), elsewhere.clone(), node.dir.path().join("etc")] {
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{args:?}: nothing written in {}", dir.display());
        }
    }

    // A symbolic link where a file goes is not followed: the installer would
    // write through it, wherever it points.
    std::os::unix::fs::symlink(elsewhere.join("regcred"), node.bin().join("regcred")).unwrap();
    let out = node.install(&[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("regcred is a symbolic link; remove it"), "{}", out.stderr);
    std::fs::remove_file(node.bin().join("regcred")).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("c.json"), node.config()).unwrap();
    let out = node.install(&[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("credential-provider.json is a symbolic link"), "{}", out.stderr);
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0, "nothing written through a link");
    assert_eq!(std::fs::read_dir(node.bin()).unwrap().count(), 0, "nothing written before the check");
}

#[tokio::test]
async fn provider_flags_regcred_refuses_are_refused_before_the_config_is_written() {
    let node = Node::new();
    let out = node.install(&["--", "--registry=docker.io"]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("--registry=docker.io") && out.stderr.contains("docker.io"), "{}", out.stderr);
    assert!(!node.config().exists(), "the kubelet never gets a config it would fail with");

    let out = node.install(&["--workload-identity-provider=pool"]).await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("invalid value 'pool' for '--workload-identity-provider"), "{}", out.stderr);

    // --dry-run checks the same, and writes nothing.
    let node = Node::new();
    let dry = common::finish(node.command(&["--dry-run", "--", "--bogus"]).spawn().unwrap()).await;
    assert_eq!(dry.code, Some(2), "{}", dry.stderr);
    let dry = common::finish(node.command(&["--dry-run", "--", "--key-file=/k.json"]).spawn().unwrap()).await;
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    assert_eq!(std::fs::read_dir(node.bin()).unwrap().count(), 0, "--dry-run writes nothing");
}

#[tokio::test]
async fn stays_running_puts_removed_files_back_and_exits_0_on_sigterm() {
    let node = Node::new();
    let child = node.command(&["--recheck-interval=1s"]).spawn().unwrap();
    let config = node.config();
    common::wait_for(Duration::from_secs(30), "the config", async || config.exists().then_some(())).await;
    let bin = node.bin().join("regcred");
    std::fs::remove_file(&bin).unwrap();
    std::fs::remove_file(&config).unwrap();
    common::wait_for(Duration::from_secs(30), "the files to come back", async || {
        (bin.exists() && config.exists()).then_some(())
    })
    .await;
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(common::BIN).unwrap());
    let (code, stderr) = common::terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("put them back"), "{stderr}");
}

/// Claims of a ServiceAccount token for `apps/puller`, as the kubelet
/// requests one for an entry: audience `audience`, from `issuer`.
fn pod_token_claims(issuer: &str, audience: &str) -> Value {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    json!({"iss": issuer, "aud": [audience], "sub": "system:serviceaccount:apps:puller", "iat": now, "nbf": now,
           "exp": now + 3600, "kubernetes.io": {"namespace": "apps", "serviceaccount": {"name": "puller"}}})
}

/// Runs the binary the entry `name` of the installed config names, with
/// that entry's `args`, as the kubelet would for a pod: the request carries
/// a token with the entry's own audience, signed by `sign`.
async fn run_entry(node: &Node, name: &str, image: &str, sign: &dyn Fn(&str) -> String, annotations: Value) -> Output {
    let config = node.written_config();
    let entry = config["providers"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    let audience = entry["tokenAttributes"]["serviceAccountTokenAudience"].as_str().unwrap();
    let request = json!({"apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderRequest",
                         "image": image, "serviceAccountToken": sign(audience), "serviceAccountAnnotations": annotations});
    exec_entry(node, &entry, node.dir.path(), &request).await
}

/// Google, Amazon ECR and Azure Container Registry with each pod's own
/// identity, side by side from one install: one file and one entry per
/// cloud, each asking for a token with its cloud's audience. One cluster
/// issuer signs every token; each cloud's token exchange (the test kit's
/// Google STS, AWS STS and Entra ID) accepts only its own audience, so each
/// entry pulls only if the installer wrote the audience that cloud expects.
#[tokio::test]
async fn installs_one_entry_per_cloud_for_google_ecr_and_acr_pod_identity() {
    let kit = Kit::start().await;
    let aws = regcred_testkit::Aws::start().await;
    let azure = regcred_testkit::Azure::start().await;
    let (issuer, jwks) = (azure.cluster_issuer(), azure.cluster_jwks());
    kit.google.trust_oidc_issuer(&issuer, &jwks, &[]);
    aws.trust_oidc_issuer(&issuer, &jwks, "sts.amazonaws.com");
    let sign = |audience: &str| azure.sign_service_account_token(&pod_token_claims(&issuer, audience));

    let node = Node::new();
    let pool = kit.google.sts_audience();
    let provider_args = [
        format!("--sts-endpoint={}", kit.google.sts_uri()),
        format!("--aws-sts-endpoint={}", aws.url()),
        format!("--aws-ecr-endpoint={}", aws.url()),
        format!("--azure-authority-host={}", azure.url()),
        format!("--azure-registry-endpoint={}", azure.url()),
        format!("--azure-tenant-id={}", azure.tenant_id()),
    ];
    let mut flags = vec![
        format!("--workload-identity-provider={pool}"),
        "--ecr-pod-identity".into(),
        "--acr-pod-identity".into(),
        "--".into(),
    ];
    flags.extend(provider_args.iter().cloned());
    let out = node.install(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    // One file per entry, the entry's name: the same executable, linked.
    let names = ["regcred", "regcred-ecr", "regcred-acr"];
    let mut listed: Vec<String> =
        std::fs::read_dir(node.bin()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    listed.sort();
    assert_eq!(listed, ["regcred", "regcred-acr", "regcred-ecr"], "no other file, no temporary one");
    let copy = node.bin().join("regcred");
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(common::BIN).unwrap(), "a byte-for-byte copy");
    for name in names {
        let meta = std::fs::symlink_metadata(node.bin().join(name)).unwrap();
        assert!(meta.file_type().is_file(), "{name}: a file, not a symbolic link");
        assert_eq!(meta.permissions().mode() & 0o777, 0o755, "{name}");
        assert_eq!(meta.ino(), std::fs::metadata(&copy).unwrap().ino(), "{name}: one file on the node's disk");
    }
    let entry = |name: &str, images: Value, args: Vec<String>, audience: String, keys: Value| {
        json!({
            "name": name,
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "matchImages": images,
            "defaultCacheDuration": "10m",
            "args": args,
            "tokenAttributes": {"serviceAccountTokenAudience": audience, "cacheType": "ServiceAccount",
                                "requireServiceAccount": true, "optionalServiceAccountAnnotationKeys": keys},
        })
    };
    let args = |first: &[String]| -> Vec<String> {
        let mut all = vec!["credential-provider".to_string()];
        all.extend_from_slice(first);
        all.extend(provider_args.iter().cloned());
        all
    };
    assert_eq!(
        node.written_config(),
        json!({
            "apiVersion": "kubelet.config.k8s.io/v1",
            "kind": "CredentialProviderConfig",
            "providers": [
                entry("regcred", json!(["gcr.io", "*.gcr.io", "*-docker.pkg.dev"]),
                      args(&[format!("--workload-identity-provider={pool}")]), format!("https:{pool}"),
                      json!(["iam.gke.io/gcp-service-account"])),
                entry("regcred-ecr", json!(["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn",
                                            "*.dkr.ecr-fips.*.amazonaws.com", "public.ecr.aws"]),
                      args(&[]), "sts.amazonaws.com".into(),
                      json!(["eks.amazonaws.com/ecr-role-arn", "eks.amazonaws.com/role-arn"])),
                entry("regcred-acr", json!(["*.azurecr.io", "*.azurecr.cn", "*.azurecr.us"]),
                      args(&[]), "api://AzureADTokenExchange".into(),
                      json!(["kubernetes.azure.com/acr-client-id", "kubernetes.azure.com/acr-tenant-id"])),
            ],
        })
    );

    // Google: the pod's token exchanged at STS.
    let out = run_entry(&node, "regcred", "gcr.io/p/i:1", &sign, json!({})).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let google = kit.issued().pop().expect("STS issued a token");
    assert_eq!(v["auth"]["gcr.io"]["password"], json!(google));

    // ECR: the role the ServiceAccount names, assumed with the pod's token.
    let role = "arn:aws:iam::111122223333:role/app-puller";
    aws.allow_role(role);
    let ecr = "111122223333.dkr.ecr.eu-west-1.amazonaws.com";
    let out = run_entry(
        &node,
        "regcred-ecr",
        &format!("{ecr}/team/app:1"),
        &sign,
        json!({"eks.amazonaws.com/role-arn": role}),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let token = aws.current_ecr_token(v["auth"][ecr]["password"].as_str().unwrap()).expect("an ECR token AWS issued");
    assert!(token.principal.starts_with("arn:aws:sts::111122223333:assumed-role/app-puller/"), "{token:?}");

    // ACR: the identity the ServiceAccount names, the pod's token as its
    // federated credential.
    let app = azure.create_app();
    azure.add_federated_credential(&app, &issuer, "system:serviceaccount:apps:puller");
    azure.allow_pull(&app);
    let acr = azure.login_server();
    let out = run_entry(
        &node,
        "regcred-acr",
        &format!("{acr}/team/app:1"),
        &sign,
        json!({"kubernetes.azure.com/acr-client-id": app}),
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let password = v["auth"][acr.as_str()]["password"].as_str().unwrap();
    let refresh = azure.issued_tokens().into_iter().find(|t| t.token == password && t.kind == "acr_refresh").unwrap();
    assert_eq!(refresh.client_id, app, "the pod's identity");

    // A ServiceAccount that names no role: refused in one line naming the
    // annotations, never answered with the node's identity.
    let out = run_entry(&node, "regcred-ecr", &format!("{ecr}/team/app:1"), &sign, json!({})).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("eks.amazonaws.com/ecr-role-arn nor an eks.amazonaws.com/role-arn"), "{}", out.stderr);
    assert!(!aws.issued_keys().iter().any(|k| k.source == "imds"), "the node's identity was never used");

    // Entra ID refuses a token with another cloud's audience: each entry's
    // audience is its own cloud's.
    let ecr_audience = |_: &str| sign("sts.amazonaws.com");
    let out = run_entry(
        &node,
        "regcred-acr",
        &format!("{acr}/team/app:2"),
        &ecr_audience,
        json!({"kubernetes.azure.com/acr-client-id": app}),
    )
    .await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "no credential: {}", out.stdout);

    // Installing again changes nothing; a missing or replaced name is put back.
    let stamp = |name: &str| std::fs::symlink_metadata(node.bin().join(name)).unwrap().ino();
    let out = node.install(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("regcred-ecr unchanged") && out.stderr.contains("regcred-acr unchanged"),
        "{}",
        out.stderr
    );
    std::fs::remove_file(node.bin().join("regcred-acr")).unwrap();
    std::fs::remove_file(node.bin().join("regcred-ecr")).unwrap();
    std::fs::write(node.bin().join("regcred-ecr"), b"#!/bin/sh\nexit 1\n").unwrap();
    let out = node.install(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("regcred-ecr updated") && out.stderr.contains("regcred-acr created"), "{}", out.stderr);
    assert!(names.iter().all(|n| stamp(n) == stamp("regcred")), "every name is the copy again");
}

/// Node and pod identity for the same cloud, or an audience without its
/// cloud's pod identity: refused in one line with the CLI's usage exit
/// code, before anything is written.
#[tokio::test]
async fn contradictory_identity_flags_are_one_line_and_exit_2() {
    let node = Node::new();
    for (args, needle) in [
        (&["--match-ecr", "--ecr-pod-identity"][..], "'--match-ecr' cannot be used with '--ecr-pod-identity'"),
        (&["--match-acr", "--acr-pod-identity"], "'--match-acr' cannot be used with '--acr-pod-identity'"),
        (&["--ecr-token-audience=sts.amazonaws.com"], "required arguments were not provided: --ecr-pod-identity"),
        (
            &["--acr-token-audience=api://AzureADTokenExchange"],
            "required arguments were not provided: --acr-pod-identity",
        ),
        (&["--match-acr", "--acr-token-audience=api://x"], "cannot be used with"),
        (&["--ecr-pod-identity", "--ecr-token-audience=sts amazonaws"], "' ' is not allowed"),
    ] {
        let out = node.install(args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line: {}", out.stderr);
        assert!(lines[0].starts_with("regcred: error: ") && lines[0].contains(needle), "{args:?}: {}", lines[0]);
        assert_eq!(std::fs::read_dir(node.bin()).unwrap().count(), 0, "{args:?}: nothing written");
        assert!(!node.config().exists(), "{args:?}");
    }
}
