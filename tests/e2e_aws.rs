//! End to end, IRSA with a real identity: the web identity token is a
//! ServiceAccount token from the real API server's TokenRequest API (the
//! one EKS projects for `eks.amazonaws.com/role-arn`), and the test kit's
//! AWS STS verifies it as IAM verifies an OIDC provider's tokens, against
//! the API server's own OIDC discovery document and JWKS. regcred runs as
//! the chart's ServiceAccount, with the chart's RBAC, and writes an ECR
//! entry beside a Google one. Ignored unless asked for (`--ignored`) with
//! `REGCRED_E2E_DIR` naming a running control plane.

mod common;

use common::e2e::{password_for, Cluster};
use regcred_testkit::{Aws, Google};
use serde_json::json;

const ECR: &str = "111122223333.dkr.ecr.eu-west-1.amazonaws.com";
const ROLE: &str = "arn:aws:iam::111122223333:role/registry-puller";

/// Makes the emulated STS trust the API server as an IAM OIDC provider,
/// from its own discovery document and JWKS.
async fn trust_in_aws(cluster: &Cluster, aws: &Aws) {
    let (issuer, jwks) = cluster.oidc_issuer().await;
    aws.trust_oidc_issuer(&issuer, &jwks, "sts.amazonaws.com");
    aws.allow_role(ROLE);
}

#[tokio::test]
#[ignore = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored"]
async fn irsa_with_a_real_service_account_token_writes_an_ecr_entry_and_a_wrong_audience_is_refused() {
    let cluster = Cluster::get().await;
    let (google, aws) = (Google::start().await, Aws::start().await);
    let ns = cluster.unique("irsa");
    cluster.create_namespace(&ns, &[]).await;
    let values = json!({
        "registries": ["gcr.io", ECR],
        "targets": {"secrets": [{"name": "pull", "namespace": ns}], "createSecrets": true},
    });
    let id = cluster.install(&cluster.unique("regcred"), &ns, values).await;
    trust_in_aws(&cluster, &aws).await;
    let token_file = id.path("eks-token");
    let once = |token: String| {
        std::fs::write(&token_file, token).unwrap();
        let mut cmd =
            id.command(&google, &["once", "--registry", &format!("gcr.io,{ECR}"), "--secret", &format!("{ns}/pull")]);
        cmd.env("AWS_ROLE_ARN", ROLE)
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file)
            .env("AWS_ENDPOINT_URL_ECR", aws.url())
            .env("AWS_ENDPOINT_URL_STS", aws.url())
            .env("AWS_EC2_METADATA_DISABLED", "true");
        async move { common::finish(cmd.spawn().unwrap()).await }
    };

    // The API server's own audience: STS refuses it, nothing is written.
    let out = once(cluster.token(&ns, &id.service_account, None).await).await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("InvalidIdentityToken"), "{}", out.stderr);
    assert!(cluster.secret_doc(&ns, "pull", ".dockerconfigjson").await.is_none_or(|d| d["auths"].get(ECR).is_none()));

    // The IRSA audience: one document with both clouds' entries.
    let out = once(cluster.token(&ns, &id.service_account, Some("sts.amazonaws.com")).await).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let doc = cluster.secret_doc(&ns, "pull", ".dockerconfigjson").await.expect("the Secret");
    assert_eq!(doc["auths"][ECR]["username"], "AWS", "{doc}");
    let issued = aws.current_ecr_token(&password_for(&doc, ECR)).expect("an ECR token the emulator issued");
    assert!(issued.principal.contains("assumed-role/registry-puller"), "{issued:?}");
    assert!(google.is_valid_token(&password_for(&doc, "gcr.io")));
    assert_eq!(cluster.forbidden(&id.user), Vec::<String>::new(), "regcred was refused by RBAC");
}
