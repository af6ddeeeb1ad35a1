//! The Google emulator over plain HTTP: the JWT-bearer and refresh-token
//! grants, the metadata server, STS and IAM Credentials.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use regcred_testkit::Google;
use serde_json::{json, Value};

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn post_form(url: &str, form: &[(&str, &str)]) -> Resp {
    let body = serde_urlencoded::to_string(form).unwrap();
    send("POST", url, &[("content-type", "application/x-www-form-urlencoded")], Some(&body)).await.unwrap()
}

async fn jwt_grant(g: &Google, assertion: &str) -> Resp {
    post_form(
        &g.token_uri(),
        &[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion)],
    )
    .await
}

/// An RFC 8693 exchange of a JWT subject token at the emulator's STS.
async fn sts_exchange(g: &Google, audience: &str, subject: &str) -> Resp {
    post_form(
        &g.sts_uri(),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("audience", audience),
            ("scope", SCOPE),
            ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
            ("subject_token", subject),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ],
    )
    .await
}

fn assert_oauth_error(r: &Resp, code: u16, error: &str, description: &str) {
    assert_eq!(r.status, code, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"], error, "{v}");
    assert_eq!(v["error_description"], description, "{v}");
}

#[tokio::test]
async fn jwt_bearer_accepts_a_correct_assertion() {
    let g = Google::start().await;
    let r = jwt_grant(&g, &g.make_assertion(SCOPE)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let token = v["access_token"].as_str().unwrap();
    assert!(token.starts_with("ya29."));
    assert_eq!(v["token_type"], "Bearer");
    let expires_in = v["expires_in"].as_u64().unwrap();
    assert!((3598..=3600).contains(&expires_in), "{expires_in}");
    let issued = g.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].access_token, token);
    assert_eq!(issued[0].grant, "jwt-bearer");
    assert_eq!(issued[0].subject, g.service_account_email());
    assert!(g.is_valid_token(token));

    // Tokens are unique; the lifetime is configurable.
    g.set_token_lifetime(Duration::from_secs(3));
    let v2 = jwt_grant(&g, &g.make_assertion(SCOPE)).await.json();
    assert_ne!(v2["access_token"], v["access_token"]);
    assert!(v2["expires_in"].as_u64().unwrap() <= 3);

    // The key file is what clients load.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    g.write_key_file(&path);
    let key: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(key["type"], "service_account");
    assert_eq!(key["client_email"], g.service_account_email());
    assert_eq!(key["token_uri"], g.token_uri());
    assert!(key["private_key"].as_str().unwrap().starts_with("-----BEGIN PRIVATE KEY-----\n"));
}

#[tokio::test]
async fn jwt_bearer_rejects_what_google_rejects() {
    let g = Google::start().await;
    let other = Google::start().await;
    let base = json!({"iss": g.service_account_email(), "scope": SCOPE, "aud": g.token_uri(), "iat": now(), "exp": now() + 3600});

    // Signed by another key.
    let wrong = other.sign_jwt(&base);
    assert_oauth_error(&jwt_grant(&g, &wrong).await, 400, "invalid_grant", "Invalid JWT Signature.");
    // Tampered claims.
    let good = g.sign_jwt(&base);
    let parts: Vec<&str> = good.split('.').collect();
    let mut tampered_claims = base.clone();
    tampered_claims["scope"] = json!("https://www.googleapis.com/auth/devstorage.full_control");
    let tampered = format!("{}.{}.{}", parts[0], base64_url(&tampered_claims.to_string()), parts[2]);
    assert_oauth_error(&jwt_grant(&g, &tampered).await, 400, "invalid_grant", "Invalid JWT Signature.");
    // Unknown account
    let mut c = base.clone();
    c["iss"] = json!("someone@else.iam.gserviceaccount.com");
    assert_oauth_error(&jwt_grant(&g, &g.sign_jwt(&c)).await, 400, "invalid_grant", "Invalid grant: account not found");
    // Audience
    let mut c = base.clone();
    c["aud"] = json!("https://oauth2.googleapis.com/token");
    assert_oauth_error(
        &jwt_grant(&g, &g.sign_jwt(&c)).await,
        400,
        "invalid_grant",
        "Invalid JWT: Failed audience check.",
    );
    // Too long-lived, expired, missing iat
    let timeframe = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
    for claims in
        [json!({"exp": now() + 7200}), json!({"iat": now() - 7200, "exp": now() - 3600}), json!({"iat": null})]
    {
        let mut c = base.clone();
        for (k, v) in claims.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        assert_oauth_error(&jwt_grant(&g, &g.sign_jwt(&c)).await, 400, "invalid_grant", timeframe);
    }
    // No scope
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("scope");
    assert_oauth_error(
        &jwt_grant(&g, &g.sign_jwt(&c)).await,
        400,
        "invalid_scope",
        "Invalid OAuth scope or ID token audience provided.",
    );
    // target_audience gives an ID token instead.
    let mut c = base.clone();
    c.as_object_mut().unwrap().remove("scope");
    c["target_audience"] = json!("https://example.com");
    let r = jwt_grant(&g, &g.sign_jwt(&c)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id_token"].as_str().unwrap().split('.').count(), 3);
    // Grant type and parameters
    let r = post_form(&g.token_uri(), &[("grant_type", "password")]).await;
    assert_oauth_error(&r, 400, "unsupported_grant_type", "Invalid grant_type: password");
    let r = post_form(&g.token_uri(), &[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")]).await;
    assert_oauth_error(&r, 400, "invalid_request", "Missing required parameter: assertion");
    assert_oauth_error(&jwt_grant(&g, "not-a-jwt").await, 400, "invalid_grant", "Invalid JWT Signature.");
    assert!(g.issued_tokens().iter().all(|t| t.grant != "jwt-bearer"));
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn refresh_token_grant() {
    let g = Google::start().await;
    let adc: Value = serde_json::from_str(&g.authorized_user_json()).unwrap();
    assert_eq!(adc["type"], "authorized_user");
    let field = |k: &str| adc[k].as_str().unwrap().to_string();
    let r = post_form(
        &g.token_uri(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &field("client_id")),
            ("client_secret", &field("client_secret")),
            ("refresh_token", &field("refresh_token")),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(g.issued_tokens()[0].grant, "refresh-token");
    let r = post_form(
        &g.token_uri(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &field("client_id")),
            ("client_secret", &field("client_secret")),
            ("refresh_token", "1//revoked"),
        ],
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_grant", "Bad Request");
    let r =
        post_form(&g.token_uri(), &[("grant_type", "refresh_token"), ("client_id", "nobody"), ("refresh_token", "x")])
            .await;
    assert_oauth_error(&r, 401, "invalid_client", "The OAuth client was not found.");
}

#[tokio::test]
async fn metadata_server() {
    let g = Google::start().await;
    let url = format!("http://{}/computeMetadata/v1/instance/service-accounts/default/token", g.metadata_host());
    let r = get(&url).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, "Missing required header \"Metadata-Flavor\": \"Google\"\n");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(g.issued_tokens().is_empty());

    let flavor = [("Metadata-Flavor", "Google")];
    let r = send("GET", &url, &flavor, None).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("metadata-flavor"), Some("Google"));
    let v = r.json();
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].as_u64().unwrap() > 3500);
    // The server caches: the same token comes back while it has life left.
    let v2 = send("GET", &url, &flavor, None).await.unwrap().json();
    assert_eq!(v2["access_token"], v["access_token"]);
    assert_eq!(g.issued_tokens().len(), 1);
    assert_eq!(g.issued_tokens()[0].grant, "metadata");
    // ...and a new one once it is close to expiry.
    g.set_token_lifetime(Duration::from_secs(2));
    let a = send("GET", &url, &flavor, None).await.unwrap().json();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let b = send("GET", &url, &flavor, None).await.unwrap().json();
    assert_ne!(a["access_token"], b["access_token"]);

    let scoped = send("GET", &format!("{url}?scopes={SCOPE}"), &flavor, None).await.unwrap();
    assert_eq!(scoped.status, 200);
    assert_eq!(g.issued_tokens().last().unwrap().scope, SCOPE);

    let email = send(
        "GET",
        &format!("http://{}/computeMetadata/v1/instance/service-accounts/default/email", g.metadata_host()),
        &flavor,
        None,
    )
    .await
    .unwrap();
    assert_eq!(email.body, g.service_account_email());
    let project =
        send("GET", &format!("http://{}/computeMetadata/v1/project/project-id", g.metadata_host()), &flavor, None)
            .await
            .unwrap();
    assert_eq!(project.body, g.project_id());
    let ping = send("GET", &format!("http://{}/", g.metadata_host()), &flavor, None).await.unwrap();
    assert_eq!(ping.status, 200);
    assert_eq!(ping.header("metadata-flavor"), Some("Google"));
    let forwarded =
        send("GET", &url, &[("Metadata-Flavor", "Google"), ("X-Forwarded-For", "10.0.0.1")], None).await.unwrap();
    assert_eq!(forwarded.status, 403);
    let missing =
        send("GET", &format!("http://{}/computeMetadata/v1/nope", g.metadata_host()), &flavor, None).await.unwrap();
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("metadata-flavor"), Some("Google"));
}

#[tokio::test]
async fn sts_token_exchange() {
    let g = Google::start().await;
    g.accept_subject_token("k8s-sa-token");
    let aud = g.sts_audience();
    let exchange = |aud: String, subject: &'static str| {
        let g = &g;
        async move { sts_exchange(g, &aud, subject).await }
    };
    let r = exchange(aud.clone(), "k8s-sa-token").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(g.issued_tokens()[0].grant, "sts");

    let r = exchange(aud.clone(), "forged").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant");
    let r = exchange(
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x".into(),
        "k8s-sa-token",
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_target");
    let r = exchange("not-a-provider".into(), "k8s-sa-token").await;
    assert_eq!(r.json()["error"], "invalid_request");
    let r = post_form(&g.sts_uri(), &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.json()["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn iam_generate_access_token() {
    let g = Google::start().await;
    let source = jwt_grant(&g, &g.make_assertion(SCOPE)).await.json()["access_token"].as_str().unwrap().to_string();
    let target = "puller@other-project.iam.gserviceaccount.com";
    let url = format!("{}/v1/projects/-/serviceAccounts/{target}:generateAccessToken", g.iam_credentials_uri());
    let auth = format!("Bearer {source}");
    let call = |body: Value, auth: String| {
        let url = url.clone();
        async move {
            send(
                "POST",
                &url,
                &[("authorization", &auth), ("content-type", "application/json")],
                Some(&body.to_string()),
            )
            .await
            .unwrap()
        }
    };
    let body = json!({"scope": [SCOPE], "lifetime": "3600s"});
    let r = call(body.clone(), auth.clone()).await;
    assert_eq!(r.status, 403);
    let e = r.json()["error"].clone();
    assert_eq!(e["code"], 403);
    assert_eq!(e["status"], "PERMISSION_DENIED");
    assert_eq!(
        e["message"],
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."
    );

    g.allow_impersonation(target);
    let r = call(body.clone(), auth.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert!(v["accessToken"].as_str().unwrap().starts_with("ya29."));
    let expire = humantime::parse_rfc3339(v["expireTime"].as_str().unwrap()).unwrap();
    assert!(expire > SystemTime::now());
    let last = g.issued_tokens().last().unwrap().clone();
    assert_eq!(last.grant, "impersonation");
    assert_eq!(last.subject, target);

    let r = call(json!({"scope": [SCOPE], "lifetime": "7200s"}), auth.clone()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["status"], "INVALID_ARGUMENT");
    let r = call(body.clone(), "Bearer ya29.unknown".into()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["status"], "UNAUTHENTICATED");
    let r = call(
        json!({"scope": [SCOPE], "delegates": ["projects/-/serviceAccounts/mid@x.iam.gserviceaccount.com"]}),
        auth.clone(),
    )
    .await;
    assert_eq!(r.status, 403);
}

/// STS as an OIDC provider: a JWT from the trusted issuer is exchanged only
/// when its signature, `iss`, `aud` and `exp` are right.
#[tokio::test]
async fn sts_verifies_oidc_subject_tokens() {
    let g = Google::start().await;
    let issuer = Google::start().await; // its key signs the subject tokens
    g.trust_oidc_issuer("https://issuer.example", &issuer.jwks(), &[]);
    let allowed = format!("https:{}", g.sts_audience());
    let exchange = |subject: String| {
        let g = &g;
        async move { sts_exchange(g, &g.sts_audience(), &subject).await }
    };
    let claims = |iss: &str, aud: &str, exp: u64| json!({"iss": iss, "sub": "system:serviceaccount:ns:sa", "aud": [aud], "exp": exp});

    let ok = exchange(issuer.sign_jwt(&claims("https://issuer.example", &allowed, now() + 600))).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(g.issued_tokens()[0].subject, "system:serviceaccount:ns:sa");

    let cases = [
        (issuer.sign_jwt(&claims("https://issuer.example", "https://kubernetes.default.svc", now() + 600)), "audience"),
        (issuer.sign_jwt(&claims("https://other.example", &allowed, now() + 600)), "issuer"),
        (issuer.sign_jwt(&claims("https://issuer.example", &allowed, now() - 10)), "expired"),
        (g.sign_jwt(&claims("https://issuer.example", &allowed, now() + 600)), "signature"),
    ];
    for (token, what) in cases {
        let r = exchange(token).await;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_grant", "{what}");
        assert!(r.json()["error_description"].as_str().unwrap().contains(what), "{what}: {}", r.body);
    }
    assert_eq!(g.issued_tokens().len(), 1);
}
