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
    let config = node.written_config();
    let provider = &config["providers"][0];
    let args: Vec<String> = serde_json::from_value(provider["args"].clone()).unwrap();
    let binary = node.bin().join(provider["name"].as_str().unwrap());
    let mut child = Command::new(binary)
        .args(&args)
        .env_clear()
        .env("HOME", kit.dir.path())
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
