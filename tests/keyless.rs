//! Keyless credentials, end to end: service-account impersonation
//! (`--impersonate`, `impersonated_service_account` files) and workload
//! identity federation (`external_account` files), with the real binary
//! against the test kit's STS and IAM Credentials.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{password, read_json, terminate, wait_for, Kit, Output};
use regcred_testkit::Fault;
use serde_json::{json, Value};

const TARGET: &str = "puller@images-prod.iam.gserviceaccount.com";

/// `--output-file` in the kit's directory.
fn out_file(kit: &Kit) -> String {
    kit.path("config.json").display().to_string()
}

/// The kit's `generateAccessToken` URL for `email`.
fn impersonation_url(kit: &Kit, email: &str) -> String {
    format!("{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken", kit.google.iam_credentials_uri())
}

/// An `external_account` file for the kit's STS, reading the subject token
/// from `token_file` in the given `format`.
fn external_account(kit: &Kit, token_file: &Path, format: Value, impersonate: Option<&str>) -> Value {
    let mut v = json!({
        "type": "external_account",
        "audience": kit.google.sts_audience(),
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": kit.google.sts_uri(),
        "credential_source": {"file": token_file, "format": format},
    });
    if let Some(email) = impersonate {
        v["service_account_impersonation_url"] = impersonation_url(kit, email).into();
    }
    v
}

fn write_json(path: &Path, v: &Value) -> String {
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    path.display().to_string()
}

/// Replaces a file the way the kubelet rotates a projected token: a new file
/// renamed over the old, never a half-written one.
fn replace_file(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The token issued with `grant` whose value is `password`.
fn issued_by(kit: &Kit, grant: &str, password: &str) -> Option<regcred_testkit::IssuedToken> {
    kit.google.issued_tokens().into_iter().find(|t| t.grant == grant && t.access_token == password)
}

/// Fails if anything regcred printed contains a credential: a token the kit
/// issued, or one of the test's subject tokens.
fn assert_no_secrets(kit: &Kit, out: &Output, subject_tokens: &[&str]) {
    for token in kit.issued().iter().map(String::as_str).chain(subject_tokens.iter().copied()) {
        assert!(!out.stderr.contains(token), "stderr leaks a token: {}", out.stderr);
        assert!(!out.stdout.contains(token), "stdout leaks a token: {}", out.stdout);
    }
}

/// The one `regcred: error:` line of a failed run.
fn error_line(out: &Output) -> String {
    let lines: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("regcred: error: ")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line expected: {}", out.stderr);
    lines[0].to_string()
}

/// The bodies of the STS requests the kit received.
fn sts_bodies(kit: &Kit) -> Vec<String> {
    kit.google.requests().into_iter().filter(|r| r.path == "/v1/token").map(|r| r.body).collect()
}

#[tokio::test]
async fn impersonates_from_a_key_file() {
    let kit = Kit::start().await;
    kit.google.allow_impersonation(TARGET);
    let out = kit
        .once(&[
            "--impersonate",
            TARGET,
            "--impersonation-endpoint",
            &kit.google.iam_credentials_uri(),
            "--output-file",
            &out_file(&kit),
        ])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let doc = read_json(&kit.path("config.json")).expect("auths written");
    let token = issued_by(&kit, "impersonation", &password(&doc)).expect("the password is the impersonated token");
    assert_eq!(token.subject, TARGET);
    assert_eq!(token.scope, "https://www.googleapis.com/auth/cloud-platform");
    assert_eq!(doc["auths"]["gcr.io"]["username"], "oauth2accesstoken");

    // The key's own token went only to IAM Credentials, as the Bearer.
    let call = kit.google.requests().into_iter().find(|r| r.path.ends_with(":generateAccessToken")).unwrap();
    let source = kit.google.issued_tokens().into_iter().find(|t| t.grant == "jwt-bearer").unwrap();
    assert_eq!(call.header("authorization"), Some(format!("Bearer {}", source.access_token).as_str()));
    let body: Value = serde_json::from_str(&call.body).unwrap();
    assert_eq!(body, json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "3600s"}));
    assert_no_secrets(&kit, &out, &[]);
}

#[tokio::test]
async fn impersonates_through_delegates_with_a_chosen_lifetime() {
    let kit = Kit::start().await;
    let (d1, d2) = ("first-hop@images-prod.iam.gserviceaccount.com", "second-hop@images-prod.iam.gserviceaccount.com");
    for email in [d1, d2, TARGET] {
        kit.google.allow_impersonation(email);
    }
    let out = kit
        .keyed("once", &["--output-file", &out_file(&kit)])
        .env("REGCRED_IMPERSONATE", TARGET)
        .env("REGCRED_IMPERSONATE_DELEGATES", format!("{d1},{d2}"))
        .env("REGCRED_TOKEN_LIFETIME", "20m")
        .env("REGCRED_IMPERSONATION_ENDPOINT", kit.google.iam_credentials_uri())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let call = kit.google.requests().into_iter().find(|r| r.path.ends_with(":generateAccessToken")).unwrap();
    let body: Value = serde_json::from_str(&call.body).unwrap();
    assert_eq!(body["lifetime"], "1200s");
    assert_eq!(
        body["delegates"],
        json!([format!("projects/-/serviceAccounts/{d1}"), format!("projects/-/serviceAccounts/{d2}")])
    );
    let doc = read_json(&kit.path("config.json")).unwrap();
    assert!(issued_by(&kit, "impersonation", &password(&doc)).is_some());
}

#[tokio::test]
async fn impersonates_from_the_metadata_server() {
    let kit = Kit::start().await;
    kit.google.allow_impersonation(TARGET);
    // No key file, no GOOGLE_APPLICATION_CREDENTIALS, no gcloud file under
    // HOME or CLOUDSDK_CONFIG: the metadata server is the source.
    let out = kit
        .command(&[
            "once",
            "--impersonate",
            TARGET,
            "--impersonation-endpoint",
            &kit.google.iam_credentials_uri(),
            "--output-file",
            &out_file(&kit),
        ])
        .env("CLOUDSDK_CONFIG", kit.dir.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("metadata server") && stderr.contains(&format!("impersonating {TARGET}")), "{stderr}");
    let doc = read_json(&kit.path("config.json")).unwrap();
    assert!(issued_by(&kit, "impersonation", &password(&doc)).is_some());
    assert!(kit.google.issued_tokens().iter().any(|t| t.grant == "metadata"), "the metadata token was the source");
}

#[tokio::test]
async fn impersonated_service_account_adc_file_is_found_and_used() {
    let kit = Kit::start().await;
    kit.google.allow_impersonation(TARGET);
    // What `gcloud auth application-default login --impersonate-service-account` writes.
    let adc = json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": impersonation_url(&kit, TARGET),
        "delegates": [],
        "source_credentials": serde_json::from_str::<Value>(&kit.google.key_file_json()).unwrap(),
    });
    write_json(&kit.path("application_default_credentials.json"), &adc);
    let out = kit
        .command(&["once", "--output-file", &out_file(&kit)])
        .env("CLOUDSDK_CONFIG", kit.dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = read_json(&kit.path("config.json")).unwrap();
    let token = issued_by(&kit, "impersonation", &password(&doc)).expect("impersonated token");
    assert_eq!(token.subject, TARGET);
}

#[tokio::test]
async fn external_account_file_sources_in_text_and_json_with_and_without_impersonation() {
    let kit = Kit::start().await;
    kit.google.allow_impersonation(TARGET);
    let cases = [
        ("text", json!({"type": "text"}), "eyJ.text-subject.sig", None),
        ("text", json!({"type": "text"}), "eyJ.text-subject-imp.sig", Some(TARGET)),
        ("json", json!({"type": "json", "subject_token_field_name": "id_token"}), "eyJ.json-subject.sig", None),
        (
            "json",
            json!({"type": "json", "subject_token_field_name": "id_token"}),
            "eyJ.json-subject-imp.sig",
            Some(TARGET),
        ),
    ];
    for (kind, format, subject, impersonate) in cases {
        let token_file = kit.path(&format!("token-{kind}"));
        let content = match kind {
            "json" => json!({"id_token": subject, "token_type": "Bearer"}).to_string(),
            _ => format!("{subject}\n"),
        };
        std::fs::write(&token_file, content).unwrap();
        kit.google.accept_subject_token(subject);
        let creds = write_json(&kit.path("wif.json"), &external_account(&kit, &token_file, format, impersonate));
        let _ = std::fs::remove_file(kit.path("config.json"));

        let out = kit.run(&["once", "--key-file", &creds, "--output-file", &out_file(&kit)]).await;
        let case = format!("{kind} format, impersonation {impersonate:?}");
        assert_eq!(out.code, Some(0), "{case}: {out:?}");
        let body = sts_bodies(&kit).pop().expect("an STS exchange");
        assert!(body.contains(&format!("subject_token={subject}&")), "{case}: {body}");
        assert!(body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"), "{body}");
        let doc = read_json(&kit.path("config.json")).expect("auths written");
        let grant = if impersonate.is_some() { "impersonation" } else { "sts" };
        assert!(issued_by(&kit, grant, &password(&doc)).is_some(), "{case}: the password is the {grant} token");
        assert_no_secrets(&kit, &out, &[subject]);
    }
}

#[tokio::test]
async fn rotated_subject_token_is_used_at_the_next_refresh() {
    let kit = Kit::start().await;
    kit.google.allow_impersonation(TARGET);
    let token_file = kit.path("token");
    std::fs::write(&token_file, "eyJ.first.sig").unwrap();
    kit.google.accept_subject_token("eyJ.first.sig");
    let creds =
        write_json(&kit.path("wif.json"), &external_account(&kit, &token_file, json!({"type": "text"}), Some(TARGET)));
    let output = kit.path("config.json");

    // A 4-second impersonated token is replaced at half-life, every ~2 s.
    let child = kit
        .command(&[
            "run",
            "--key-file",
            &creds,
            "--output-file",
            &out_file(&kit),
            "--admin-addr",
            "off",
            "--token-lifetime",
            "4s",
        ])
        .spawn()
        .unwrap();
    let first =
        wait_for(Duration::from_secs(20), "the first document", async || read_json(&output).map(|d| password(&d)))
            .await;

    replace_file(&token_file, "eyJ.second.sig");
    kit.google.accept_subject_token("eyJ.second.sig");
    wait_for(Duration::from_secs(20), "an exchange of the rotated subject token", async || {
        sts_bodies(&kit).iter().any(|b| b.contains("subject_token=eyJ.second.sig&")).then_some(())
    })
    .await;
    let rotated = wait_for(Duration::from_secs(20), "a document minted from the rotated token", async || {
        let pw = read_json(&output).map(|d| password(&d))?;
        (pw != first && issued_by(&kit, "impersonation", &pw).is_some()).then_some(pw)
    })
    .await;
    assert_ne!(rotated, first);

    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    let out = Output { code, stdout: String::new(), stderr };
    assert_no_secrets(&kit, &out, &["eyJ.first.sig", "eyJ.second.sig"]);
}

#[tokio::test]
async fn a_missing_subject_token_file_is_a_configuration_error() {
    let kit = Kit::start().await;
    let missing = kit.path("no-such-token");
    let creds = write_json(&kit.path("wif.json"), &external_account(&kit, &missing, json!({"type": "text"}), None));
    let out = kit.run(&["once", "--key-file", &creds, "--output-file", &out_file(&kit)]).await;
    assert_eq!(out.code, Some(2), "a mount or path mistake: {out:?}");
    let line = error_line(&out);
    assert!(line.contains(&format!("reading the subject token from {}: no such file", missing.display())), "{line}");
    assert!(line.contains(&creds), "names the credentials file: {line}");
    assert!(sts_bodies(&kit).is_empty(), "nothing was sent to STS");
}

#[tokio::test]
async fn sts_refusals_name_the_exchange_and_googles_reason() {
    let kit = Kit::start().await;
    let token_file = kit.path("token");
    std::fs::write(&token_file, "eyJ.subject.sig").unwrap();
    kit.google.accept_subject_token("eyJ.subject.sig");
    let mut creds = external_account(&kit, &token_file, json!({"type": "text"}), None);
    creds["audience"] =
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/other/providers/p".into();
    let path = write_json(&kit.path("wif.json"), &creds);

    let out = kit.run(&["once", "--key-file", &path, "--output-file", &out_file(&kit)]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let line = error_line(&out);
    assert!(line.contains("exchanging the subject token at the Security Token Service"), "{line}");
    assert!(line.contains("answered 400: invalid_target: The target service indicated by the \"audience\""), "{line}");
    assert_eq!(sts_bodies(&kit).len(), 1, "a refusal is not retried");
    assert_no_secrets(&kit, &out, &["eyJ.subject.sig"]);

    // A subject token the provider does not accept.
    std::fs::write(&token_file, "eyJ.unknown.sig").unwrap();
    let path = write_json(&kit.path("wif.json"), &external_account(&kit, &token_file, json!({"type": "text"}), None));
    let out = kit.run(&["once", "--key-file", &path, "--output-file", &out_file(&kit)]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let line = error_line(&out);
    assert!(
        line.contains("Security Token Service") && line.contains("invalid_grant: The given credential is rejected"),
        "{line}"
    );
    assert_no_secrets(&kit, &out, &["eyJ.unknown.sig"]);
}

#[tokio::test]
async fn impersonation_denied_names_the_call_and_the_permission() {
    let kit = Kit::start().await;
    // No allow_impersonation: the source identity lacks Token Creator.
    let token_file = kit.path("token");
    std::fs::write(&token_file, "eyJ.subject.sig").unwrap();
    kit.google.accept_subject_token("eyJ.subject.sig");
    let path =
        write_json(&kit.path("wif.json"), &external_account(&kit, &token_file, json!({"type": "text"}), Some(TARGET)));
    let out = kit.run(&["once", "--key-file", &path, "--output-file", &out_file(&kit)]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let line = error_line(&out);
    assert!(
        line.contains(&format!("impersonating the service account: {}", impersonation_url(&kit, TARGET))),
        "{line}"
    );
    assert!(
        line.contains("answered 403: PERMISSION_DENIED: Permission 'iam.serviceAccounts.getAccessToken' denied"),
        "{line}"
    );
    assert!(line.contains("roles/iam.serviceAccountTokenCreator"), "says what to grant: {line}");
    assert!(!kit.path("config.json").exists());
    assert_no_secrets(&kit, &out, &["eyJ.subject.sig"]);

    // The same through --impersonate on a key file.
    let out = kit
        .once(&[
            "--impersonate",
            TARGET,
            "--impersonation-endpoint",
            &kit.google.iam_credentials_uri(),
            "--output-file",
            &out_file(&kit),
        ])
        .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(error_line(&out).contains("PERMISSION_DENIED"), "{out:?}");
    assert_no_secrets(&kit, &out, &[]);
}

#[tokio::test]
async fn transient_sts_and_iam_failures_are_retried() {
    let kit = Kit::start().await;
    kit.google.allow_impersonation(TARGET);
    let token_file = kit.path("token");
    std::fs::write(&token_file, "eyJ.subject.sig").unwrap();
    kit.google.accept_subject_token("eyJ.subject.sig");
    let path =
        write_json(&kit.path("wif.json"), &external_account(&kit, &token_file, json!({"type": "text"}), Some(TARGET)));
    kit.google.faults().inject(
        Some("POST"),
        "/v1/token",
        Fault::Status { code: 503, body: None, retry_after: None },
        1,
    );
    // Accepted and never answered: each is cut at --request-timeout.
    kit.google.faults().inject(Some("POST"), "/v1/token", Fault::Hang, 1);
    kit.google.faults().inject(Some("POST"), "/v1/projects/", Fault::Hang, 1);
    let out =
        kit.run(&["once", "--key-file", &path, "--output-file", &out_file(&kit), "--request-timeout", "1s"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(kit.google.faults().pending(), 0, "all three faults were hit");
    assert!(out.stderr.contains("timed out after 1s"), "{}", out.stderr);
    let doc = read_json(&kit.path("config.json")).unwrap();
    assert!(issued_by(&kit, "impersonation", &password(&doc)).is_some());
    assert_no_secrets(&kit, &out, &["eyJ.subject.sig"]);
}

#[tokio::test]
async fn impersonation_flags_are_checked_up_front() {
    let kit = Kit::start().await;
    let cases: [(&[&str], &str); 4] = [
        (
            &["--impersonate", "pull"],
            "invalid value 'pull' for '--impersonate <SERVICE_ACCOUNT_EMAIL>': expected exactly one '@'; expected a service account email",
        ),
        (&["--impersonate", TARGET, "--auth", "json-key"], "--impersonate needs --auth oauth"),
        (&["--impersonate-delegates", TARGET], "required arguments were not provided: --impersonate <SERVICE_ACCOUNT_EMAIL>"),
        (
            &["--impersonate", TARGET, "--token-lifetime", "13h"],
            "invalid value '13h' for '--token-lifetime <DURATION>'",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["--output-file", "/dev/null"];
        args.extend_from_slice(extra);
        let out = kit.once(&args).await;
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(error_line(&out).contains(expected), "{args:?}: {}", out.stderr);
        assert!(kit.google.requests().is_empty(), "nothing was sent");
    }
}
