//! The Azure emulator over plain HTTP: Entra ID's refusals, IMDS's rules,
//! the registry's exchange and token endpoints, and the fault bodies.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use regcred_testkit::{Azure, Fault};
use serde_json::Value;

const SCOPE: &str = "https://containerregistry.azure.net/.default";

async fn post_form(url: &str, form: &[(&str, &str)]) -> Resp {
    let body = serde_urlencoded::to_string(form).unwrap();
    send("POST", url, &[("content-type", "application/x-www-form-urlencoded")], Some(&body)).await.unwrap()
}

/// An Entra ID error: status, `error`, and the `AADSTSnnn:` code that starts
/// the description, which goes on with the trace lines.
fn assert_aad_error(r: &Resp, status: u16, error: &str, code: u32) {
    assert_eq!(r.status, status, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"], error, "{v}");
    let description = v["error_description"].as_str().unwrap();
    assert!(description.starts_with(&format!("AADSTS{code}: ")), "{description}");
    assert!(description.contains("\r\nTrace ID: "), "{description}");
    assert_eq!(v["error_codes"], serde_json::json!([code]));
    assert!(v["trace_id"].is_string() && v["correlation_id"].is_string(), "{v}");
}

async fn secret_grant(kit: &Azure, tenant: &str, client_id: &str, secret: &str, scope: &str) -> Resp {
    let url = format!("{}/{tenant}/oauth2/v2.0/token", kit.url());
    post_form(
        &url,
        &[("grant_type", "client_credentials"), ("client_id", client_id), ("client_secret", secret), ("scope", scope)],
    )
    .await
}

#[tokio::test]
async fn entra_id_refuses_what_it_would_refuse() {
    let kit = Azure::start().await;
    let app = kit.create_app();
    let secret = kit.add_client_secret(&app);
    let tenant = kit.tenant_id();

    let ok = secret_grant(&kit, &tenant, &app, &secret, SCOPE).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let v = ok.json();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);

    let other_tenant = "00000000-1111-2222-3333-444444444444";
    assert_aad_error(&secret_grant(&kit, other_tenant, &app, &secret, SCOPE).await, 400, "invalid_request", 90_002);
    let stranger = "99999999-1111-2222-3333-444444444444";
    assert_aad_error(&secret_grant(&kit, &tenant, stranger, &secret, SCOPE).await, 400, "unauthorized_client", 700_016);
    assert_aad_error(&secret_grant(&kit, &tenant, &app, "wrong", SCOPE).await, 401, "invalid_client", 7_000_215);
    let no_default = "https://containerregistry.azure.net";
    assert_aad_error(&secret_grant(&kit, &tenant, &app, &secret, no_default).await, 400, "invalid_scope", 1_002_012);
    let unknown = "https://unknown.example.com/.default";
    assert_aad_error(&secret_grant(&kit, &tenant, &app, &secret, unknown).await, 400, "invalid_resource", 500_011);
    let url = format!("{}/{tenant}/oauth2/v2.0/token", kit.url());
    let none = post_form(&url, &[("grant_type", "client_credentials"), ("client_id", &app), ("scope", SCOPE)]).await;
    assert_aad_error(&none, 401, "invalid_client", 7_000_218);
    let password = post_form(&url, &[("grant_type", "password"), ("client_id", &app), ("scope", SCOPE)]).await;
    assert_aad_error(&password, 400, "unsupported_grant_type", 70_003);
    let wrong_type = post_form(
        &url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &app),
            ("scope", SCOPE),
            ("client_assertion_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("client_assertion", "x.y.z"),
        ],
    )
    .await;
    assert_aad_error(&wrong_type, 400, "invalid_request", 700_028);
    assert_eq!(kit.issued_tokens().len(), 1, "only the correct request got a token");
}

#[tokio::test]
async fn federated_tokens_need_a_matching_credential_and_a_trusted_issuer() {
    let kit = Azure::start().await;
    let app = kit.create_app();
    let url = kit.token_uri();
    let grant = |assertion: String| {
        let url = url.clone();
        let app = app.clone();
        async move {
            post_form(
                &url,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &app),
                    ("scope", SCOPE),
                    ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                    ("client_assertion", &assertion),
                ],
            )
            .await
        }
    };
    let token = kit.service_account_token("ci", "regcred", Duration::from_secs(600));
    let r = grant(token.clone()).await;
    assert_aad_error(&r, 400, "invalid_request", 70_021);
    assert!(r.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("Assertion Subject: 'system:serviceaccount:ci:regcred'"));

    // Federated with an issuer the kit was not given the keys of.
    kit.add_federated_credential(&app, "https://oidc.example.com/cluster", "system:serviceaccount:ci:regcred");
    let foreign = kit.sign_service_account_token(&serde_json::json!({
        "iss": "https://oidc.example.com/cluster", "sub": "system:serviceaccount:ci:regcred",
        "aud": "api://AzureADTokenExchange", "exp": 4_000_000_000u64,
    }));
    assert_aad_error(&grant(foreign).await, 401, "invalid_client", 50_013);

    kit.add_federated_credential(&app, &kit.cluster_issuer(), "system:serviceaccount:ci:regcred");
    let r = grant(token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let issued = kit.issued_tokens();
    assert_eq!(
        (issued[0].kind.as_str(), issued[0].audience.as_str()),
        ("client_assertion", "https://containerregistry.azure.net")
    );
}

#[tokio::test]
async fn imds_answers_only_local_metadata_requests_for_its_identities() {
    let kit = Azure::start().await;
    let url = |q: &str| format!("{}?{q}", kit.imds_endpoint());
    let get = |u: String, headers: Vec<(&'static str, &'static str)>| async move {
        send("GET", &u, &headers, None).await.unwrap()
    };
    let q = "api-version=2018-02-01&resource=https://containerregistry.azure.net";
    let cases = [
        (url(q), vec![], "Required metadata header not specified"),
        (url(q), vec![("Metadata", "true"), ("X-Forwarded-For", "10.0.0.1")], "Request forwarding is not supported"),
        (
            url("resource=https://containerregistry.azure.net"),
            vec![("Metadata", "true")],
            "Required query variable 'api-version' is missing",
        ),
        (url("api-version=2018-02-01"), vec![("Metadata", "true")], "Required audience parameter not specified"),
        (url(q), vec![("Metadata", "true")], "Identity not found"),
    ];
    for (u, headers, description) in cases {
        let r = get(u, headers).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json(), serde_json::json!({"error": "invalid_request", "error_description": description}));
    }
    let id = kit.assign_user_identity();
    let r = get(url(&format!("{q}&client_id={id}")), vec![("Metadata", "true")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (v["client_id"].as_str(), v["resource"].as_str()),
        (Some(id.as_str()), Some("https://containerregistry.azure.net"))
    );
    assert!(v["expires_on"].is_string() && v["expires_in"] == "86399", "{v}");
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn the_registry_exchanges_only_its_tenants_registry_tokens() {
    let kit = Azure::start().await;
    let app = kit.create_app();
    let secret = kit.add_client_secret(&app);
    let tenant = kit.tenant_id();
    let aad = |scope: &'static str| {
        let (kit, tenant, app, secret) = (&kit, tenant.clone(), app.clone(), secret.clone());
        async move {
            secret_grant(kit, &tenant, &app, &secret, scope).await.json()["access_token"].as_str().unwrap().to_string()
        }
    };
    let token = aad(SCOPE).await;
    let exchange = format!("{}/oauth2/exchange", kit.url());
    let server = kit.login_server();
    let form = |grant: &'static str, service: String, tenant: String, token: String| {
        let exchange = exchange.clone();
        async move {
            post_form(
                &exchange,
                &[("grant_type", grant), ("service", &service), ("tenant", &tenant), ("access_token", &token)],
            )
            .await
        }
    };
    let acr_error = |r: &Resp, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.json()["errors"][0]["code"], code, "{}", r.body);
    };
    acr_error(
        &form("refresh_token", server.clone(), tenant.clone(), token.clone()).await,
        400,
        "UNSUPPORTED_GRANT_TYPE",
    );
    acr_error(
        &form("access_token", "other.azurecr.io".into(), tenant.clone(), token.clone()).await,
        400,
        "BAD_REQUEST",
    );
    acr_error(&form("access_token", server.clone(), "other-tenant".into(), token.clone()).await, 401, "UNAUTHORIZED");
    acr_error(&form("access_token", server.clone(), tenant.clone(), "eyJ.forged.x".into()).await, 401, "UNAUTHORIZED");
    let management = aad("https://management.azure.com/.default").await;
    acr_error(&form("access_token", server.clone(), tenant.clone(), management).await, 401, "UNAUTHORIZED");
    let get = send("GET", &exchange, &[], None).await.unwrap();
    acr_error(&get, 404, "NOT_FOUND");

    let r = form("access_token", server.clone(), tenant.clone(), token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
    let c = claims(&refresh);
    assert_eq!((c["aud"].as_str(), c["iss"].as_str()), (Some(server.as_str()), Some("Azure Container Registry")));
    let lifetime = c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 3 * 3600);

    // The refresh token buys an access token (POST refresh_token grant);
    // without AcrPull the pull scope is left empty, with it granted.
    let token_url = format!("{}/oauth2/token", kit.url());
    let scope = "repository:team/app:pull";
    let access = |refresh: String| {
        let (token_url, server) = (token_url.clone(), server.clone());
        async move {
            let r = post_form(
                &token_url,
                &[("grant_type", "refresh_token"), ("service", &server), ("scope", scope), ("refresh_token", &refresh)],
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.body);
            claims(r.json()["access_token"].as_str().unwrap())["access"][0]["actions"].clone()
        }
    };
    assert_eq!(access(refresh.clone()).await, serde_json::json!([]));
    kit.allow_pull(&app);
    assert_eq!(access(refresh.clone()).await, serde_json::json!(["pull"]));
    let r = post_form(
        &token_url,
        &[("grant_type", "refresh_token"), ("service", &server), ("scope", scope), ("refresh_token", "x")],
    )
    .await;
    acr_error(&r, 401, "UNAUTHORIZED");

    let challenge = send("GET", &format!("{}/v2/", kit.url()), &[], None).await.unwrap();
    assert_eq!(challenge.status, 401);
    assert_eq!(
        challenge.header("www-authenticate"),
        Some(format!("Bearer realm=\"https://{server}/oauth2/token\",service=\"{server}\"").as_str())
    );
}

#[tokio::test]
async fn injected_faults_answer_in_each_services_shape() {
    let kit = Azure::start().await;
    let token_path = format!("/{}/oauth2/v2.0/token", kit.tenant_id());
    kit.faults().inject(None, &token_path, Fault::Status { code: 503, body: None, retry_after: Some(4) }, 1);
    kit.faults().inject(None, "/oauth2/exchange", Fault::Status { code: 429, body: None, retry_after: None }, 1);
    kit.faults().inject(None, "/metadata/identity", Fault::Status { code: 500, body: None, retry_after: None }, 1);
    let r = post_form(&kit.token_uri(), &[]).await;
    assert_aad_error(&r, 503, "temporarily_unavailable", 90_033);
    assert_eq!(r.header("retry-after"), Some("4"));
    let r = post_form(&format!("{}/oauth2/exchange", kit.url()), &[]).await;
    assert_eq!((r.status, r.json()["errors"][0]["code"].as_str()), (429, Some("TOOMANYREQUESTS")));
    let r = send("GET", &kit.imds_endpoint(), &[], None).await.unwrap();
    assert_eq!((r.status, r.json()["error"].as_str()), (500, Some("unknown_error")));
    assert_eq!(kit.faults().pending(), 0);
}
