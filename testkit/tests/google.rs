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

/// A registry-token signing key and its self-signed certificate (what the
/// registry's `rootcertbundle` holds), made by openssl as the node makes them.
fn registry_signing_pair(dir: &std::path::Path) -> (String, String) {
    let (key, cert) = (dir.join("token.key"), dir.join("token.crt"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=tokens", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (std::fs::read_to_string(key).unwrap(), std::fs::read_to_string(cert).unwrap())
}

async fn registry_token(g: &Google, user_password: Option<&str>, scope: &str) -> Resp {
    use base64::Engine as _;
    let url = format!("{}/v2/token?service=europe-west1-docker.pkg.dev&scope={}", g.url(), urlencode(scope));
    let auth = user_password.map(|c| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(c)));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    send("GET", &url, &headers, None).await.unwrap()
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap().trim_start_matches("x=").to_string()
}

fn registry_error(r: &Resp) -> (u16, String, String) {
    let v = r.json();
    (
        r.status,
        v["errors"][0]["code"].as_str().unwrap_or("").into(),
        v["errors"][0]["message"].as_str().unwrap_or("").into(),
    )
}

/// The claims of a registry token, after checking that it is RS256 signed
/// by the key of the certificate in its `x5c`, as the registry checks it.
fn registry_claims(token: &str, cert_pem: &str) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    let cert_body: String = cert_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_eq!(header["x5c"][0].as_str().unwrap(), cert_body, "x5c carries the signing certificate");
    // The signature, checked with openssl against the certificate's key.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert_pem).unwrap();
    std::fs::write(dir.path().join("input"), format!("{}.{}", parts[0], parts[1])).unwrap();
    std::fs::write(dir.path().join("sig"), URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    let pubkey = std::process::Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(dir.path().join("cert.pem"))
        .output()
        .unwrap();
    std::fs::write(dir.path().join("pub.pem"), &pubkey.stdout).unwrap();
    let verify = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(dir.path().join("pub.pem"))
        .arg("-signature")
        .arg(dir.path().join("sig"))
        .arg(dir.path().join("input"))
        .output()
        .unwrap();
    assert!(verify.status.success(), "signature: {}", String::from_utf8_lossy(&verify.stdout));
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

#[tokio::test]
async fn registry_token_endpoint_accepts_what_google_accepts_now() {
    let g = Google::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = registry_signing_pair(dir.path());
    // Without a signer there is no registry.
    assert_eq!(registry_token(&g, None, "repository:p/r/app:pull").await.status, 404);
    g.sign_registry_tokens(&key, &cert, "issuer-x").unwrap();
    g.allow_pull("p/r", &g.service_account_email());
    g.allow_pull("p/public", "allUsers");

    let token = jwt_grant(&g, &g.make_assertion(SCOPE)).await.json()["access_token"].as_str().unwrap().to_string();
    let r = registry_token(&g, Some(&format!("oauth2accesstoken:{token}")), "repository:p/r/app:pull,push").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let claims = registry_claims(r.json()["token"].as_str().unwrap(), &cert);
    assert_eq!(claims["iss"], "issuer-x");
    assert_eq!(claims["aud"], "europe-west1-docker.pkg.dev");
    assert_eq!(claims["sub"], g.service_account_email());
    assert_eq!(claims["access"], json!([{"type": "repository", "name": "p/r/app", "actions": ["pull"]}]));
    let expiry = g.issued_tokens().last().unwrap().expires_at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(claims["exp"].as_u64().unwrap() <= expiry, "a registry token outlives its credential");

    // Keys: as JSON and as base64 of the JSON; a key of another account's is refused.
    let key_json = g.key_file_json();
    assert_eq!(registry_token(&g, Some(&format!("_json_key:{key_json}")), "repository:p/r/app:pull").await.status, 200);
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&key_json)
    };
    assert_eq!(
        registry_token(&g, Some(&format!("_json_key_base64:{b64}")), "repository:p/r/app:pull").await.status,
        200
    );
    let other = Google::start().await.key_file_json();
    let r = registry_token(&g, Some(&format!("_json_key:{other}")), "repository:p/r/app:pull").await;
    assert_eq!(registry_error(&r), (401, "UNAUTHORIZED".into(), "authentication failed".into()));

    // An accepted identity without access, and no identity at all.
    let r = registry_token(&g, Some(&format!("oauth2accesstoken:{token}")), "repository:p/other/app:pull").await;
    let (status, code, message) = registry_error(&r);
    assert_eq!((status, code.as_str()), (403, "DENIED"), "{message}");
    assert!(message.starts_with("Permission \"artifactregistry.repositories.downloadArtifacts\" denied"), "{message}");
    let (status, code, message) = registry_error(&registry_token(&g, None, "repository:p/r/app:pull").await);
    assert_eq!((status, code.as_str()), (403, "DENIED"));
    assert!(message.starts_with("Unauthenticated request."), "{message}");
    let r = registry_token(&g, None, "repository:p/public/app:pull").await;
    assert_eq!(r.status, 200, "allUsers makes a repository public: {}", r.body);

    // The OAuth2 form of the protocol is not served; clients fall back to GET.
    let r = send("POST", &format!("{}/v2/token", g.url()), &[], Some("grant_type=password")).await.unwrap();
    assert_eq!(r.status, 404);

    // Once the access token expires, it is refused like any unknown one.
    g.set_token_lifetime(Duration::from_secs(1));
    let short = jwt_grant(&g, &g.make_assertion(SCOPE)).await.json()["access_token"].as_str().unwrap().to_string();
    let credential = format!("oauth2accesstoken:{short}");
    assert_eq!(registry_token(&g, Some(&credential), "repository:p/r/app:pull").await.status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while g.is_valid_token(&short) {
        assert!(std::time::Instant::now() < deadline, "the 1 s token never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = registry_token(&g, Some(&credential), "repository:p/r/app:pull").await;
    assert_eq!(registry_error(&r), (401, "UNAUTHORIZED".into(), "authentication failed".into()));
}
