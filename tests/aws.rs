//! Amazon ECR beside Google: the provider-per-host design and every AWS
//! credential source, with the real binary against the test kit's AWS
//! emulator (SigV4-verifying ECR, STS, IMDSv2, the Pod Identity agent).

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{finish, read_json, terminate, wait_for, Kit, Output};
use regcred_testkit::{Aws, Fault};
use serde_json::{json, Value};
use tokio::process::Command;

const ECR: &str = "111122223333.dkr.ecr.eu-west-1.amazonaws.com";
const ROLE: &str = "arn:aws:iam::111122223333:role/registry-puller";
const ISSUER: &str = "https://oidc.eks.eu-west-1.amazonaws.com/id/TESTKIT";

/// The kit, and the AWS emulator beside it.
async fn kits() -> (Kit, Aws) {
    (Kit::start_emulator().await, Aws::start().await)
}

/// `regcred ARGS` with the AWS endpoints on the emulator and `env` set.
fn command(kit: &Kit, aws: &Aws, args: &[&str], env: &[(&str, String)]) -> Command {
    let endpoints = [
        "AWS_ENDPOINT_URL_ECR",
        "AWS_ENDPOINT_URL_ECR_PUBLIC",
        "AWS_ENDPOINT_URL_STS",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    ]
    .map(|name| (name, aws.url()));
    kit.command_with(args, &[&endpoints[..], env].concat())
}

async fn run(kit: &Kit, aws: &Aws, args: &[&str], env: &[(&str, String)]) -> Output {
    finish(command(kit, aws, args, env).spawn().unwrap()).await
}

/// The emulator's static key in the environment.
fn static_env(aws: &Aws) -> Vec<(&'static str, String)> {
    let (id, secret) = aws.static_key();
    vec![("AWS_ACCESS_KEY_ID", id), ("AWS_SECRET_ACCESS_KEY", secret)]
}

/// IRSA: a projected ServiceAccount token (signed by the kit's key, which
/// the emulated STS trusts as the cluster's OIDC issuer) and the role.
fn irsa_env(kit: &Kit, aws: &Aws) -> Vec<(&'static str, String)> {
    aws.trust_oidc_issuer(ISSUER, &kit.google.jwks(), "sts.amazonaws.com");
    aws.allow_role(ROLE);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let token = kit.google.sign_jwt(&json!({
        "iss": ISSUER, "aud": ["sts.amazonaws.com"], "sub": "system:serviceaccount:regcred:regcred",
        "iat": now, "exp": now + 3600,
    }));
    let file = kit.path("eks-token");
    std::fs::write(&file, token).unwrap();
    vec![("AWS_ROLE_ARN", ROLE.to_string()), ("AWS_WEB_IDENTITY_TOKEN_FILE", file.display().to_string())]
}

/// The ECR entry of a document, checked against what the emulator issued:
/// user `AWS`, a current token's password, `auth` = base64(user:password).
fn ecr_entry(aws: &Aws, doc: &Value, host: &str) -> regcred_testkit::IssuedEcrToken {
    let entry = &doc["auths"][host];
    assert_eq!(entry["username"], "AWS", "{doc}");
    let password = entry["password"].as_str().unwrap();
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("AWS:{password}"));
    assert_eq!(entry["auth"], auth);
    aws.current_ecr_token(password).expect("the password is an ECR token the emulator issued and still current")
}

fn render_doc(out: &Output) -> Value {
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(&out.stdout).unwrap()
}

#[tokio::test]
async fn once_writes_one_document_for_google_and_ecr_keyless() {
    let (kit, aws) = kits().await;
    let env = irsa_env(&kit, &aws);
    let key = kit.key_file();
    let args = ["once", "--key-file", &key, "--registry", &format!("gcr.io,{ECR}"), "--secret", "pull"];
    let out = run(&kit, &aws, &args, &env).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let doc = kit.secret_doc("default", "pull", ".dockerconfigjson").await.unwrap();
    assert_eq!(doc["auths"].as_object().unwrap().len(), 2, "{doc}");
    assert!(kit.google.is_valid_token(doc["auths"]["gcr.io"]["password"].as_str().unwrap()));
    let token = ecr_entry(&aws, &doc, ECR);
    assert_eq!((token.service.as_str(), token.region.as_str()), ("ecr", "eu-west-1"));
    assert!(token.principal.contains("assumed-role/registry-puller"), "signed with the IRSA role: {token:?}");
    let key = aws.issued_keys().into_iter().find(|k| k.access_key_id == token.access_key_id).unwrap();
    assert_eq!(key.source, "web-identity");
}

#[tokio::test]
async fn render_mixes_clouds_and_an_ecr_only_document_needs_no_google_credentials() {
    let (kit, aws) = kits().await;
    let env = static_env(&aws);
    let hosts = format!("eu.gcr.io,{ECR},public.ecr.aws");
    let doc =
        render_doc(&run(&kit, &aws, &["render", "--key-file", &kit.key_file(), "--registry", &hosts], &env).await);
    assert_eq!(doc["auths"]["eu.gcr.io"]["username"], "oauth2accesstoken");
    assert_eq!(ecr_entry(&aws, &doc, ECR).service, "ecr");
    assert_eq!(ecr_entry(&aws, &doc, "public.ecr.aws").service, "ecr-public");

    kit.google.clear_requests();
    let doc = render_doc(&run(&kit, &aws, &["render", "--registry", ECR], &env).await);
    assert_eq!(doc["auths"].as_object().unwrap().len(), 1);
    assert!(kit.google.requests().is_empty(), "no Google source looked for");
    // And a Google-only document needs no AWS credentials.
    let before = aws.requests().len();
    render_doc(&run(&kit, &aws, &["render", "--key-file", &kit.key_file(), "--registry", "gcr.io"], &[]).await);
    assert_eq!(aws.requests().len(), before);
}

#[tokio::test]
async fn a_wrong_secret_key_fails_the_signature_check_in_one_line() {
    let (kit, aws) = kits().await;
    let (id, secret) = aws.static_key();
    // The same key ID, the secret's last character changed.
    let last = if secret.ends_with('x') { 'y' } else { 'x' };
    let wrong = format!("{}{last}", &secret[..secret.len() - 1]);
    let env = [("AWS_ACCESS_KEY_ID", id), ("AWS_SECRET_ACCESS_KEY", wrong.clone())];
    let out =
        run(&kit, &aws, &["once", "--registry", ECR, "--output-file", &kit.path("c.json").display().to_string()], &env)
            .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let last = out.stderr.lines().last().unwrap();
    assert!(last.starts_with("regcred: error: Amazon ECR credential for 111122223333.dkr.ecr.eu-west-1.amazonaws.com: ECR GetAuthorizationToken"), "{last}");
    assert!(
        last.contains("403 InvalidSignatureException: The request signature we calculated does not match"),
        "{last}"
    );
    assert!(!out.stderr.contains(&wrong));
    assert_eq!(aws.requests().len(), 1, "a refused signature is not retried");
    assert!(!kit.path("c.json").exists());
}

#[tokio::test]
async fn half_an_aws_identity_is_a_usage_error_naming_the_host() {
    let (kit, aws) = kits().await;
    let env = [("AWS_ROLE_ARN", ROLE.to_string())];
    let out = run(&kit, &aws, &["render", "--registry", &format!("gcr.io,{ECR}")], &env).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let line = out.stderr.trim();
    assert!(line.starts_with(&format!("regcred: error: Amazon ECR credential for {ECR}: no AWS credentials found: AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not")), "{line}");
    assert!(
        aws.requests().is_empty() && kit.google.requests().is_empty(),
        "nothing is minted before every source is found"
    );

    let mut env = irsa_env(&kit, &aws);
    env[1].1 = kit.path("no-such-token").display().to_string();
    let out = run(&kit, &aws, &["render", "--registry", ECR], &env).await;
    assert_eq!(out.code, Some(1), "read at each mint, so a refresh failure: {out:?}");
    let expected = format!("AWS_WEB_IDENTITY_TOKEN_FILE={}: no such file; check the path and the volume", env[1].1);
    assert!(out.stderr.trim().contains(&expected), "{}", out.stderr);
}

#[tokio::test]
async fn static_keys_pod_identity_and_instance_metadata_each_mint() {
    let (kit, aws) = kits().await;
    let doc = render_doc(&run(&kit, &aws, &["render", "--registry", ECR], &static_env(&aws)).await);
    assert_eq!(ecr_entry(&aws, &doc, ECR).access_key_id, aws.static_key().0);

    let token_file = kit.path("pod-identity-token");
    std::fs::write(&token_file, aws.pod_identity_token()).unwrap();
    let pod = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("{}/v1/credentials", aws.url())),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file.display().to_string()),
    ];
    let doc = render_doc(&run(&kit, &aws, &["render", "--registry", ECR], &pod).await);
    assert!(ecr_entry(&aws, &doc, ECR).principal.contains("regcred-pod"));
    std::fs::write(&token_file, "not-the-token").unwrap();
    let out = run(&kit, &aws, &["render", "--registry", ECR], &pod).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("EKS Pod Identity credentials") && out.stderr.contains("InvalidTokenException"),
        "{}",
        out.stderr
    );

    let doc = render_doc(&run(&kit, &aws, &["render", "--registry", ECR], &[]).await);
    assert!(ecr_entry(&aws, &doc, ECR).principal.contains(&aws.instance_role()), "IMDS is the last resort");
    let imds: Vec<_> = aws.requests().into_iter().filter(|r| r.path.starts_with("/latest/")).collect();
    assert_eq!(imds[0].method, "PUT", "IMDSv2: a session token first");
    assert!(imds[1..].iter().all(|r| r.header("x-aws-ec2-metadata-token").is_some() && r.status == 200));
}

#[tokio::test]
async fn a_role_is_assumed_on_top_with_a_signed_assume_role() {
    let (kit, aws) = kits().await;
    let cross = "arn:aws:iam::444455556666:role/cross-account-puller";
    let args = ["render", "--registry", ECR, "--aws-role-arn", cross];
    let out = run(&kit, &aws, &args, &static_env(&aws)).await;
    assert_eq!(out.code, Some(1), "not yet trusted: {out:?}");
    assert!(out.stderr.contains("STS AssumeRole") && out.stderr.contains("403 AccessDenied"), "{}", out.stderr);
    aws.allow_role(cross);
    let doc = render_doc(&run(&kit, &aws, &args, &static_env(&aws)).await);
    let token = ecr_entry(&aws, &doc, ECR);
    assert!(token.principal.contains("assumed-role/cross-account-puller"), "{token:?}");
    let sts = aws.requests().into_iter().find(|r| r.body.contains("Action=AssumeRole&")).unwrap();
    assert!(sts.header("authorization").unwrap().contains("/sts/aws4_request"), "AssumeRole is signed for sts");
}

#[tokio::test]
async fn ecr_faults_are_retried_and_absurd_expiries_clamped() {
    let (kit, aws) = kits().await;
    let file = kit.path("config.json").display().to_string();
    let once = ["once", "--registry", ECR, "--output-file", &file, "--request-timeout", "1s"];
    let env = static_env(&aws);
    aws.faults().inject(Some("POST"), "/", Fault::Hang, 1);
    aws.faults().inject(Some("POST"), "/", Fault::Malformed, 1);
    aws.faults().inject(Some("POST"), "/", Fault::Status { code: 400, body: None, retry_after: Some(1) }, 1);
    let started = std::time::Instant::now();
    let out = run(&kit, &aws, &once, &env).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("timed out after 1s"), "{}", out.stderr);
    assert!(out.stderr.contains("unusable token response"), "{}", out.stderr);
    assert!(out.stderr.contains("400 ThrottlingException: Rate exceeded"), "{}", out.stderr);
    assert!(started.elapsed() >= Duration::from_secs(2), "the timeout and the Retry-After were waited for");
    ecr_entry(&aws, &read_json(Path::new(&file)).unwrap(), ECR);

    let absurd = json!({"authorizationData": [{"authorizationToken": "QVdTOnBhc3N3b3Jk", "expiresAt": 1e300}]});
    aws.faults().inject(
        Some("POST"),
        "/",
        Fault::Status { code: 200, body: Some(absurd.to_string()), retry_after: None },
        1,
    );
    let out = run(&kit, &aws, &once, &env).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let expires = out.stdout.trim().rsplit("credential expires ").next().unwrap();
    let expires = humantime::parse_rfc3339(expires).unwrap();
    assert!(expires <= SystemTime::now() + Duration::from_secs(12 * 3600), "clamped to 12h: {}", out.stdout);
    assert_eq!(read_json(Path::new(&file)).unwrap()["auths"][ECR]["password"], "password");
}

#[tokio::test]
async fn sts_throttling_is_retried_and_a_refused_web_identity_is_not() {
    let (kit, aws) = kits().await;
    let env = irsa_env(&kit, &aws);
    let file = kit.path("config.json").display().to_string();
    let throttled = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>";
    // IRSA calls STS first: the first POST is AssumeRoleWithWebIdentity.
    let fault = Fault::Status { code: 400, body: Some(throttled.into()), retry_after: None };
    aws.faults().inject(Some("POST"), "/", fault, 1);
    let out = run(&kit, &aws, &["once", "--registry", ECR, "--output-file", &file], &env).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("STS AssumeRoleWithWebIdentity") && out.stderr.contains("400 Throttling: Rate exceeded"),
        "{}",
        out.stderr
    );
    ecr_entry(&aws, &read_json(Path::new(&file)).unwrap(), ECR);

    // A token for another audience is refused for good: one request, no retry.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let token = kit.google.sign_jwt(&json!({"iss": ISSUER, "aud": "other", "sub": "s", "iat": now, "exp": now + 600}));
    std::fs::write(kit.path("eks-token"), token).unwrap();
    let before = aws.requests().len();
    let out = run(&kit, &aws, &["once", "--registry", ECR, "--output-file", &file], &env).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.trim().lines().last().unwrap().contains("400 InvalidIdentityToken"), "{}", out.stderr);
    assert_eq!(aws.requests().len(), before + 1);
}

#[tokio::test]
async fn a_failing_ecr_group_never_publishes_a_partial_document_and_google_keeps_refreshing() {
    let (kit, aws) = kits().await;
    kit.google.set_token_lifetime(Duration::from_secs(4));
    aws.set_ecr_token_lifetime(Duration::from_secs(8));
    let file = kit.path("config.json");
    aws.faults().inject(Some("POST"), "/", Fault::Status { code: 500, body: None, retry_after: None }, 2);
    let key = kit.key_file();
    let out = file.display().to_string();
    let args = ["run", "--key-file", &key, "--registry", &format!("gcr.io,{ECR}"), "--output-file", &out];
    let args = [&args[..], &["--admin-addr", "off", "--refresh-before", "1h", "--jitter", "0s"]].concat();
    let child = command(&kit, &aws, &args, &static_env(&aws)).spawn().unwrap();

    wait_for(Duration::from_secs(20), "Google's first token and ECR's first failure", async || {
        (!kit.issued().is_empty() && aws.requests().iter().any(|r| r.status == 500)).then_some(())
    })
    .await;
    assert!(!file.exists(), "nothing written while the ECR group has no credential");
    let first = wait_for(Duration::from_secs(20), "the first document", async || read_json(&file)).await;
    let ecr_password = ecr_entry(&aws, &first, ECR).password;

    // ECR fails from now on; Google's token keeps being replaced, and every
    // document still holds the last ECR token (valid until its expiry).
    aws.faults().inject(Some("POST"), "/", Fault::Status { code: 500, body: None, retry_after: None }, 1000);
    let google_password = first["auths"]["gcr.io"]["password"].clone();
    let next = wait_for(Duration::from_secs(20), "a newer Google token", async || {
        read_json(&file).filter(|d| d["auths"]["gcr.io"]["password"] != google_password)
    })
    .await;
    assert_eq!(next["auths"][ECR]["password"], ecr_password.as_str(), "{next}");
    wait_for(Duration::from_secs(20), "ECR's refresh to fail", async || {
        aws.requests().iter().filter(|r| r.status == 500).nth(2).map(|_| ())
    })
    .await;
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Amazon ECR credential for 111122223333.dkr.ecr.eu-west-1.amazonaws.com"), "{stderr}");
}

#[tokio::test]
async fn no_aws_secret_reaches_the_logs_even_at_trace_level() {
    let (kit, aws) = kits().await;
    let mut env = irsa_env(&kit, &aws);
    let cross = "arn:aws:iam::444455556666:role/cross-account-puller";
    aws.allow_role(cross);
    env.push(("REGCRED_AWS_ROLE_ARN", cross.to_string()));
    let file = kit.path("config.json").display().to_string();
    for format in ["text", "json"] {
        let args = ["once", "--registry", ECR, "--output-file", &file, "--log-level", "trace", "--log-format", format];
        let out = run(&kit, &aws, &args, &env).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.lines().count() > 20, "trace logging is on ({format})");
        for t in aws.issued_ecr_tokens() {
            assert!(!all.contains(&t.password), "ECR password in the {format} logs");
        }
        for k in aws.issued_keys() {
            assert!(!all.contains(&k.secret_access_key), "secret key in the {format} logs");
            if let Some(token) = k.session_token {
                assert!(!all.contains(&token), "session token in the {format} logs");
            }
        }
        let doc = read_json(Path::new(&file)).unwrap();
        assert!(!all.contains(doc["auths"][ECR]["auth"].as_str().unwrap()), "auth field in the {format} logs");
        assert!(!all.contains("Signature="), "a signature in the {format} logs");
        assert!(!all.contains("eyJhbGciOiJSUzI1NiIs"), "the web identity token in the {format} logs");
    }
}

#[tokio::test]
async fn help_names_the_ecr_host_forms() {
    let (kit, aws) = kits().await;
    let out = run(&kit, &aws, &["once", "--help"], &[]).await;
    assert_eq!(out.code, Some(0));
    for form in ["ACCOUNT.dkr.ecr.REGION.amazonaws.com", "public.ecr.aws", "dkr.ecr-fips", "--aws-role-arn"] {
        assert!(out.stdout.contains(form), "{form} missing from --help");
    }
}

/// `regcred credential-provider` with `request` on stdin, as the kubelet runs it.
async fn provide(kit: &Kit, aws: &Aws, request: &Value, env: &[(&str, String)]) -> Output {
    use tokio::io::AsyncWriteExt as _;
    let mut child =
        command(kit, aws, &["credential-provider"], env).stdin(std::process::Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(request.to_string().as_bytes()).await;
    drop(stdin);
    finish(child).await
}

#[tokio::test]
async fn the_kubelet_plugin_answers_ecr_images_for_their_registry_with_the_nodes_identity() {
    let (kit, aws) = kits().await;
    let api = "credentialprovider.kubelet.k8s.io/v1";
    for (image, host) in
        [(format!("{ECR}/team/app:1"), ECR), ("public.ecr.aws/team/app@sha256:00".into(), "public.ecr.aws")]
    {
        let out =
            provide(&kit, &aws, &json!({"apiVersion": api, "kind": "CredentialProviderRequest", "image": image}), &[])
                .await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            v["auth"].as_object().unwrap().keys().collect::<Vec<_>>(),
            [host],
            "keyed by the image's registry alone"
        );
        let token = ecr_entry_of(&aws, &v["auth"][host]);
        assert!(token.principal.contains(&aws.instance_role()), "the node's identity (IMDS): {token:?}");
        assert_eq!(v["cacheKeyType"], "Registry");
        let cached: u64 = v["cacheDuration"].as_str().unwrap().trim_end_matches('s').parse().unwrap();
        let lifetime = token.expires_at.duration_since(SystemTime::now()).unwrap().as_secs();
        assert!(cached <= lifetime - 290 && cached >= lifetime - 310, "{cached}s cached, {lifetime}s left");
    }
}

#[tokio::test]
async fn the_kubelet_plugin_answers_ecr_images_with_the_role_the_pods_service_account_names() {
    let (kit, aws) = kits().await;
    let api = "credentialprovider.kubelet.k8s.io/v1";
    // The pod's own ServiceAccount token, signed by the cluster's issuer
    // that the emulated STS trusts.
    aws.trust_oidc_issuer(ISSUER, &kit.google.jwks(), "sts.amazonaws.com");
    let general = "arn:aws:iam::111122223333:role/app-general";
    let ecr_only = "arn:aws:iam::111122223333:role/app-ecr-puller";
    aws.allow_role(general);
    aws.allow_role(ecr_only);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let token = kit.google.sign_jwt(&json!({
        "iss": ISSUER, "aud": ["sts.amazonaws.com"], "sub": "system:serviceaccount:apps:puller",
        "iat": now, "exp": now + 3600,
    }));
    let pod = |image: &str, annotations: Value| {
        json!({"apiVersion": api, "kind": "CredentialProviderRequest", "image": image,
               "serviceAccountToken": token, "serviceAccountAnnotations": annotations})
    };
    let assumed = |role: &str| role.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/") + "/";

    for (annotations, role) in [
        (json!({"eks.amazonaws.com/role-arn": general}), general),
        (json!({"eks.amazonaws.com/role-arn": general, "eks.amazonaws.com/ecr-role-arn": ecr_only}), ecr_only),
    ] {
        for (image, host) in
            [(format!("{ECR}/team/app:2"), ECR), ("public.ecr.aws/team/app:2".to_string(), "public.ecr.aws")]
        {
            let out = provide(&kit, &aws, &pod(&image, annotations.clone()), &[]).await;
            assert_eq!(out.code, Some(0), "{out:?}");
            let v: Value = serde_json::from_str(&out.stdout).unwrap();
            assert_eq!(v["auth"].as_object().unwrap().keys().collect::<Vec<_>>(), [host]);
            let ecr = ecr_entry_of(&aws, &v["auth"][host]);
            assert!(ecr.principal.starts_with(&assumed(role)), "the pod's role {role}, not the node's: {ecr:?}");
            let key = aws.issued_keys().into_iter().find(|k| k.access_key_id == ecr.access_key_id).unwrap();
            assert_eq!(key.source, "web-identity", "the pod's token exchanged at STS: {key:?}");
            assert_eq!(v["cacheKeyType"], "Registry");
            let cached: u64 = v["cacheDuration"].as_str().unwrap().trim_end_matches('s').parse().unwrap();
            let lifetime = ecr.expires_at.duration_since(SystemTime::now()).unwrap().as_secs();
            assert!(cached <= lifetime - 290 && cached >= lifetime - 310, "{cached}s cached, {lifetime}s left");
            assert!(!out.stderr.contains(&token), "the pod's token in the logs");
        }
    }
    assert!(!aws.issued_keys().iter().any(|k| k.source == "imds"), "the node's identity was never used");

    // No role named, or a hostile one: refused in one line, nothing asked of AWS.
    let before = aws.requests().len();
    let image = format!("{ECR}/team/app:2");
    let out = provide(
        &kit,
        &aws,
        &pod(&image, json!({"iam.gke.io/gcp-service-account": "puller@project-1.iam.gserviceaccount.com"})),
        &[],
    )
    .await;
    assert_eq!(out.code, Some(2), "{out:?}");
    let line = out.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains(&format!("pod's service account token for {ECR} (Amazon ECR)")), "{line}");
    assert!(line.contains("eks.amazonaws.com/ecr-role-arn") && line.contains("eks.amazonaws.com/role-arn"), "{line}");
    assert!(line.contains("never answered with the node's identity") && !line.contains(&token), "{line}");
    // ecr-role-arn wins even when hostile: never a fall back to role-arn.
    for (key, annotations) in [
        (
            "eks.amazonaws.com/role-arn",
            json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/x&Action=AssumeRole"}),
        ),
        (
            "eks.amazonaws.com/ecr-role-arn",
            json!({"eks.amazonaws.com/ecr-role-arn": "arn:aws:iam::111122223333:role/x\nLevel=INFO", "eks.amazonaws.com/role-arn": general}),
        ),
    ] {
        let out = provide(&kit, &aws, &pod(&image, annotations), &[]).await;
        assert_eq!(out.code, Some(2), "{out:?}");
        let line = out.stderr.trim();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(
            line.contains(&format!("invalid {key} annotation")) && line.contains("expected an IAM role ARN"),
            "{line}"
        );
    }
    assert_eq!(aws.requests().len(), before, "no request reached AWS");
}

/// An answer's or document's entry for an ECR host: user `AWS`, a current
/// token the emulator issued.
fn ecr_entry_of(aws: &Aws, entry: &Value) -> regcred_testkit::IssuedEcrToken {
    assert_eq!(entry["username"], "AWS", "{entry}");
    aws.current_ecr_token(entry["password"].as_str().unwrap()).expect("a current ECR token the emulator issued")
}

/// `--dry-run` checks the AWS variables as a start would, without a
/// request: a chart that injects a malformed AWS_ROLE_ARN is refused before
/// any pod runs, not at the first refresh.
#[tokio::test]
async fn dry_run_refuses_a_malformed_role_arn_and_half_of_irsa_without_a_request() {
    let (kit, aws) = kits().await;
    let args = ["once", "--registry", ECR, "--output-file", "/nonexistent/config.json", "--dry-run"];
    let token = ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token".to_string());
    let out = run(&kit, &aws, &args, &[("AWS_ROLE_ARN", "arn:aws:iam::123:role/x".into()), token.clone()]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("AWS_ROLE_ARN: expected an IAM role ARN"), "{}", out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {}", out.stderr);
    let out = run(&kit, &aws, &args, &[("AWS_ROLE_ARN", ROLE.into())]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("AWS_WEB_IDENTITY_TOKEN_FILE is not (IRSA needs both)"), "{}", out.stderr);
    let out = run(&kit, &aws, &args, &[("AWS_ROLE_ARN", ROLE.into()), token]).await;
    assert_eq!(
        out.code,
        Some(0),
        "a well-formed IRSA set-up passes; its token file is read at the first mint: {out:?}"
    );
    assert!(aws.requests().is_empty(), "nothing contacted");
}

/// With no AWS variable set, IMDS is the last source tried, and its refusal
/// says so: a pod meant for IRSA whose webhook did not run is told that no
/// variable was set, not only that the instance metadata answered 403.
#[tokio::test]
async fn an_instance_metadata_refusal_names_the_variables_that_were_not_set() {
    let (kit, aws) = kits().await;
    aws.faults().inject(
        Some("PUT"),
        "/latest/api/token",
        Fault::Status { code: 403, body: None, retry_after: None },
        20,
    );
    let out = run(&kit, &aws, &["render", "--registry", ECR], &[]).await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr.contains("EC2 instance metadata (the last AWS source tried: no AWS_ACCESS_KEY_ID, AWS_ROLE_ARN or AWS_CONTAINER_CREDENTIALS_FULL_URI is set)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("403"), "{}", out.stderr);
}
