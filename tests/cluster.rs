//! Against a real Kubernetes cluster (opt-in): `KUBECONFIG=... cargo test --test cluster -- --ignored`.
//!
//! Google is still the test kit's emulation (no real Google credentials are
//! needed); what this adds is the real API server's validation, RBAC and
//! concurrency rules for the Secret regcred writes. The test creates and
//! deletes one uniquely named Secret in the kubeconfig's current namespace.

mod common;

use std::process::Stdio;

use k8s_openapi::api::core::v1::Secret;
use kube::api::DeleteParams;
use kube::Api;
use regcred_testkit::Google;

#[tokio::test]
#[ignore = "needs a real cluster: set KUBECONFIG and run with --ignored"]
async fn once_writes_a_secret_a_real_api_server_accepts() {
    let kubeconfig = std::env::var_os("KUBECONFIG").expect("KUBECONFIG points at a test cluster");
    let google = Google::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    google.write_key_file(&key);
    let name = format!("regcred-e2e-{}", std::process::id());

    let run = || {
        tokio::process::Command::new(common::BIN)
            .args(["once", "--key-file", key.to_str().unwrap(), "--secret", &name])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
    };
    let first = run().await.unwrap();
    let second = run().await.unwrap();

    let client = kube::Client::try_default().await.unwrap();
    let api: Api<Secret> = Api::default_namespaced(client);
    let secret = api.get(&name).await;
    let _ = api.delete(&name, &DeleteParams::default()).await;

    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(second.status.code(), Some(0), "{}", String::from_utf8_lossy(&second.stderr));
    let secret = secret.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    let doc: serde_json::Value = serde_json::from_slice(&secret.data.unwrap()[".dockerconfigjson"].0).unwrap();
    let last_token = google.issued_tokens().pop().unwrap().access_token;
    assert_eq!(doc["auths"]["gcr.io"]["password"], last_token.as_str());
}
