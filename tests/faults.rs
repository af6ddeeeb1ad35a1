//! Fault injection: regcred keeps running, never writes an invalid or empty
//! document, recovers when the fault clears, and says what happened.

mod common;

use std::time::{Duration, Instant};

use common::{password, terminate, wait_for, Kit};
use regcred_testkit::Fault;
use serde_json::json;

fn status(code: u16, retry_after: Option<u64>) -> Fault {
    Fault::Status { code, body: None, retry_after }
}

const SECRETS: &str = "/api/v1/namespaces/default/secrets";

/// `once` with the kit's key into default/gcr-pull.
async fn once(kit: &Kit, extra: &[&str]) -> common::Output {
    let mut args = vec!["--secret", "gcr-pull"];
    args.extend_from_slice(extra);
    kit.once(&args).await
}

#[tokio::test]
async fn transient_token_endpoint_faults_are_retried() {
    let cases: Vec<(&str, Fault)> = vec![
        ("500", status(500, None)),
        ("malformed JSON", Fault::Malformed),
        (
            "expires_in 0",
            Fault::Status {
                code: 200,
                body: Some(r#"{"access_token":"ya29.dead","expires_in":0,"token_type":"Bearer"}"#.into()),
                retry_after: None,
            },
        ),
        ("dropped connection", Fault::Drop),
        ("hang past the timeout", Fault::Hang),
    ];
    for (what, fault) in cases {
        let kit = Kit::start_emulator().await;
        kit.google.faults().inject(None, "/token", fault, 1);
        let out = once(&kit, &["--request-timeout", "1s"]).await;
        assert_eq!(out.code, Some(0), "{what}: {out:?}");
        let doc = kit.secret_doc("default", "gcr-pull", ".dockerconfigjson").await.unwrap();
        assert_eq!(password(&doc), kit.issued().pop().unwrap(), "{what}");
        assert_ne!(password(&doc), "ya29.dead", "{what}: an expired token was written");
        assert!(out.stderr.contains("refresh failed; retrying"), "{what}: the failure is logged: {}", out.stderr);
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let kit = Kit::start_emulator().await;
    kit.google.faults().inject(None, "/token", status(429, Some(2)), 1);
    let started = Instant::now();
    let out = once(&kit, &[]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(started.elapsed() >= Duration::from_secs(2), "retried after {:?}", started.elapsed());
}

#[tokio::test]
async fn permanent_token_errors_fail_once_with_googles_reason() {
    let kit = Kit::start_emulator().await;
    let body = r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
    kit.google.faults().inject(
        None,
        "/token",
        Fault::Status { code: 400, body: Some(body.into()), retry_after: None },
        100,
    );
    let out = once(&kit, &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let last = out.stderr.lines().last().unwrap();
    assert!(last.contains("invalid_grant: Invalid JWT Signature."), "{last}");
    assert_eq!(kit.google.requests().iter().filter(|r| r.path == "/token").count(), 1, "a 400 is not retried");
    assert!(kit.emulator().secret("default", "gcr-pull").is_none(), "nothing written");
}

#[tokio::test]
async fn kubernetes_transient_faults_are_retried() {
    let cases: Vec<(&str, Option<&str>, Fault)> = vec![
        ("500 on get", Some("GET"), status(500, None)),
        ("dropped connection", Some("GET"), Fault::Drop),
        ("slow answers", None, Fault::Delay(Duration::from_millis(300))),
        ("hang past the timeout", Some("POST"), Fault::Hang),
        ("429", Some("POST"), status(429, Some(1))),
    ];
    for (what, method, fault) in cases {
        let kit = Kit::start_emulator().await;
        kit.emulator().faults().inject(method, SECRETS, fault, 2);
        let out = once(&kit, &["--request-timeout", "1s"]).await;
        assert_eq!(out.code, Some(0), "{what}: {out:?}");
        assert_eq!(
            password(&kit.secret_doc("default", "gcr-pull", ".dockerconfigjson").await.unwrap()),
            kit.issued().pop().unwrap(),
            "{what}"
        );
    }
}

#[tokio::test]
async fn conflict_storm_fails_once_and_leaves_the_secret_alone() {
    let kit = Kit::start_emulator().await;
    assert_eq!(once(&kit, &[]).await.code, Some(0));
    let before = kit.emulator().secret("default", "gcr-pull").unwrap();
    kit.emulator().faults().inject(Some("PATCH"), SECRETS, status(409, None), 1000);
    let out = once(&kit, &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.lines().last().unwrap().contains("conflicting updates in a row"), "{}", out.stderr);
    assert_eq!(kit.emulator().secret("default", "gcr-pull").unwrap(), before);
}

#[tokio::test]
async fn forbidden_names_the_missing_verb() {
    let kit = Kit::start_emulator().await;
    let body = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"Forbidden","code":403,
        "message":"secrets is forbidden: User \"system:serviceaccount:default:regcred\" cannot create resource \"secrets\" in API group \"\" in the namespace \"default\""});
    kit.emulator().faults().inject(
        Some("POST"),
        SECRETS,
        Fault::Status { code: 403, body: Some(body.to_string()), retry_after: None },
        100,
    );
    let out = once(&kit, &[]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let last = out.stderr.lines().last().unwrap();
    assert!(last.contains("cannot `create` secrets/gcr-pull in namespace default; grant it with a Role"), "{last}");
    assert_eq!(
        kit.emulator().requests().iter().filter(|r| r.method == "POST" && r.path == SECRETS).count(),
        1,
        "403 is not retried"
    );
    let events = kit.emulator().events("default");
    assert_eq!(events.len(), 1, "a permanent failure is reported at once");
    assert_eq!(events[0]["reason"], "WriteFailed");
}

#[tokio::test]
async fn missing_namespace_is_reported() {
    let kit = Kit::start_emulator().await;
    let out = kit.once(&["--secret", "nowhere/gcr-pull"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.lines().last().unwrap().contains("namespace nowhere does not exist"), "{}", out.stderr);
}

#[tokio::test]
async fn secret_edited_by_someone_else_is_restored() {
    let kit = Kit::start_emulator().await;
    let child = kit.daemon(&["--secret", "gcr-pull", "--resync-interval", "1s", "--admin-addr", "off"]);
    let good = wait_for(Duration::from_secs(20), "the Secret", async || {
        kit.secret_doc("default", "gcr-pull", ".dockerconfigjson").await
    })
    .await;
    let mut edited = kit.emulator().secret("default", "gcr-pull").unwrap();
    edited["data"][".dockerconfigjson"] = json!("eyJhdXRocyI6e319"); // {"auths":{}}
    edited["data"]["theirs"] = json!("eQ==");
    kit.emulator().put_object("default", "secrets", edited);
    wait_for(Duration::from_secs(10), "the owned key restored", async || {
        (kit.secret_doc("default", "gcr-pull", ".dockerconfigjson").await.as_ref() == Some(&good)).then_some(())
    })
    .await;
    assert_eq!(kit.emulator().secret("default", "gcr-pull").unwrap()["data"]["theirs"], "eQ==", "their key kept");
    let (code, _) = terminate(child).await;
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn run_survives_a_long_outage_and_recovers() {
    let kit = Kit::start_emulator().await;
    kit.google.set_token_lifetime(Duration::from_secs(4));
    let child =
        kit.daemon(&["--secret", "gcr-pull", "--refresh-before", "2s", "--jitter", "0s", "--admin-addr", "off"]);
    let first = wait_for(Duration::from_secs(20), "the Secret", async || {
        kit.secret_doc("default", "gcr-pull", ".dockerconfigjson").await
    })
    .await;
    // Four failures in a row: backoff ceilings 1 + 2 + 4 + 8 s at most.
    kit.google.faults().inject(None, "/token", status(503, None), 3);
    kit.emulator().faults().inject(Some("PATCH"), SECRETS, status(500, None), 1);
    wait_for(Duration::from_secs(45), "a new token after the outage", async || {
        let doc = kit.secret_doc("default", "gcr-pull", ".dockerconfigjson").await?;
        assert!(!password(&doc).is_empty(), "an empty password was written");
        (doc != first).then_some(())
    })
    .await;
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("keeping the last good credential"), "{stderr}");
}
