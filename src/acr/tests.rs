//! The ACR source against the test kit's Azure emulators: each identity
//! kind end to end (Azure AD token, exchange, the refresh token used as a
//! Docker password), Azure's refusals in one line, and the faults a real
//! peer has (hangs, garbage, absurd expiries, throttling).

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use regcred_testkit::{Azure, Fault};
use serde_json::Value;

use super::*;

const NAMESPACE: &str = "ci";
const SERVICE_ACCOUNT: &str = "regcred";

fn http() -> HttpClient {
    HttpClient::new(Duration::from_secs(5)).unwrap()
}

fn host(kit: &Azure) -> AcrRegistry {
    acr(&kit.login_server())
}

fn acr(host: &str) -> AcrRegistry {
    match host.parse::<crate::registry::RegistryHost>().map(|h| h.cloud().clone()) {
        Ok(crate::registry::Cloud::Acr(registry)) => registry,
        other => panic!("{host}: {other:?}"),
    }
}

/// Settings that reach the kit: its authority, IMDS and registry.
fn settings(kit: &Azure) -> Settings {
    Settings {
        authority_host: kit.url().parse().unwrap(),
        imds_endpoint: kit.imds_endpoint().parse().unwrap(),
        registry_endpoint: Some(kit.url().parse().unwrap()),
        ..Settings::default()
    }
}

/// An app federated with the kit's cluster issuer for `ci/regcred`, allowed
/// to pull, and workload identity settings with its token in `dir`.
fn workload_identity(kit: &Azure, dir: &Path) -> (String, Settings) {
    let app = kit.create_app();
    kit.add_federated_credential(
        &app,
        &kit.cluster_issuer(),
        &format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"),
    );
    kit.allow_pull(&app);
    let token_file = dir.join("azure-identity-token");
    std::fs::write(&token_file, kit.service_account_token(NAMESPACE, SERVICE_ACCOUNT, Duration::from_secs(3600)))
        .unwrap();
    let s = Settings {
        client_id: Some(app.parse().unwrap()),
        tenant_id: Some(kit.tenant_id().parse().unwrap()),
        federated_token_file: Some(token_file),
        token_file_from_env: true,
        ..settings(kit)
    };
    (app, s)
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Uses the credential as a Docker client does: basic authentication at the
/// registry's token endpoint for `repository:REPO:pull`; the actions granted.
async fn pull_actions(kit: &Azure, cred: &Credential, repo: &str) -> Vec<String> {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", cred.username, cred.password.expose()));
    let url = format!("{}/oauth2/token?service={}&scope=repository:{repo}:pull", kit.url(), kit.login_server());
    let resp = http().get(&url, &[("Authorization", &format!("Basic {basic}"))]).await.unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    let access = claims(body["access_token"].as_str().unwrap())["access"].clone();
    access[0]["actions"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

/// The error as a user sees it: one line, and no secret. (The refresh loop
/// and the app put the host and provider in front: tests/azure.rs.)
fn one_line(kit: &Azure, err: &SourceError, secrets: &[&str]) -> String {
    let text = err.to_string();
    assert!(!text.contains('\n') && !text.contains('\r'), "one line: {text:?}");
    let debug = format!("{err:?}");
    for secret in kit.issued_tokens().iter().map(|t| t.token.as_str()).chain(secrets.iter().copied()) {
        assert!(!text.contains(secret) && !debug.contains(secret), "leaks a secret: {text}");
    }
    text
}

#[tokio::test]
async fn workload_identity_mints_a_refresh_token_that_pulls() {
    let kit = Azure::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (app, settings) = workload_identity(&kit, dir.path());
    let source = discover(host(&kit), &settings, http()).unwrap();
    assert!(source.describe().starts_with(&format!("ACR {} with workload identity (client {app}", kit.login_server())));

    let cred = source.credential().await.unwrap();
    assert_eq!(cred.username, "00000000-0000-0000-0000-000000000000");
    let issued = kit.issued_tokens();
    let refresh = issued
        .iter()
        .find(|t| t.token == *cred.password.expose())
        .expect("the password is a refresh token the kit issued");
    assert_eq!((refresh.kind.as_str(), refresh.client_id.as_str()), ("acr_refresh", app.as_str()));
    // The exp claim, to the float rounding of Credential::expiring_at (ECR's
    // clamping rule, which works in f64 seconds: well under a millisecond).
    let (expires_at, claim) = (cred.expires_at.unwrap(), refresh.expires_at);
    let off = expires_at.duration_since(claim).or_else(|_| claim.duration_since(expires_at)).unwrap();
    assert!(off < Duration::from_millis(1), "the exp claim, off by {off:?}");
    assert_eq!(pull_actions(&kit, &cred, "team/app").await, ["pull"]);

    // The Azure AD request: the projected token as the client assertion,
    // for the registry's scope; the exchange names the registry and tenant.
    let requests = kit.requests();
    let aad: Vec<(String, String)> = form_urlencoded::parse(requests[0].body.as_bytes()).into_owned().collect();
    let field = |k: &str| aad.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(requests[0].path, format!("/{}/oauth2/v2.0/token", kit.tenant_id()));
    assert_eq!(field("grant_type"), "client_credentials");
    assert_eq!(field("scope"), "https://containerregistry.azure.net/.default");
    assert_eq!(field("client_assertion_type"), "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    assert_eq!(
        field("client_assertion"),
        std::fs::read_to_string(settings.federated_token_file.as_ref().unwrap()).unwrap()
    );
    let exchange: Vec<(String, String)> = form_urlencoded::parse(requests[1].body.as_bytes()).into_owned().collect();
    let aad_token = issued.iter().find(|t| t.kind == "client_assertion").unwrap();
    assert_eq!(
        exchange,
        [
            ("grant_type".to_string(), "access_token".to_string()),
            ("service".into(), kit.login_server()),
            ("tenant".into(), kit.tenant_id()),
            ("access_token".into(), aad_token.token.clone()),
        ]
    );

    // The kubelet rotates the token: the next mint presents the new one.
    let rotated = kit.service_account_token(NAMESPACE, SERVICE_ACCOUNT, Duration::from_secs(7200));
    std::fs::write(settings.federated_token_file.as_ref().unwrap(), &rotated).unwrap();
    let again = source.credential().await.unwrap();
    assert_ne!(again.password.expose(), cred.password.expose(), "a fresh refresh token per call");
    assert!(kit.requests().iter().any(|r| r.body.contains(&rotated)), "the rotated token was presented");
}

#[tokio::test]
async fn managed_identity_uses_imds_system_or_user_assigned() {
    let kit = Azure::start().await;
    let system = kit.enable_system_identity();
    let user = kit.assign_user_identity();
    kit.allow_pull(&system);
    let source = discover(host(&kit), &settings(&kit), http()).unwrap();
    assert_eq!(source.describe(), format!("ACR {} with managed identity (system-assigned)", kit.login_server()));
    let cred = source.credential().await.unwrap();
    assert_eq!(pull_actions(&kit, &cred, "app").await, ["pull"]);
    let imds = &kit.requests()[0];
    assert_eq!((imds.method.as_str(), imds.path.as_str()), ("GET", "/metadata/identity/oauth2/token"));
    assert_eq!(imds.header("metadata"), Some("true"));
    assert_eq!(imds.query, "api-version=2018-02-01&resource=https%3A%2F%2Fcontainerregistry.azure.net");
    // No tenant from the settings: the exchange leaves it to the token.
    assert!(!kit.requests()[1].body.contains("tenant="));

    // A user-assigned identity by client id; it holds no AcrPull, so its
    // refresh token is issued but pulls nothing.
    let s = Settings { client_id: Some(user.parse().unwrap()), ..settings(&kit) };
    let cred = discover(host(&kit), &s, http()).unwrap().credential().await.unwrap();
    assert!(kit.requests().last().unwrap().body.contains("service="));
    assert!(kit.requests().iter().any(|r| r.query.ends_with(&format!("&client_id={user}"))));
    assert!(pull_actions(&kit, &cred, "app").await.is_empty());

    // An identity the VM does not have: IMDS's own words, not retried.
    let s = Settings { client_id: Some("00001111-aaaa-2222-bbbb-3333cccc4444".parse().unwrap()), ..settings(&kit) };
    let err = discover(host(&kit), &s, http()).unwrap().credential().await.unwrap_err();
    let text = one_line(&kit, &err, &[]);
    assert_eq!(
        text,
        format!(
            "Azure AD token from the managed identity endpoint (IMDS): {} answered 400: invalid_request: Identity not found", kit.imds_endpoint()
        )
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn client_secret_is_the_last_resort_and_a_wrong_one_is_refused_in_azures_words() {
    let kit = Azure::start().await;
    let app = kit.create_app();
    let secret = kit.add_client_secret(&app);
    kit.allow_pull(&app);
    let mut s = Settings {
        client_id: Some(app.parse().unwrap()),
        tenant_id: Some(kit.tenant_id().parse().unwrap()),
        client_secret: Some(Secret::new(secret.clone())),
        ..settings(&kit)
    };
    assert!(!format!("{s:?}").contains(&secret), "settings print no secret");
    let source = discover(host(&kit), &s, http()).unwrap();
    assert_eq!(
        source.describe(),
        format!("ACR {} with client secret (client {app}, tenant {})", kit.login_server(), kit.tenant_id())
    );
    let cred = source.credential().await.unwrap();
    assert_eq!(pull_actions(&kit, &cred, "app").await, ["pull"]);
    assert!(kit.issued_tokens().iter().any(|t| t.kind == "client_secret"));

    s.client_secret = Some(Secret::new("kit8Q~wrong-secret".into()));
    let err = discover(host(&kit), &s, http()).unwrap().credential().await.unwrap_err();
    let text = one_line(&kit, &err, &[&secret, "kit8Q~wrong-secret"]);
    let prefix = format!(
        "Azure AD token: {} answered 401: invalid_client: AADSTS7000215: Invalid client secret provided.",
        kit.token_uri()
    );
    assert!(text.starts_with(&prefix), "{text}");
    assert!(text.contains("(trace ID "), "{text}");
    assert!(!err.is_retryable());
    assert_eq!(err.metric_label(), "endpoint_4xx");

    // A federated token file, when configured, wins over the secret.
    let dir = tempfile::tempdir().unwrap();
    let (_, wi) = workload_identity(&kit, dir.path());
    let both = Settings { client_secret: s.client_secret.clone(), ..wi };
    assert!(discover(host(&kit), &both, http()).unwrap().describe().contains("workload identity"));
}

#[tokio::test]
async fn wrong_federated_tokens_are_refused_with_entra_ids_reason() {
    let kit = Azure::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, settings) = workload_identity(&kit, dir.path());
    let file = settings.federated_token_file.clone().unwrap();
    let source = discover(host(&kit), &settings, http()).unwrap();
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    let good = kit.service_account_token(NAMESPACE, SERVICE_ACCOUNT, Duration::from_secs(3600));
    let (head, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        serde_json::json!({"iss": kit.cluster_issuer(), "sub": format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"), "aud": ["api://AzureADTokenExchange"], "exp": now + 3600}).to_string(),
    );
    let cases = [
        (kit.service_account_token("other", SERVICE_ACCOUNT, Duration::from_secs(3600)), "400: invalid_request: AADSTS70021: No matching federated identity record found for presented assertion. Assertion Issuer: "),
        (
            kit.sign_service_account_token(&serde_json::json!({"iss": kit.cluster_issuer(), "sub": format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"), "aud": "api://AzureADTokenExchange", "iat": now - 7200, "exp": now - 3600})),
            "400: invalid_client: AADSTS700024: Client assertion is not within its valid time range.",
        ),
        (
            kit.sign_service_account_token(&serde_json::json!({"iss": kit.cluster_issuer(), "sub": format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"), "aud": "https://kubernetes.default.svc", "exp": now + 3600})),
            "AADSTS70021",
        ),
        (format!("{head}.{forged_claims}.{sig}"), "401: invalid_client: AADSTS50013: Assertion failed signature validation."),
        ("not-a-jwt".to_string(), "400: invalid_request: AADSTS50027: JWT token is invalid or malformed."),
    ];
    for (token, expected) in cases {
        std::fs::write(&file, &token).unwrap();
        let err = source.credential().await.unwrap_err();
        let text = one_line(&kit, &err, &[&token]);
        assert!(text.starts_with(&format!("Azure AD token: {} answered ", kit.token_uri())), "{text}");
        assert!(text.contains(expected), "{text:?} lacks {expected:?}");
        assert!(!err.is_retryable(), "{text}");
    }
    assert!(kit.issued_tokens().is_empty(), "nothing issued for a refused assertion");
}

#[tokio::test]
async fn missing_settings_and_token_files_stop_regcred_at_start_up() {
    let kit = Azure::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, settings) = workload_identity(&kit, dir.path());

    let no_tenant = Settings { tenant_id: None, ..settings.clone() };
    let err = discover(host(&kit), &no_tenant, http()).err().unwrap();
    assert!(matches!(&err, SourceError::NoCredentials { .. }));
    assert!(
        err.to_string()
            .contains("no Azure credentials found: workload identity needs AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE"),
        "{err}"
    );
    assert!(!err.is_retryable());

    let forced = Settings { identity: IdentityKind::ClientSecret, ..settings.clone() };
    let err = discover(host(&kit), &forced, http()).err().unwrap();
    assert!(
        err.to_string().ends_with(
            "no Azure credentials found: client secret authentication needs AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET"
        ),
        "{err}"
    );

    let gone = dir.path().join("nowhere");
    let missing = Settings { federated_token_file: Some(gone.clone()), ..settings };
    let err = discover(host(&kit), &missing, http()).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "AZURE_FEDERATED_TOKEN_FILE={}: no such file; check the path and the volume that provides it",
            gone.display()
        )
    );
    assert!(kit.requests().is_empty(), "nothing sent before the settings are complete");
}

#[tokio::test]
async fn exchange_refusals_name_the_step_and_carry_acrs_text() {
    let kit = Azure::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, settings) = workload_identity(&kit, dir.path());

    // The exchange must name the registry it is sent to.
    let other = acr("someoneelse.azurecr.io");
    let err = discover(other, &settings, http()).unwrap().credential().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("ACR exchange: {}/oauth2/exchange answered 400: BAD_REQUEST: ", kit.url())),
        "{text}"
    );

    let source = discover(host(&kit), &settings, http()).unwrap();
    kit.faults().inject(
        Some("POST"),
        "/oauth2/exchange",
        Fault::Status { code: 401, body: None, retry_after: None },
        1,
    );
    let err = source.credential().await.unwrap_err();
    assert_eq!(
        one_line(&kit, &err, &[]),
        format!("ACR exchange: {}/oauth2/exchange answered 401: UNAUTHORIZED: authentication required", kit.url())
    );
    assert!(!err.is_retryable());
    source.credential().await.expect("the next exchange succeeds");
}

#[tokio::test]
async fn throttling_is_retryable_after_the_delay_azure_asks_for() {
    let kit = Azure::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, settings) = workload_identity(&kit, dir.path());
    let source = discover(host(&kit), &settings, http()).unwrap();
    let path = format!("/{}/oauth2/v2.0/token", kit.tenant_id());
    kit.faults().inject(Some("POST"), &path, Fault::Status { code: 429, body: None, retry_after: Some(7) }, 1);
    let err = source.credential().await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(err.metric_label(), "endpoint_429");
    assert!(one_line(&kit, &err, &[]).contains("answered 429: temporarily_unavailable: AADSTS90033"));

    kit.faults().inject(
        Some("POST"),
        "/oauth2/exchange",
        Fault::Status { code: 503, body: None, retry_after: Some(3) },
        1,
    );
    let err = source.credential().await.unwrap_err();
    assert!(err.is_retryable() && err.retry_after() == Some(Duration::from_secs(3)), "{err}");

    kit.faults().inject(None, "/metadata/identity", Fault::Status { code: 429, body: None, retry_after: Some(5) }, 1);
    kit.enable_system_identity();
    let mi = discover(host(&kit), &settings_for_mi(&kit), http()).unwrap();
    let err = mi.credential().await.unwrap_err();
    assert!(err.is_retryable() && err.retry_after() == Some(Duration::from_secs(5)), "{err}");
    mi.credential().await.expect("then IMDS answers");
}

fn settings_for_mi(kit: &Azure) -> Settings {
    Settings { identity: IdentityKind::ManagedIdentity, ..settings(kit) }
}

#[tokio::test]
async fn a_hung_endpoint_times_out_and_garbage_is_retryable() {
    let kit = Azure::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, settings) = workload_identity(&kit, dir.path());
    let quick = HttpClient::new(Duration::from_millis(300)).unwrap();
    let source = discover(host(&kit), &settings, quick).unwrap();

    kit.faults().inject(Some("POST"), "/oauth2/exchange", Fault::Hang, 1);
    let err = source.credential().await.unwrap_err();
    assert_eq!(err.metric_label(), "timeout");
    assert!(err.is_retryable());
    assert_eq!(
        one_line(&kit, &err, &[]),
        format!("ACR exchange: request to {}/oauth2/exchange timed out after 300ms", kit.url())
    );

    kit.faults().inject(None, "/", Fault::Malformed, 1);
    let err = source.credential().await.unwrap_err();
    assert_eq!(err.metric_label(), "bad_response");
    assert!(err.is_retryable());
    assert!(one_line(&kit, &err, &[]).ends_with("answered with an unusable token response: not the expected JSON"));

    kit.faults().inject(Some("POST"), "/oauth2/exchange", Fault::Drop, 1);
    let err = source.credential().await.unwrap_err();
    assert_eq!(err.metric_label(), "transport");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn the_refresh_tokens_expiry_is_believed_up_to_twelve_hours() {
    let kit = Azure::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, settings) = workload_identity(&kit, dir.path());
    let source = discover(host(&kit), &settings, http()).unwrap();

    kit.set_refresh_token_lifetime(Duration::from_secs(600));
    let cred = source.credential().await.unwrap();
    let left = cred.expires_at.unwrap().duration_since(SystemTime::now()).unwrap();
    assert!(left <= Duration::from_secs(600) && left > Duration::from_secs(590), "{left:?}");

    let answer = |token: String| Fault::Status {
        code: 200,
        body: Some(serde_json::json!({ "refresh_token": token }).to_string()),
        retry_after: None,
    };
    for absurd in [serde_json::json!(9_000_000_000_000u64), serde_json::json!(u64::MAX), serde_json::json!(1e300)] {
        kit.faults().inject(
            Some("POST"),
            "/oauth2/exchange",
            answer(kit.refresh_token_with_exp(Some(absurd.clone()))),
            1,
        );
        let cred = source.credential().await.unwrap();
        let left = cred.expires_at.unwrap().duration_since(SystemTime::now()).unwrap();
        let max = crate::credential::MAX_TOKEN_LIFETIME;
        assert!(left <= max && left > max - Duration::from_secs(60), "{absurd}: {left:?}");
    }

    let no_exp = kit.refresh_token_with_exp(None);
    kit.faults().inject(Some("POST"), "/oauth2/exchange", answer(no_exp.clone()), 1);
    let err = source.credential().await.unwrap_err();
    let text = one_line(&kit, &err, &[&no_exp]);
    assert!(text.ends_with("the refresh token has no numeric exp claim, so its expiry is unknown"), "{text}");
}

#[tokio::test]
async fn imds_requires_its_metadata_header() {
    let kit = Azure::start().await;
    kit.enable_system_identity();
    let url = format!("{}?api-version=2018-02-01&resource=https://containerregistry.azure.net", kit.imds_endpoint());
    let resp = http().get(&url, &[]).await.unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(
        super::azure_error::message(&resp.body, resp.status),
        "invalid_request: Required metadata header not specified"
    );
    let resp = http().get(&url, &[("Metadata", "true")]).await.unwrap();
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["expires_in"], "86399", "IMDS writes its numbers as strings");
}

#[tokio::test]
async fn a_pods_own_service_account_token_is_its_identity() {
    let kit = Azure::start().await;
    let app = kit.create_app();
    kit.add_federated_credential(&app, &kit.cluster_issuer(), "system:serviceaccount:apps:web");
    kit.allow_pull(&app);
    let token = kit.service_account_token("apps", "web", Duration::from_secs(600));
    let source = AcrSource::for_pod(
        host(&kit),
        app.parse().unwrap(),
        kit.tenant_id().parse().unwrap(),
        Secret::new(token.clone()),
        &settings(&kit),
        http(),
    );
    assert!(source.describe().ends_with("token the pod's service account token)"), "{}", source.describe());
    let cred = source.credential().await.unwrap();
    assert_eq!(pull_actions(&kit, &cred, "web").await, ["pull"]);
    assert!(kit.requests()[0].body.contains(&token), "the pod's token is the client assertion");

    // Another pod's service account is not federated with that app.
    let other = kit.service_account_token("apps", "batch", Duration::from_secs(600));
    let source = AcrSource::for_pod(
        host(&kit),
        app.parse().unwrap(),
        kit.tenant_id().parse().unwrap(),
        Secret::new(other.clone()),
        &settings(&kit),
        http(),
    );
    let err = source.credential().await.unwrap_err();
    assert!(one_line(&kit, &err, &[&other]).contains("AADSTS70021"), "{err}");
}
