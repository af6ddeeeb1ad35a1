//! The core behaviour, end to end: the real binary against the test kit, or
//! against a real API server with `REGCRED_E2E_DIR` (see `common::backend`).

mod common;

use std::time::{Duration, SystemTime};

use common::{finish, password, read_json, terminate, wait_for, Kit};
use regcred_testkit::Fault;
use serde_json::json;

const DEFAULT_HOSTS: [&str; 5] = ["asia.gcr.io", "eu.gcr.io", "gcr.io", "marketplace.gcr.io", "us.gcr.io"];

#[tokio::test]
async fn once_creates_the_secret() {
    let kit = Kit::start().await;
    let ns = &kit.namespace;
    let out = kit.once(&["--secret", &format!("{ns}/gcr-pull")]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.lines().count(), 1, "one-line summary: {}", out.stdout);
    assert!(out.stdout.contains(&format!("secret {ns}/gcr-pull created")), "{}", out.stdout);

    let secret = kit.kube.secret(ns, "gcr-pull").await.expect("Secret created");
    assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
    assert_eq!(secret["metadata"]["labels"]["app.kubernetes.io/managed-by"], "regcred", "regcred created it");
    assert_eq!(secret["metadata"]["labels"]["regcred.dev/managed"], "true");
    let expires = secret["metadata"]["annotations"]["regcred.dev/expires-at"].as_str().unwrap();
    let expires = humantime::parse_rfc3339(expires).unwrap();
    assert!(expires > SystemTime::now() + Duration::from_secs(3000), "a full-lifetime token");

    let doc = kit.secret_doc(ns, "gcr-pull", ".dockerconfigjson").await.unwrap();
    let token = kit.issued().pop().unwrap();
    let hosts: Vec<&str> = doc["auths"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(hosts, DEFAULT_HOSTS);
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("oauth2accesstoken:{token}"));
    for host in DEFAULT_HOSTS {
        assert_eq!(doc["auths"][host], json!({"username": "oauth2accesstoken", "password": token, "auth": auth}));
    }
}

#[tokio::test]
async fn second_once_updates_and_keeps_foreign_keys_labels_and_annotations() {
    let kit = Kit::start().await;
    let ns = &kit.namespace;
    let theirs = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "gcr-pull", "labels": {"team": "ci"}, "annotations": {"owner": "platform"}},
        "data": {".dockerconfigjson": "eyJhdXRocyI6e319", "extra": "a2VlcA=="}
    });
    kit.kube.put_secret(ns, theirs).await;
    assert_eq!(kit.once(&["--secret", "gcr-pull"]).await.code, Some(0));
    let first = password(&kit.secret_doc(ns, "gcr-pull", ".dockerconfigjson").await.unwrap());
    let out = kit.once(&["--secret", "gcr-pull"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains(&format!("secret {ns}/gcr-pull updated")), "{}", out.stdout);

    let secret = kit.kube.secret(ns, "gcr-pull").await.unwrap();
    let second = password(&kit.secret_doc(ns, "gcr-pull", ".dockerconfigjson").await.unwrap());
    assert_ne!(first, second, "a fresh token each run");
    assert_eq!(second, kit.issued().pop().unwrap());
    assert_eq!(secret["data"]["extra"], "a2VlcA==");
    assert_eq!(secret["metadata"]["labels"]["team"], "ci");
    assert_eq!(secret["metadata"]["labels"]["regcred.dev/managed"], "true");
    assert!(secret["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null(), "regcred did not create it");
    assert_eq!(secret["metadata"]["annotations"]["owner"], "platform");
}

#[tokio::test]
async fn a_secret_labelled_not_managed_is_left_alone() {
    let kit = Kit::start().await;
    let ns = &kit.namespace;
    let theirs = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "gcr-pull", "labels": {"regcred.dev/managed": "false"}},
        "data": {".dockerconfigjson": "eyJhdXRocyI6e319"}
    });
    kit.kube.put_secret(ns, theirs.clone()).await;
    let out = kit.once(&["--secret", "gcr-pull"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.lines().last().unwrap().contains("labelled regcred.dev/managed=false"), "{}", out.stderr);
    let after = kit.kube.secret(ns, "gcr-pull").await.unwrap();
    assert_eq!(after["data"], theirs["data"]);
    assert_eq!(after["metadata"]["labels"], theirs["metadata"]["labels"]);
}

#[tokio::test]
async fn a_placeholder_managed_by_helm_stays_managed_by_helm() {
    let kit = Kit::start().await;
    let ns = &kit.namespace;
    let helm = json!({"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "regcred"});
    let theirs = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "gcr-pull", "labels": helm, "annotations": {"meta.helm.sh/release-name": "regcred"}},
        "data": {".dockerconfigjson": "eyJhdXRocyI6e319"}
    });
    kit.kube.put_secret(ns, theirs).await;
    for _ in 0..2 {
        let out = kit.once(&["--secret", "gcr-pull"]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let labels = &kit.kube.secret(ns, "gcr-pull").await.unwrap()["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{labels}");
        assert_eq!(labels["regcred.dev/managed"], "true", "{labels}");
    }
    let secret = kit.kube.secret(ns, "gcr-pull").await.unwrap();
    assert_eq!(secret["metadata"]["annotations"]["meta.helm.sh/release-name"], "regcred");
}

#[tokio::test]
async fn opaque_secret_under_another_key() {
    let kit = Kit::start().await;
    let ns = &kit.namespace;
    let out = kit
        .once(&[
            "--secret",
            &format!("{ns}/reg"),
            "--secret-key",
            "registry-auth.json",
            "--registry",
            "europe-west1-docker.pkg.dev",
        ])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(kit.kube.secret(ns, "reg").await.unwrap()["type"], "Opaque");
    let doc = kit.secret_doc(ns, "reg", "registry-auth.json").await.unwrap();
    assert_eq!(doc["auths"].as_object().unwrap().len(), 1);
    assert_eq!(doc["auths"]["europe-west1-docker.pkg.dev"]["username"], "oauth2accesstoken");
}

#[tokio::test]
async fn existing_secret_of_another_type_is_reported_not_overwritten() {
    let kit = Kit::start().await;
    let ns = &kit.namespace;
    let theirs = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "gcr-pull"}, "data": {"x": "eQ=="}});
    kit.kube.put_secret(ns, theirs).await;
    let out = kit.once(&["--secret", "gcr-pull"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let last = out.stderr.lines().last().unwrap();
    assert!(
        last.contains("has type Opaque")
            && last.contains("kubernetes.io/dockerconfigjson")
            && last.contains("delete the Secret"),
        "{last}"
    );
    assert_eq!(kit.kube.secret(ns, "gcr-pull").await.unwrap()["data"], json!({"x": "eQ=="}));
}

#[tokio::test]
async fn token_endpoint_failure_keeps_the_last_good_secret() {
    let kit = Kit::start().await;
    let ns = &kit.namespace;
    let file = kit.path("config.json").display().to_string();
    let args = ["--secret", "gcr-pull", "--output-file", &file];
    assert_eq!(kit.once(&args).await.code, Some(0));
    let before = kit.kube.secret(ns, "gcr-pull").await.unwrap();
    let file_before = std::fs::read(kit.path("config.json")).unwrap();

    kit.google.faults().inject(None, "/token", Fault::Status { code: 500, body: None, retry_after: None }, 100);
    let out = kit.once(&args).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let last = out.stderr.lines().last().unwrap();
    assert!(
        last.starts_with("regcred: error: minting a token with the service-account key:") && last.contains("500"),
        "{last}"
    );
    assert_eq!(kit.kube.secret(ns, "gcr-pull").await.unwrap(), before, "Secret untouched");
    assert_eq!(std::fs::read(kit.path("config.json")).unwrap(), file_before, "file untouched");
}

#[tokio::test]
async fn run_rotates_secret_and_file_before_each_token_expires() {
    let kit = Kit::start().await;
    let ns = &kit.namespace;
    let lifetime = Duration::from_secs(3);
    kit.google.set_token_lifetime(lifetime);
    let file = kit.path("config.json");
    let child = kit.daemon(&[
        "--secret",
        "gcr-pull",
        "--output-file",
        &file.display().to_string(),
        "--refresh-before",
        "1s",
        "--jitter",
        "0s",
        "--admin-addr",
        "off",
    ]);

    // Watch the Secret and the file through several rotations, noting when each token first appeared.
    let mut seen: Vec<(String, SystemTime)> = Vec::new();
    wait_for(Duration::from_secs(30), "four distinct tokens in the Secret and the file", async || {
        let secret_tok = kit.secret_doc(ns, "gcr-pull", ".dockerconfigjson").await.map(|d| password(&d));
        let file_tok = read_json(&file).map(|d| password(&d));
        if let (Some(s), Some(f)) = (secret_tok, file_tok) {
            if s == f && seen.last().is_none_or(|(t, _)| *t != s) {
                seen.push((s, SystemTime::now()));
            }
        }
        (seen.len() >= 4).then_some(())
    })
    .await;
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");

    // Each token was replaced in both sinks before it expired.
    let issued = kit.google.issued_tokens();
    for pair in seen.windows(2) {
        let old = issued.iter().find(|t| t.access_token == pair[0].0).unwrap();
        assert!(pair[1].1 < old.expires_at, "token replaced only after it expired");
    }
    // One token per rotation, not a mint storm.
    assert!(issued.len() <= seen.len() + 2, "{} tokens minted for {} rotations", issued.len(), seen.len());
}

#[tokio::test]
async fn deleted_secret_comes_back_at_the_next_resync() {
    let kit = Kit::start().await;
    let ns = &kit.namespace;
    let child = kit.daemon(&["--secret", "gcr-pull", "--resync-interval", "1s", "--admin-addr", "off"]);
    wait_for(Duration::from_secs(20), "the Secret", async || kit.kube.secret(ns, "gcr-pull").await).await;
    kit.kube.delete_object(ns, "secrets", "gcr-pull").await;
    wait_for(Duration::from_secs(10), "the Secret to come back", async || kit.kube.secret(ns, "gcr-pull").await).await;
    assert_eq!(kit.issued().len(), 1, "a resync reuses the current token");
    let (code, _) = terminate(child).await;
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn sigterm_exits_zero_promptly() {
    let kit = Kit::start().await;
    let child = kit.daemon(&["--secret", "gcr-pull", "--admin-addr", "off"]);
    wait_for(Duration::from_secs(20), "the Secret", async || kit.kube.secret(&kit.namespace, "gcr-pull").await).await;
    let started = std::time::Instant::now();
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn metadata_server_is_used_without_a_key_and_honours_gce_metadata_host() {
    let kit = Kit::start().await;
    let file = kit.path("config.json");
    let out = kit.run(&["once", "--output-file", &file.display().to_string()]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let issued = kit.google.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].grant, "metadata");
    assert_eq!(password(&read_json(&file).unwrap()), issued[0].access_token);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn json_key_modes_use_the_key_itself() {
    let kit = Kit::start().await;
    let key = std::fs::read_to_string(kit.path("key.json")).unwrap();
    let out = finish(kit.keyed("render", &["--auth", "json-key", "--registry", "gcr.io"]).spawn().unwrap()).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["auths"]["gcr.io"]["username"], "_json_key");
    assert_eq!(doc["auths"]["gcr.io"]["password"], key);

    let out =
        finish(kit.keyed("render", &["--auth", "json-key-base64", "--registry", "gcr.io"]).spawn().unwrap()).await;
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["auths"]["gcr.io"]["username"], "_json_key_base64");
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.as_bytes());
    assert_eq!(doc["auths"]["gcr.io"]["password"], b64);
    assert!(kit.google.issued_tokens().is_empty(), "no token minted for key modes");
}

#[tokio::test]
async fn no_secret_reaches_the_logs_even_at_trace_level() {
    let kit = Kit::start().await;
    let file = kit.path("config.json").display().to_string();
    let key_text = std::fs::read_to_string(kit.path("key.json")).unwrap();
    let private_key: serde_json::Value = serde_json::from_str(&key_text).unwrap();
    let pem_line = private_key["private_key"].as_str().unwrap().lines().nth(1).unwrap().to_string();
    for format in ["text", "json"] {
        let out = kit
            .once(&["--secret", "gcr-pull", "--output-file", &file, "--log-level", "trace", "--log-format", format])
            .await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.lines().count() > 20, "trace logging is on ({format})");
        let doc = read_json(std::path::Path::new(&file)).unwrap();
        let auth = doc["auths"]["gcr.io"]["auth"].as_str().unwrap().to_string();
        for token in kit.issued() {
            assert!(!all.contains(&token), "access token in the {format} logs");
        }
        assert!(!all.contains(&auth), "auth field in the {format} logs");
        assert!(!all.contains(&pem_line), "private key in the {format} logs");
        assert!(!all.contains("eyJhbGciOiJSUzI1NiIs"), "signed assertion in the {format} logs");
    }
}

#[tokio::test]
async fn sigterm_stops_once_during_retries() {
    let kit = Kit::start().await;
    kit.google.faults().inject(None, "/token", Fault::Hang, 100);
    let child = kit.keyed("once", &["--secret", "gcr-pull"]).spawn().unwrap();
    wait_for(Duration::from_secs(10), "the token request", async || (!kit.google.requests().is_empty()).then_some(()))
        .await;
    let started = std::time::Instant::now();
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.lines().last().unwrap().contains("interrupted"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(kit.kube.secret(&kit.namespace, "gcr-pull").await.is_none());
}

#[tokio::test]
async fn one_failing_sink_does_not_stop_the_others() {
    let kit = Kit::start().await;
    let file = kit.path("config.json");
    let nowhere = kit.name("nowhere");
    let out = kit
        .once(&[
            "--secret",
            &format!("{nowhere}/gcr-pull"),
            "--secret",
            "gcr-pull",
            "--output-file",
            &file.display().to_string(),
        ])
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let last = out.stderr.lines().last().unwrap();
    assert!(last.contains(&format!("namespace {nowhere} does not exist")), "{}", out.stderr);
    let token = kit.issued().pop().unwrap();
    assert_eq!(password(&read_json(&file).expect("the file was written")), token);
    assert_eq!(
        password(
            &kit.secret_doc(&kit.namespace, "gcr-pull", ".dockerconfigjson")
                .await
                .expect("the other Secret was written")
        ),
        token
    );
}

#[tokio::test]
async fn an_unchanged_key_credential_is_not_rewritten() {
    let kit = Kit::start().await;
    let ns = &kit.namespace;
    let args = ["--auth", "json-key", "--secret", "gcr-pull"];
    assert!(kit.once(&args).await.stdout.contains(&format!("secret {ns}/gcr-pull created")));
    let before = kit.kube.secret(ns, "gcr-pull").await.unwrap();
    let out = kit.once(&args).await;
    assert!(out.stdout.contains(&format!("secret {ns}/gcr-pull unchanged")), "{}", out.stdout);
    assert_eq!(
        kit.kube.secret(ns, "gcr-pull").await.unwrap()["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
}

/// Tests that need the emulator: a 409 is injected and requests are counted.
mod emulator_only {
    use super::*;

    #[tokio::test]
    async fn conflict_on_first_update_is_retried() {
        let kit = Kit::start_emulator().await;
        let emulator = kit.emulator();
        assert_eq!(kit.once(&["--secret", "gcr-pull"]).await.code, Some(0));
        emulator.clear_requests();
        emulator.faults().inject(
            Some("PATCH"),
            "/api/v1/namespaces/default/secrets/gcr-pull",
            Fault::Status { code: 409, body: None, retry_after: None },
            1,
        );
        let out = kit.once(&["--secret", "gcr-pull"]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let writes: Vec<(String, u16)> = emulator
            .requests()
            .iter()
            .filter(|r| r.method != "POST" || !r.path.contains("/events"))
            .map(|r| (r.method.clone(), r.status))
            .collect();
        let expected = [("GET", 200), ("PATCH", 409), ("GET", 200), ("PATCH", 200)];
        assert_eq!(writes, expected.map(|(m, s)| (m.to_string(), s)), "read, conflict, read again, write");
        assert_eq!(
            password(&kit.secret_doc("default", "gcr-pull", ".dockerconfigjson").await.unwrap()),
            kit.issued().pop().unwrap()
        );
    }
}
