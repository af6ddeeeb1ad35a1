//! `regcred credential-provider`: the kubelet's exec plugin protocol, with
//! the node's identity and with each pod's own ServiceAccount token.

mod common;

use std::process::Stdio;
use std::time::SystemTime;

use common::{Kit, Output};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

const API: &str = "credentialprovider.kubelet.k8s.io/v1";
const ANNOTATION: &str = "iam.gke.io/gcp-service-account";

/// Runs `regcred credential-provider ARGS` with `request` on stdin.
async fn provide(kit: &Kit, args: &[&str], request: &Value) -> Output {
    let mut all = vec!["credential-provider"];
    all.extend_from_slice(args);
    let mut child = kit.command(&all).stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A configuration error exits before reading: a broken pipe is fine.
    let _ = stdin.write_all(request.to_string().as_bytes()).await;
    drop(stdin);
    common::finish(child).await
}

fn request(image: &str) -> Value {
    json!({"apiVersion": API, "kind": "CredentialProviderRequest", "image": image})
}

fn pod_request(image: &str, token: &str, annotations: Value) -> Value {
    json!({"apiVersion": API, "kind": "CredentialProviderRequest", "image": image,
           "serviceAccountToken": token, "serviceAccountAnnotations": annotations})
}

/// The flags of a kubelet config for pod identity against the kit.
fn pod_flags(kit: &Kit) -> Vec<String> {
    vec![
        "--workload-identity-provider".into(),
        kit.google.sts_audience(),
        "--sts-endpoint".into(),
        kit.google.sts_uri(),
        "--impersonation-endpoint".into(),
        kit.google.iam_credentials_uri(),
    ]
}

fn response(out: &Output) -> Value {
    assert_eq!(out.code, Some(0), "{out:?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(v["apiVersion"], API);
    assert_eq!(v["kind"], "CredentialProviderResponse");
    v
}

/// The one password in a response (all keys carry the same credential).
fn password(v: &Value) -> String {
    let auth = v["auth"].as_object().unwrap();
    let passwords: Vec<&str> = auth.values().map(|a| a["password"].as_str().unwrap()).collect();
    assert!(passwords.windows(2).all(|w| w[0] == w[1]), "{auth:?}");
    passwords[0].to_string()
}

#[tokio::test]
async fn node_identity_answers_google_images_with_a_cached_token() {
    let kit = Kit::start().await;
    let key = kit.key_file();
    let out = provide(&kit, &["--key-file", &key], &request("europe-west1-docker.pkg.dev/p/r/i:tag")).await;
    let v = response(&out);
    let token = kit.google.issued_tokens().pop().unwrap();
    assert_eq!(token.grant, "jwt-bearer");
    assert_eq!(password(&v), token.access_token);
    let keys: Vec<&str> = v["auth"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["*-docker.pkg.dev", "*.gcr.io", "gcr.io"]);
    assert_eq!(v["auth"]["gcr.io"]["username"], "oauth2accesstoken");
    assert_eq!(v["cacheKeyType"], "Global");
    // The kubelet stops using it 5 minutes before the token expires.
    let cached: u64 = v["cacheDuration"].as_str().unwrap().trim_end_matches('s').parse().unwrap();
    let lifetime = token.expires_at.duration_since(SystemTime::now()).unwrap().as_secs();
    assert!(cached + 300 <= lifetime + 1 && cached + 310 >= lifetime, "cached {cached}s of {lifetime}s");
    assert!(out.stderr.is_empty(), "nothing to say on success (the kubelet logs stderr): {}", out.stderr);
}

#[tokio::test]
async fn registries_given_are_the_auth_keys() {
    let kit = Kit::start().await;
    let key = kit.key_file();
    let args = ["--key-file", &key, "--registry", "us-docker.pkg.dev,gcr.io"];
    let v = response(&provide(&kit, &args, &request("gcr.io/p/i")).await);
    let keys: Vec<&str> = v["auth"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["gcr.io", "us-docker.pkg.dev"]);
}

#[tokio::test]
async fn other_registries_get_nothing_and_no_token_is_minted() {
    let kit = Kit::start().await;
    let key = kit.key_file();
    for image in ["nginx:1.27", "docker.io/library/nginx", "ghcr.io/o/i:1", "evil-gcr.io/p/i", "registry.local:5000/i"]
    {
        let v = response(&provide(&kit, &["--key-file", &key], &request(image)).await);
        assert_eq!(v["auth"], json!({}), "{image}");
        assert_eq!(v["cacheKeyType"], "Registry", "{image}");
    }
    assert!(kit.issued().is_empty());
}

#[tokio::test]
async fn pod_identity_exchanges_the_pods_token_and_impersonates_its_annotation() {
    let kit = Kit::start().await;
    let flags = pod_flags(&kit);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    kit.google.accept_subject_token("eyJ.builder.sig");
    kit.google.accept_subject_token("eyJ.runner.sig");
    kit.google.allow_impersonation("builder@project-1.iam.gserviceaccount.com");
    kit.google.allow_impersonation("runner@project-1.iam.gserviceaccount.com");

    // Without an annotation: the federated token itself (direct resource access).
    let v = response(&provide(&kit, &flags, &pod_request("gcr.io/p/i", "eyJ.builder.sig", json!({}))).await);
    let sts = kit.google.issued_tokens().into_iter().find(|t| t.access_token == password(&v)).unwrap();
    assert_eq!(sts.grant, "sts");

    // Two ServiceAccounts, two annotations: two different credentials.
    let a = json!({ANNOTATION: "builder@project-1.iam.gserviceaccount.com"});
    let b = json!({ANNOTATION: "runner@project-1.iam.gserviceaccount.com"});
    let va = response(&provide(&kit, &flags, &pod_request("gcr.io/p/i", "eyJ.builder.sig", a)).await);
    let vb = response(&provide(&kit, &flags, &pod_request("gcr.io/p/i", "eyJ.runner.sig", b)).await);
    let issued = kit.google.issued_tokens();
    let ta = issued.iter().find(|t| t.access_token == password(&va)).unwrap();
    let tb = issued.iter().find(|t| t.access_token == password(&vb)).unwrap();
    assert_eq!(
        (ta.grant.as_str(), ta.subject.as_str()),
        ("impersonation", "builder@project-1.iam.gserviceaccount.com")
    );
    assert_eq!((tb.grant.as_str(), tb.subject.as_str()), ("impersonation", "runner@project-1.iam.gserviceaccount.com"));
    assert_ne!(password(&va), password(&vb));
}

#[tokio::test]
async fn a_refused_pod_token_fails_in_one_line_that_names_the_step_and_never_the_token() {
    let kit = Kit::start().await;
    let flags = pod_flags(&kit);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    // The kit's STS does not accept this token (as Google refuses a token
    // whose audience is not the pool provider).
    let out = provide(&kit, &flags, &pod_request("gcr.io/p/i", "eyJ.wrong-audience.sig", json!({}))).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "no response on failure: {}", out.stdout);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(lines[0].contains("exchanging the subject token at the Security Token Service"), "{}", lines[0]);
    assert!(lines[0].contains("invalid_grant"), "Google's text is quoted: {}", lines[0]);
    assert!(!out.stderr.contains("eyJ.wrong-audience.sig"), "{}", out.stderr);
}

#[tokio::test]
async fn bad_requests_and_missing_settings_are_configuration_errors() {
    let kit = Kit::start().await;
    let key = kit.key_file();
    let mut child = kit.command(&["credential-provider", "--key-file", &key]).stdin(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"{not json").await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a CredentialProviderRequest"));

    let out = provide(&kit, &["--key-file", &key], &pod_request("gcr.io/p/i", "eyJ.x.sig", json!({}))).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("no --workload-identity-provider"), "{}", out.stderr);
    assert!(!out.stderr.contains("eyJ.x.sig"));

    let flags = pod_flags(&kit);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    kit.google.accept_subject_token("eyJ.y.sig");
    let out = provide(&kit, &flags, &pod_request("gcr.io/p/i", "eyJ.y.sig", json!({ANNOTATION: "not an email"}))).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("invalid iam.gke.io/gcp-service-account annotation"), "{}", out.stderr);

    let out = provide(&kit, &["--workload-identity-provider", "pool"], &request("gcr.io/p/i")).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("invalid value 'pool' for '--workload-identity-provider"), "{}", out.stderr);
}

/// The trust boundary: a pod's ServiceAccount annotations, its image name
/// and its token come from whoever can create pods or ServiceAccounts in
/// any namespace. Hostile values are refused in one line that names the
/// field, and nothing reaches Google: a look-alike or a URL fragment in the
/// annotation must never turn into another IAM request.
#[tokio::test]
async fn hostile_requests_are_refused_naming_the_field_and_nothing_reaches_google() {
    let kit = Kit::start().await;
    let flags = pod_flags(&kit);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwb2QifQ.c2ln";
    kit.google.accept_subject_token(token);
    let good = "puller@project-1.iam.gserviceaccount.com";
    let long_id = format!("{}@project-1.iam.gserviceaccount.com", "a".repeat(31));
    let very_long = format!("{}@project-1.iam.gserviceaccount.com", "a".repeat(100_000));
    let annotations = [
        "a@b.c#frag".to_string(),
        "a@b.c%2F..%2Fx".into(),
        "a@b.c\\x".into(),
        "x@y.z&alt=1".into(),
        format!("{good}#frag"),
        format!("{good}?alt=json"),
        format!("{good}&alt=json"),
        format!("{good}%2F..%2Fx"),
        format!("{good}/../../x"),
        format!("{good}\\x"),
        format!("{good}:signJwt"),
        format!("{good}\n"),
        format!(" {good}"),
        format!("{good}\u{0}"),
        "Puller@project-1.iam.gserviceaccount.com".into(),
        "puller\u{ff20}project-1.iam.gserviceaccount.com".into(), // fullwidth @
        "puller@project-1.iam.gserviceaccount.com\u{200b}".into(), // zero-width space
        "рuller@project-1.iam.gserviceaccount.com".into(),        // Cyrillic р
        "puller@project-1.iam.gserviceacсount.com".into(),        // Cyrillic с
        "puller@evil.com".into(),
        "puller@project-1.iam.gserviceaccount.com.evil.com".into(),
        "puller@@project-1.iam.gserviceaccount.com".into(),
        long_id,
        very_long,
    ];
    for annotation in &annotations {
        let out = provide(&kit, &flags, &pod_request("gcr.io/p/i", token, json!({ANNOTATION: annotation}))).await;
        let shown: String = annotation.chars().take(60).collect();
        assert_eq!(out.code, Some(2), "{shown:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{shown:?}: {}", out.stdout);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{shown:?}: one line expected: {}", out.stderr);
        assert!(lines[0].contains(ANNOTATION), "{shown:?}: the line names the annotation: {}", lines[0]);
        assert!(lines[0].len() < 600, "{shown:?}: the line stays short: {} bytes", lines[0].len());
        assert!(!lines[0].contains(token), "{shown:?}: {}", lines[0]);
        assert_eq!(kit.google.requests().len(), 0, "{shown:?}: nothing was sent to Google");
    }

    let hostile_tokens = [
        format!("{token}\n"),
        format!("{token}\r\nX-Injected: 1"),
        format!("{token} extra"),
        "eyJ.pod.sig\u{ff0e}x".into(),
        "not-a-jwt".into(),
        format!("{token}.{}", "a".repeat(100_000)),
    ];
    for hostile in &hostile_tokens {
        let out = provide(&kit, &flags, &pod_request("gcr.io/p/i", hostile, json!({ANNOTATION: good}))).await;
        assert_eq!(out.code, Some(2), "{out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line expected: {}", out.stderr);
        assert!(lines[0].contains("serviceAccountToken"), "the line names the field: {}", lines[0]);
        assert!(!lines[0].contains("eyJ") && !lines[0].contains("pod.sig"), "never the token: {}", lines[0]);
        assert_eq!(kit.google.requests().len(), 0, "nothing was sent to Google");
    }

    let hostile_images = [
        "gcr.io/p/i\n".to_string(),
        "gcr.io/p/i x".into(),
        "gсr.io/p/i".into(),        // Cyrillic с
        "gcr\u{ff0e}io/p/i".into(), // fullwidth full stop
        format!("gcr.io/p/{}", "i".repeat(100_000)),
    ];
    for image in &hostile_images {
        let out = provide(&kit, &flags, &pod_request(image, token, json!({ANNOTATION: good}))).await;
        assert_eq!(out.code, Some(2), "{out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line expected: {}", out.stderr);
        assert!(lines[0].contains("`image`"), "the line names the field: {}", lines[0]);
        assert!(lines[0].len() < 600, "the line stays short: {} bytes", lines[0].len());
        assert_eq!(kit.google.requests().len(), 0, "nothing was sent to Google");
    }

    // The same request with the legitimate values goes through.
    kit.google.allow_impersonation(good);
    let v = response(&provide(&kit, &flags, &pod_request("gcr.io/p/i", token, json!({ANNOTATION: good}))).await);
    let issued = kit.google.issued_tokens();
    let t = issued.iter().find(|t| t.access_token == password(&v)).unwrap();
    assert_eq!((t.grant.as_str(), t.subject.as_str()), ("impersonation", good));
}
