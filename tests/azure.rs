//! Azure Container Registry beside Google and Amazon ECR: the provider-per-host
//! design with the real binary against the test kit's emulators (Entra ID,
//! IMDS, the registry's token server; ECR and STS; Google's metadata server).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{finish, read_json, terminate, wait_for, Kit, Output};
use regcred_testkit::{Aws, Azure, AzureToken, Fault};
use serde_json::{json, Value};
use tokio::process::Command;

const ACR_USER: &str = "00000000-0000-0000-0000-000000000000";
const ECR: &str = "111122223333.dkr.ecr.eu-west-1.amazonaws.com";
const ROLE: &str = "arn:aws:iam::111122223333:role/registry-puller";
const EKS_ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/TESTKIT";
const NAMESPACE: &str = "regcred";
const SERVICE_ACCOUNT: &str = "regcred";

/// The kit and the Azure emulator beside it.
async fn kits() -> (Kit, Azure) {
    (Kit::start_emulator().await, Azure::start().await)
}

/// `regcred ARGS` with Entra ID, IMDS and the registry's token server on the
/// emulator, and `env` set.
fn command(kit: &Kit, azure: &Azure, args: &[&str], env: &[(&str, String)]) -> Command {
    let endpoints = [
        ("AZURE_AUTHORITY_HOST", azure.url()),
        ("REGCRED_AZURE_IMDS_ENDPOINT", azure.imds_endpoint()),
        ("REGCRED_AZURE_REGISTRY_ENDPOINT", azure.url()),
    ];
    kit.command_with(args, &[&endpoints[..], env].concat())
}

async fn run(kit: &Kit, azure: &Azure, args: &[&str], env: &[(&str, String)]) -> Output {
    finish(command(kit, azure, args, env).spawn().unwrap()).await
}

/// AKS workload identity: an app federated with the kit's cluster issuer
/// for `regcred/regcred`, allowed to pull, and the variables the webhook
/// injects, with the projected token in the kit's directory.
fn workload_identity_env(kit: &Kit, azure: &Azure) -> (String, Vec<(&'static str, String)>) {
    let app = azure.create_app();
    let subject = format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}");
    azure.add_federated_credential(&app, &azure.cluster_issuer(), &subject);
    azure.allow_pull(&app);
    let file = kit.path("azure-identity-token");
    std::fs::write(&file, azure.service_account_token(NAMESPACE, SERVICE_ACCOUNT, Duration::from_secs(3600))).unwrap();
    let env = vec![
        ("AZURE_CLIENT_ID", app.clone()),
        ("AZURE_TENANT_ID", azure.tenant_id()),
        ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
    ];
    (app, env)
}

/// Uses `username`/`password` as a Docker client does at the registry's
/// token endpoint (basic authentication, `repository:REPO:pull`): the
/// status, and the access token's claims when granted.
async fn docker_token(azure: &Azure, username: &str, password: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let authority = azure.url().trim_start_matches("http://").to_string();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let path = format!("/oauth2/token?service={}&scope=repository:team/app:pull", azure.login_server());
    let mut s = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAuthorization: Basic {basic}\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body: Value = serde_json::from_str(buf.split_once("\r\n\r\n").map_or("", |(_, b)| b)).unwrap_or_default();
    let claims = body["access_token"]
        .as_str()
        .and_then(|t| t.split('.').nth(1))
        .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    (status, claims)
}

/// The ACR entry of a document or a plugin answer, checked against what the
/// emulator issued: the refresh-token user, a current refresh token of this
/// registry as the password, `auth` = base64(user:password) when present,
/// and a pull the registry's token server grants with them.
async fn acr_entry(azure: &Azure, entry: &Value) -> AzureToken {
    assert_eq!(entry["username"], ACR_USER, "{entry}");
    let password = entry["password"].as_str().unwrap();
    if !entry["auth"].is_null() {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{ACR_USER}:{password}"));
        assert_eq!(entry["auth"], auth.as_str());
    }
    let now = SystemTime::now();
    let token = azure
        .issued_tokens()
        .into_iter()
        .find(|t| t.token == password && t.kind == "acr_refresh" && t.expires_at > now)
        .expect("the password is a current ACR refresh token the emulator issued");
    assert_eq!(token.audience, azure.login_server());
    let (status, claims) = docker_token(azure, ACR_USER, password).await;
    assert_eq!(status, 200, "the registry grants a pull with the entry: {claims}");
    assert_eq!(claims["access"][0]["actions"], json!(["pull"]), "{claims}");
    token
}

/// IRSA against the AWS emulator: a projected token signed by the kit's
/// key, which the emulated STS trusts as the cluster's OIDC issuer.
fn irsa_env(kit: &Kit, aws: &Aws) -> Vec<(&'static str, String)> {
    aws.trust_oidc_issuer(EKS_ISSUER, &kit.google.jwks(), "sts.amazonaws.com");
    aws.allow_role(ROLE);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let token = kit.google.sign_jwt(&json!({
        "iss": EKS_ISSUER, "aud": ["sts.amazonaws.com"], "sub": "system:serviceaccount:regcred:regcred",
        "iat": now, "exp": now + 3600,
    }));
    let file = kit.path("eks-token");
    std::fs::write(&file, token).unwrap();
    vec![
        ("AWS_ROLE_ARN", ROLE.to_string()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", file.display().to_string()),
        ("AWS_ENDPOINT_URL_ECR", aws.url()),
        ("AWS_ENDPOINT_URL_STS", aws.url()),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", aws.url()),
    ]
}

fn render_doc(out: &Output) -> Value {
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap()
}

#[tokio::test]
async fn once_writes_one_document_for_google_ecr_and_acr_keyless() {
    let (kit, azure) = kits().await;
    let aws = Aws::start().await;
    let acr = azure.login_server();
    let (app, mut env) = workload_identity_env(&kit, &azure);
    env.extend(irsa_env(&kit, &aws));
    // No key file and no gcloud login under HOME: Google's metadata server.
    let hosts = format!("gcr.io,{ECR},{acr}");
    let out = run(&kit, &azure, &["once", "--registry", &hosts, "--secret", "pull"], &env).await;
    assert_eq!(out.code, Some(0), "{out:?}");

    let doc = kit.secret_doc("default", "pull", ".dockerconfigjson").await.unwrap();
    let mut hosts: Vec<&String> = doc["auths"].as_object().unwrap().keys().collect();
    hosts.sort();
    let mut expected = [ECR.to_string(), acr.clone(), "gcr.io".to_string()];
    expected.sort();
    assert_eq!(hosts, expected.iter().collect::<Vec<_>>(), "one document, three entries: {doc}");

    // Google: a token the metadata server issued.
    let google = &doc["auths"]["gcr.io"];
    assert_eq!(google["username"], "oauth2accesstoken");
    let issued = kit.google.issued_tokens();
    let token = issued.iter().find(|t| t.access_token == google["password"].as_str().unwrap()).unwrap();
    assert_eq!(token.grant, "metadata", "keyless: {token:?}");
    assert!(kit.google.is_valid_token(&token.access_token));

    // AWS: an ECR token signed with the IRSA role's session.
    let entry = &doc["auths"][ECR];
    assert_eq!(entry["username"], "AWS");
    let ecr = aws.current_ecr_token(entry["password"].as_str().unwrap()).expect("a current ECR token");
    assert!(ecr.principal.contains("assumed-role/registry-puller"), "{ecr:?}");
    let key = aws.issued_keys().into_iter().find(|k| k.access_key_id == ecr.access_key_id).unwrap();
    assert_eq!(key.source, "web-identity");

    // Azure: a refresh token exchanged for the workload identity's AAD token.
    let refresh = acr_entry(&azure, &doc["auths"][acr.as_str()]).await;
    assert_eq!(refresh.client_id, app);
    let aad = azure.issued_tokens().into_iter().filter(|t| t.kind == "client_assertion").collect::<Vec<_>>();
    assert_eq!(aad.len(), 1, "one AAD token, from the federated token");
    assert_eq!(aad[0].client_id, app);
}

#[tokio::test]
async fn render_with_an_acr_host_asks_no_other_cloud_and_others_never_ask_azure() {
    let (kit, azure) = kits().await;
    let acr = azure.login_server();
    let (_, env) = workload_identity_env(&kit, &azure);
    let doc = render_doc(&run(&kit, &azure, &["render", "--registry", &acr], &env).await);
    assert_eq!(doc["auths"].as_object().unwrap().len(), 1, "{doc}");
    acr_entry(&azure, &doc["auths"][acr.as_str()]).await;
    assert!(kit.google.requests().is_empty(), "no Google source looked for");

    // Google beside it; then Google alone, with Azure's settings broken:
    // they are looked at only for an ACR host.
    let doc = render_doc(
        &run(&kit, &azure, &["render", "--key-file", &kit.key_file(), "--registry", &format!("eu.gcr.io,{acr}")], &env)
            .await,
    );
    assert_eq!(doc["auths"]["eu.gcr.io"]["username"], "oauth2accesstoken");
    acr_entry(&azure, &doc["auths"][acr.as_str()]).await;
    azure.clear_requests();
    let broken = [("AZURE_FEDERATED_TOKEN_FILE", kit.path("nowhere").display().to_string())];
    let args =
        ["render", "--key-file", &kit.key_file(), "--registry", "gcr.io", "--azure-identity", "workload-identity"];
    render_doc(&run(&kit, &azure, &args, &broken).await);
    assert!(azure.requests().is_empty());
}

#[tokio::test]
async fn a_wrong_federated_token_or_a_missing_identity_is_one_line_naming_the_host_and_provider() {
    let (kit, azure) = kits().await;
    let acr = azure.login_server();
    let (_, env) = workload_identity_env(&kit, &azure);
    let file = kit.path("config.json");
    let args = ["once", "--registry", &acr, "--output-file", &file.display().to_string()];

    // Signed by the cluster, but for a service account the app does not trust.
    let wrong = azure.service_account_token("other", SERVICE_ACCOUNT, Duration::from_secs(3600));
    std::fs::write(kit.path("azure-identity-token"), &wrong).unwrap();
    let out = run(&kit, &azure, &args, &env).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let last = out.stderr.trim().lines().last().unwrap();
    let prefix = format!(
        "regcred: error: Azure Container Registry credential for {acr}: Azure AD token: {} answered 400: invalid_request: AADSTS70021: No matching federated identity record found",
        azure.token_uri()
    );
    assert!(last.starts_with(&prefix), "{last}");
    assert!(!out.stderr.contains(&wrong), "the token is never quoted");
    assert_eq!(azure.requests().len(), 1, "a refused assertion is not retried");
    assert!(!file.exists());

    // No identity at all for the one that was asked for: a usage error,
    // before anything is minted.
    azure.clear_requests();
    let out = run(&kit, &azure, &[&args[..], &["--azure-identity", "workload-identity"]].concat(), &[]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.trim().starts_with(&format!("regcred: error: Azure Container Registry credential for {acr}: no Azure credentials found: workload identity needs AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE")),
        "{}",
        out.stderr
    );
    assert!(azure.requests().is_empty());
}

#[tokio::test]
async fn acr_faults_are_retried_and_absurd_expiries_clamped() {
    let (kit, azure) = kits().await;
    let acr = azure.login_server();
    let (_, env) = workload_identity_env(&kit, &azure);
    let file = kit.path("config.json");
    let once = ["once", "--registry", &acr, "--output-file", &file.display().to_string(), "--request-timeout", "1s"];
    azure.faults().inject(Some("POST"), "/oauth2/exchange", Fault::Hang, 1);
    azure.faults().inject(Some("POST"), "/oauth2/exchange", Fault::Malformed, 1);
    azure.faults().inject(
        Some("POST"),
        "/oauth2/exchange",
        Fault::Status { code: 429, body: None, retry_after: Some(1) },
        1,
    );
    let started = std::time::Instant::now();
    let out = run(&kit, &azure, &once, &env).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("ACR exchange: request to") && out.stderr.contains("timed out after 1s"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("unusable token response"), "{}", out.stderr);
    assert!(out.stderr.contains("answered 429"), "{}", out.stderr);
    assert!(started.elapsed() >= Duration::from_secs(2), "the timeout and the Retry-After were waited for");
    acr_entry(&azure, &read_json(&file).unwrap()["auths"][acr.as_str()]).await;

    let absurd = azure.refresh_token_with_exp(Some(json!(1e300)));
    let body = json!({ "refresh_token": absurd }).to_string();
    azure.faults().inject(
        Some("POST"),
        "/oauth2/exchange",
        Fault::Status { code: 200, body: Some(body), retry_after: None },
        1,
    );
    let out = run(&kit, &azure, &once, &env).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let expires = humantime::parse_rfc3339(out.stdout.trim().rsplit("credential expires ").next().unwrap()).unwrap();
    assert!(expires <= SystemTime::now() + Duration::from_secs(12 * 3600), "clamped to 12h: {}", out.stdout);
    assert_eq!(read_json(&file).unwrap()["auths"][acr.as_str()]["password"], absurd.as_str());
}

#[tokio::test]
async fn a_failing_acr_group_never_publishes_a_partial_document_and_google_keeps_refreshing() {
    let (kit, azure) = kits().await;
    let acr = azure.login_server();
    let (_, env) = workload_identity_env(&kit, &azure);
    kit.google.set_token_lifetime(Duration::from_secs(4));
    azure.set_refresh_token_lifetime(Duration::from_secs(8));
    let file = kit.path("config.json");
    let fail = || Fault::Status { code: 500, body: None, retry_after: None };
    azure.faults().inject(Some("POST"), "/oauth2/exchange", fail(), 2);
    let key = kit.key_file();
    let out = file.display().to_string();
    let args = ["run", "--key-file", &key, "--registry", &format!("gcr.io,{acr}"), "--output-file", &out];
    let args = [&args[..], &["--admin-addr", "off", "--refresh-before", "1h", "--jitter", "0s"]].concat();
    let child = command(&kit, &azure, &args, &env).spawn().unwrap();

    wait_for(Duration::from_secs(20), "Google's first token and ACR's first failure", async || {
        (!kit.issued().is_empty() && failed_exchanges(&azure) >= 1).then_some(())
    })
    .await;
    assert!(!file.exists(), "nothing written while the ACR group has no credential");
    let first = wait_for(Duration::from_secs(20), "the first document", async || read_json(&file)).await;
    let acr_password = acr_entry(&azure, &first["auths"][acr.as_str()]).await.token;

    // ACR fails from now on; Google's token keeps being replaced, and every
    // document still holds the last ACR token (valid until its expiry).
    let failed_before = failed_exchanges(&azure);
    azure.faults().inject(Some("POST"), "/oauth2/exchange", fail(), 1000);
    let google_password = first["auths"]["gcr.io"]["password"].clone();
    let next = wait_for(Duration::from_secs(20), "a newer Google token", async || {
        read_json(&file).filter(|d| d["auths"]["gcr.io"]["password"] != google_password)
    })
    .await;
    assert_eq!(next["auths"][acr.as_str()]["password"], acr_password.as_str(), "{next}");
    wait_for(Duration::from_secs(20), "ACR's refresh to fail", async || {
        (failed_exchanges(&azure) > failed_before).then_some(())
    })
    .await;
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&format!("Azure Container Registry credential for {acr}: ACR exchange")), "{stderr}");
}

/// How many token exchanges the registry has refused with a 500.
fn failed_exchanges(azure: &Azure) -> usize {
    azure.requests().iter().filter(|r| r.path == "/oauth2/exchange" && r.status == 500).count()
}

#[tokio::test]
async fn no_azure_secret_reaches_the_logs_even_at_trace_level() {
    let (kit, azure) = kits().await;
    let acr = azure.login_server();
    let (_, env) = workload_identity_env(&kit, &azure);
    let assertion = std::fs::read_to_string(kit.path("azure-identity-token")).unwrap();
    let file = kit.path("config.json");
    for format in ["text", "json"] {
        let args = ["once", "--registry", &acr, "--output-file", &file.display().to_string()];
        let args = [&args[..], &["--log-level", "trace", "--log-format", format]].concat();
        let out = run(&kit, &azure, &args, &env).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.lines().filter(|l| l.contains("TRACE")).count() >= 5, "trace logging is on ({format}): {all}");
        let issued = azure.issued_tokens();
        assert!(issued.iter().any(|t| t.kind == "acr_refresh") && issued.iter().any(|t| t.kind == "client_assertion"));
        for t in issued {
            assert!(!all.contains(&t.token), "a {} token in the {format} logs", t.kind);
        }
        assert!(!all.contains(assertion.trim()), "the federated token in the {format} logs");
        let doc = read_json(&file).unwrap();
        assert!(!all.contains(doc["auths"][acr.as_str()]["auth"].as_str().unwrap()), "auth field in the {format} logs");
    }
}

#[tokio::test]
async fn help_names_the_acr_host_forms_and_the_azure_flags() {
    let (kit, azure) = kits().await;
    let out = run(&kit, &azure, &["once", "--help"], &[]).await;
    assert_eq!(out.code, Some(0));
    for form in ["NAME.azurecr.io", ".azurecr.cn", ".azurecr.us", "--azure-identity", "--azure-client-id"] {
        assert!(out.stdout.contains(form), "{form} missing from --help");
    }
    assert!(!out.stdout.contains("--azure-registry-endpoint"), "the test hook stays hidden");
}

/// `regcred credential-provider` with `request` on stdin, as the kubelet runs it.
async fn provide(kit: &Kit, azure: &Azure, request: &Value, env: &[(&str, String)]) -> Output {
    use tokio::io::AsyncWriteExt as _;
    let mut child =
        command(kit, azure, &["credential-provider"], env).stdin(std::process::Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(request.to_string().as_bytes()).await;
    drop(stdin);
    finish(child).await
}

#[tokio::test]
async fn the_kubelet_plugin_answers_acr_images_for_their_registry_with_the_nodes_or_the_pods_identity() {
    let (kit, azure) = kits().await;
    let acr = azure.login_server();
    // The node's kubelet identity: the VM's managed identity, through IMDS.
    let node = azure.enable_system_identity();
    azure.allow_pull(&node);
    let api = "credentialprovider.kubelet.k8s.io/v1";
    let request = json!({"apiVersion": api, "kind": "CredentialProviderRequest", "image": format!("{acr}/team/app:1")});
    let out = provide(&kit, &azure, &request, &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["auth"].as_object().unwrap().keys().collect::<Vec<_>>(), [&acr], "keyed by the image's registry");
    let token = acr_entry(&azure, &v["auth"][acr.as_str()]).await;
    assert_eq!(token.client_id, node, "the node's identity");
    assert!(azure.issued_tokens().iter().any(|t| t.kind == "managed_identity"));
    assert_eq!(v["cacheKeyType"], "Registry");
    let cached: u64 = v["cacheDuration"].as_str().unwrap().trim_end_matches('s').parse().unwrap();
    let lifetime = token.expires_at.duration_since(SystemTime::now()).unwrap().as_secs();
    assert!(cached <= lifetime - 290 && cached >= lifetime - 310, "{cached}s cached, {lifetime}s left");

    // A pod's token: answered as the identity its ServiceAccount names, the
    // token presented as that identity's federated credential.
    let app = azure.create_app();
    azure.add_federated_credential(&app, &azure.cluster_issuer(), "system:serviceaccount:apps:puller");
    azure.allow_pull(&app);
    let token = azure.service_account_token("apps", "puller", Duration::from_secs(3600));
    let pod = |annotations: Value| {
        json!({"apiVersion": api, "kind": "CredentialProviderRequest", "image": format!("{acr}/team/app:2"),
               "serviceAccountToken": token, "serviceAccountAnnotations": annotations})
    };
    let annotated = pod(
        json!({"kubernetes.azure.com/acr-client-id": app, "kubernetes.azure.com/acr-tenant-id": azure.tenant_id()}),
    );
    let out = provide(&kit, &azure, &annotated, &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let refresh = acr_entry(&azure, &v["auth"][acr.as_str()]).await;
    assert_eq!(refresh.client_id, app, "the pod's identity, not the node's");
    assert_eq!(v["cacheKeyType"], "Registry");

    // Without the annotation, or without a tenant, nothing is asked of Azure.
    let before = azure.requests().len();
    for (request, missing) in [
        (pod(json!({})), "no kubernetes.azure.com/acr-client-id annotation"),
        (pod(json!({"kubernetes.azure.com/acr-client-id": app})), "names the tenant"),
    ] {
        let out = provide(&kit, &azure, &request, &[]).await;
        assert_eq!(out.code, Some(2), "{out:?}");
        let line = out.stderr.trim();
        assert!(line.contains(&format!("pod's service account token for {acr} (Azure Container Registry)")), "{line}");
        assert!(line.contains(missing) && line.contains("never answered with the node's identity"), "{line}");
        assert!(!line.contains(&token));
    }
    assert_eq!(azure.requests().len(), before);
}

/// `--dry-run` checks that the Azure identity asked for has every variable
/// it needs, without reading its token file or making a request.
#[tokio::test]
async fn dry_run_refuses_an_incomplete_workload_identity_without_a_request() {
    let (kit, azure) = kits().await;
    let host = azure.login_server();
    let args = ["once", "--registry", &host, "--output-file", "/nonexistent/config.json", "--dry-run"];
    let client = ("AZURE_CLIENT_ID", "00001111-aaaa-2222-bbbb-3333cccc4444".to_string());
    let file = ("AZURE_FEDERATED_TOKEN_FILE", "/nonexistent/token".to_string());
    let out = run(&kit, &azure, &args, &[client.clone(), file.clone()]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("workload identity needs AZURE_CLIENT_ID, AZURE_TENANT_ID"), "{}", out.stderr);
    let out = run(&kit, &azure, &args, &[client, file, ("AZURE_TENANT_ID", azure.tenant_id())]).await;
    assert_eq!(out.code, Some(0), "complete; the token file is read at start, not by --dry-run: {out:?}");
    assert!(azure.requests().is_empty(), "nothing contacted");
}
