//! End to end, workload identity federation with a real identity: the
//! subject token is a ServiceAccount token from the real API server's
//! TokenRequest API, and the test kit's STS verifies it as Google verifies
//! an OIDC provider's tokens, against the API server's own OIDC discovery
//! document and JWKS (signature, issuer, audience, expiry). Ignored unless asked for
//! (`--ignored`) with `REGCRED_E2E_DIR` naming a running control plane.

mod common;

use std::path::Path;
use std::time::Duration;

use common::e2e::{eventually, password_for, Cluster, Identity};
use common::terminate;
use regcred_testkit::Google;
use serde_json::{json, Value};

/// The federation file: the projected token at `token_file`, exchanged at
/// the kit's STS for the kit's provider.
fn external_account(google: &Google, token_file: &Path) -> Value {
    json!({
        "type": "external_account",
        "audience": google.sts_audience(),
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": google.sts_uri(),
        "credential_source": {"file": token_file, "format": {"type": "text"}},
    })
}

/// Writes a file the way the kubelet rotates a projected token.
fn replace_file(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn setup(cluster: &Cluster, google: &Google) -> (String, Identity, String) {
    let ns = cluster.unique("federated");
    cluster.create_namespace(&ns, &[]).await;
    let values = json!({"targets": {"secrets": [{"name": "gcr-pull", "namespace": ns}], "createSecrets": true}});
    let id = cluster.install(&cluster.unique("regcred"), &ns, values).await;
    cluster.trust_in_google(google).await;
    let wif = id.path("wif.json");
    std::fs::write(&wif, serde_json::to_vec(&external_account(google, &id.path("token"))).unwrap()).unwrap();
    (ns, id, wif.display().to_string())
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn a_real_service_account_token_is_exchanged_and_a_wrong_audience_refused() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let (ns, id, wif) = setup(&cluster, &google).await;
    let provider_audience = format!("https:{}", google.sts_audience());
    let target = format!("{ns}/gcr-pull");

    // Wrong audience (the API server's own): refused by STS, nothing written.
    let wrong = cluster.token(&ns, &id.service_account, None).await;
    replace_file(&id.path("token"), &wrong);
    let out = id.once(&google, &["--key-file", &wif, "--secret", &target]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("does not match the expected audience"), "{}", out.stderr);
    assert!(google.issued_tokens().is_empty());

    // The provider's audience: exchanged for a token of the ServiceAccount's identity.
    let right = cluster.token(&ns, &id.service_account, Some(&provider_audience)).await;
    replace_file(&id.path("token"), &right);
    let out = id.once(&google, &["--key-file", &wif, "--secret", &target]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let issued = google.issued_tokens().pop().unwrap();
    assert_eq!(issued.grant, "sts");
    assert_eq!(issued.subject, id.user, "the federated principal is the ServiceAccount");
    let doc = cluster.secret_doc(&ns, "gcr-pull", ".dockerconfigjson").await.unwrap();
    assert_eq!(password_for(&doc, "gcr.io"), issued.access_token);
    assert_eq!(cluster.forbidden(&id.user), Vec::<String>::new(), "regcred was refused");
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn a_token_signed_by_another_issuer_is_refused() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    let (ns, id, wif) = setup(&cluster, &google).await;
    // Same claims, but the kit's own key signed it: the issuer's keys refuse it.
    let forged = google.sign_jwt(&json!({
        "iss": cluster.url,
        "sub": id.user,
        "aud": [format!("https:{}", google.sts_audience())],
        "exp": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600,
    }));
    replace_file(&id.path("token"), &forged);
    let out = id.once(&google, &["--key-file", &wif, "--secret", &format!("{ns}/gcr-pull")]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("signature"), "{}", out.stderr);
    assert!(google.issued_tokens().is_empty());
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn a_rotated_projected_token_is_picked_up() {
    let cluster = Cluster::get().await;
    let google = Google::start().await;
    google.set_token_lifetime(Duration::from_secs(6));
    let (ns, id, wif) = setup(&cluster, &google).await;
    let provider_audience = format!("https:{}", google.sts_audience());
    let first = cluster.token(&ns, &id.service_account, Some(&provider_audience)).await;
    replace_file(&id.path("token"), &first);
    let child = id.daemon(
        &google,
        &["--key-file", &wif, "--secret", &format!("{ns}/gcr-pull"), "--refresh-before", "3s", "--jitter", "0s"],
    );
    eventually(Duration::from_secs(20), "the first exchange", || async {
        (!google.issued_tokens().is_empty()).then_some(())
    })
    .await;

    // The kubelet rotates the projected token: the next exchange uses the new one.
    let second = cluster.token(&ns, &id.service_account, Some(&provider_audience)).await;
    assert_ne!(first, second);
    replace_file(&id.path("token"), &second);
    eventually(Duration::from_secs(20), "an exchange of the rotated token", || async {
        google.requests().iter().any(|r| r.path == "/v1/token" && r.body.contains(&second)).then_some(())
    })
    .await;
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(cluster.forbidden(&id.user), Vec::<String>::new(), "regcred was refused");
}
