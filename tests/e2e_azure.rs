//! End to end, AKS workload identity with a real identity: the federated
//! token is a ServiceAccount token from the real API server's TokenRequest
//! API (what the workload identity webhook projects), and the test kit's
//! Entra ID verifies it against the API server's OIDC discovery document
//! and JWKS, as Entra ID verifies a federated credential's issuer. regcred
//! runs as the chart's ServiceAccount, with the chart's RBAC, and writes an
//! ACR entry beside a Google one. Ignored unless asked for (`--ignored`)
//! with `REGCRED_E2E_DIR` naming a running control plane.

mod common;

use common::e2e::{password_for, Cluster};
use regcred_testkit::{Azure, Google};
use serde_json::json;

/// The username ACR takes a refresh token with.
const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn workload_identity_with_a_real_service_account_token_writes_an_acr_entry_and_a_wrong_audience_is_refused() {
    let cluster = Cluster::get().await;
    let (google, azure) = (Google::start().await, Azure::start().await);
    let acr = azure.login_server();
    let ns = cluster.unique("aks");
    cluster.create_namespace(&ns, &[]).await;
    let values = json!({
        "registries": ["gcr.io", acr],
        "targets": {"secrets": [{"name": "pull", "namespace": ns}], "createSecrets": true},
    });
    let id = cluster.install(&cluster.unique("regcred"), &ns, values).await;

    // Entra ID trusts the API server as the federated credential's issuer,
    // from the server's own discovery document and JWKS.
    let (issuer, jwks) = cluster.oidc_issuer().await;
    azure.trust_issuer(&issuer, &jwks);
    let app = azure.create_app();
    azure.add_federated_credential(&app, &issuer, &format!("system:serviceaccount:{ns}:{}", id.service_account));
    azure.allow_pull(&app);

    let token_file = id.path("azure-identity-token");
    let once = |token: String| {
        std::fs::write(&token_file, token).unwrap();
        let registries = format!("gcr.io,{acr}");
        let mut cmd = id.command(&google, &["once", "--registry", &registries, "--secret", &format!("{ns}/pull")]);
        cmd.env("AZURE_CLIENT_ID", &app)
            .env("AZURE_TENANT_ID", azure.tenant_id())
            .env("AZURE_FEDERATED_TOKEN_FILE", &token_file)
            .env("AZURE_AUTHORITY_HOST", azure.url())
            .env("REGCRED_AZURE_REGISTRY_ENDPOINT", azure.url());
        async move { common::finish(cmd.spawn().unwrap()).await }
    };

    // The API server's own audience: Entra ID refuses it, nothing is written.
    let out = once(cluster.token(&ns, &id.service_account, None).await).await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("AADSTS"), "{}", out.stderr);
    assert!(cluster.secret_doc(&ns, "pull", ".dockerconfigjson").await.is_none_or(|d| d["auths"].get(&acr).is_none()));

    // The workload identity audience: one document with both clouds' entries.
    let out = once(cluster.token(&ns, &id.service_account, Some("api://AzureADTokenExchange")).await).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let doc = cluster.secret_doc(&ns, "pull", ".dockerconfigjson").await.expect("the Secret");
    assert_eq!(doc["auths"][&acr]["username"], ACR_USER, "{doc}");
    let refresh = password_for(&doc, &acr);
    let issued =
        azure.issued_tokens().into_iter().find(|t| t.token == refresh).expect("a refresh token the kit issued");
    assert_eq!((issued.kind.as_str(), issued.client_id.as_str()), ("acr_refresh", app.as_str()));
    assert!(google.is_valid_token(&password_for(&doc, "gcr.io")));
    assert_eq!(cluster.forbidden(&id.user), Vec::<String>::new(), "regcred was refused by RBAC");
}
