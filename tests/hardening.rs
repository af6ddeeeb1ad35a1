//! Hardening: every request has a deadline, no response can crash regcred,
//! overload is answered with less load, one failing sink never delays the
//! others, /readyz tells the truth, Events match the failure, and --prune
//! catches up after its watch was down.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{free_port, http_get, password, terminate, wait_for, Kit};
use regcred_testkit::Fault;
use serde_json::json;

fn status(code: u16, retry_after: Option<u64>) -> Fault {
    Fault::Status { code, body: None, retry_after }
}

const NAMESPACES: &str = "/api/v1/namespaces";
const SECRETS: &str = "/api/v1/namespaces/default/secrets";

/// Requests to the kit's Kubernetes API matching `method` and `path`
/// (exactly), and whose query holds `query` when given.
fn count(kit: &Kit, method: &str, path: &str, query: Option<&str>) -> usize {
    kit.emulator()
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .filter(|r| query.is_none_or(|q| r.query.split('&').any(|p| p == q)))
        .count()
}

// ---- 1. A deadline on every request ---------------------------------------
//
// Bound: with --request-timeout 1s, a request that is accepted and never
// answered fails after 1 s and is retried after regcred's backoff (first
// retries 0.1-2 s) or kube-runtime's watcher backoff (0.8 s, doubling); each
// case below allows 20 s, an order of magnitude above the expected 2-4 s.

#[tokio::test]
async fn a_hung_fan_out_list_at_start_up_is_retried() {
    let kit = Kit::start_emulator().await;
    kit.emulator().create_namespace("team-a", &[]);
    kit.emulator().faults().inject_query(Some("GET"), NAMESPACES, "limit=500", Fault::Hang, 1);
    kit.emulator().faults().inject_query(Some("GET"), "/api/v1/secrets", "limit=500", Fault::Hang, 1);
    let started = Instant::now();
    let out = kit.once(&["--secret", "gcr-pull", "--all-namespaces", "--request-timeout", "1s"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(kit.emulator().faults().pending(), 0, "both listings hung once");
    assert!(kit.emulator().secret("team-a", "gcr-pull").is_some());
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_hung_list_body_is_cut_at_the_deadline() {
    // The head arrives, the body never does: the deadline covers the body too.
    let kit = Kit::start_emulator().await;
    kit.emulator().create_namespace("team-a", &[]);
    kit.emulator().faults().inject_query(Some("GET"), NAMESPACES, "limit=500", Fault::Stall, 1);
    let out = kit.once(&["--secret", "gcr-pull", "--all-namespaces", "--request-timeout", "1s"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(kit.emulator().faults().pending(), 0);
    assert!(kit.emulator().secret("team-a", "gcr-pull").is_some());
}

#[tokio::test]
async fn hung_watches_are_replaced_and_fan_out_keeps_repairing() {
    let kit = Kit::start_emulator().await;
    kit.emulator().create_namespace("team-a", &[]);
    let child = kit.daemon(&[
        "--secret",
        "gcr-pull",
        "--all-namespaces",
        "--request-timeout",
        "1s",
        "--watch-timeout",
        "2s",
        "--resync-interval",
        "1h",
        "--admin-addr",
        "off",
    ]);
    wait_for(Duration::from_secs(20), "team-a's Secret", async || kit.emulator().secret("team-a", "gcr-pull")).await;

    // The next watches (opened when the current ones end after 2 s) are
    // accepted and never answered: the deadline on the response head.
    kit.emulator().faults().inject_query(Some("GET"), NAMESPACES, "watch=true", Fault::Hang, 1);
    kit.emulator().faults().inject_query(Some("GET"), "/api/v1/secrets", "watch=true", Fault::Hang, 1);
    wait_for(Duration::from_secs(20), "both hung watches", async || {
        (kit.emulator().faults().pending() == 0).then_some(())
    })
    .await;
    kit.emulator().create_namespace("team-b", &[]);
    wait_for(Duration::from_secs(20), "a new namespace's Secret after hung watch starts", async || {
        kit.emulator().secret("team-b", "gcr-pull")
    })
    .await;

    // Then watches that answer 200 and go silent mid-stream: the watcher's
    // idle bound (--watch-timeout + 5 s) replaces them.
    kit.emulator().faults().inject_query(Some("GET"), NAMESPACES, "watch=true", Fault::Stall, 1);
    kit.emulator().faults().inject_query(Some("GET"), "/api/v1/secrets", "watch=true", Fault::Stall, 1);
    wait_for(Duration::from_secs(20), "both silent watches", async || {
        (kit.emulator().faults().pending() == 0).then_some(())
    })
    .await;
    kit.emulator().create_namespace("team-c", &[]);
    kit.emulator().delete_object("team-a", "secrets", "gcr-pull");
    wait_for(Duration::from_secs(30), "a new namespace's Secret after silent watches", async || {
        kit.emulator().secret("team-c", "gcr-pull")
    })
    .await;
    wait_for(Duration::from_secs(30), "the deleted Secret restored", async || {
        kit.emulator().secret("team-a", "gcr-pull")
    })
    .await;
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn hung_service_account_patch_and_event_publish_are_retried() {
    let kit = Kit::start_emulator().await;
    kit.emulator().create_namespace("team-a", &[]);
    kit.emulator().put_object("team-a", "serviceaccounts", json!({"metadata": {"name": "default"}}));
    kit.emulator().faults().inject(Some("PATCH"), "/api/v1/namespaces/team-a/serviceaccounts", Fault::Hang, 1);
    // A permanent failure in another namespace makes regcred publish an Event there.
    kit.emulator().create_namespace("locked", &[]);
    let forbidden = Fault::Status { code: 403, body: None, retry_after: None };
    kit.emulator().faults().inject(Some("POST"), "/api/v1/namespaces/locked/secrets", forbidden, 1000);
    kit.emulator().faults().inject(Some("POST"), "/apis/events.k8s.io/v1/namespaces/locked/events", Fault::Hang, 1);
    let started = Instant::now();
    let out = kit
        .once(&[
            "--secret",
            "gcr-pull",
            "--namespace",
            "team-a,locked",
            "--patch-service-account",
            "default",
            "--request-timeout",
            "1s",
        ])
        .await;
    assert_eq!(out.code, Some(1), "the locked namespace fails: {out:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    let sa = kit.emulator().object("team-a", "serviceaccounts", "default").unwrap();
    assert_eq!(sa["imagePullSecrets"], json!([{"name": "gcr-pull"}]), "patched after the hung attempt");
    assert!(out.stderr.contains("cannot publish event"), "the hung Event is given up: {}", out.stderr);
}

#[tokio::test]
async fn a_hung_secret_read_in_run_recovers_within_the_timeout() {
    let kit = Kit::start_emulator().await;
    kit.emulator().faults().inject(Some("GET"), SECRETS, Fault::Hang, 2);
    let child = kit.daemon(&["--secret", "gcr-pull", "--request-timeout", "1s", "--admin-addr", "off"]);
    let started = Instant::now();
    wait_for(Duration::from_secs(20), "the Secret", async || {
        kit.secret_doc("default", "gcr-pull", ".dockerconfigjson").await
    })
    .await;
    assert!(started.elapsed() >= Duration::from_secs(2), "two 1 s timeouts came first");
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("request timed out after 1s"), "{stderr}");
}

// ---- 2. No panic on any response ------------------------------------------

#[tokio::test]
async fn an_absurd_token_lifetime_is_clamped_not_fatal() {
    let kit = Kit::start_emulator().await;
    let body = r#"{"access_token":"ya29.forever","expires_in":9000000000000000000,"token_type":"Bearer"}"#;
    kit.google.faults().inject(
        None,
        "/token",
        Fault::Status { code: 200, body: Some(body.into()), retry_after: None },
        1,
    );
    let out = kit.once(&["--secret", "gcr-pull"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let secret = kit.emulator().secret("default", "gcr-pull").unwrap();
    let expires = secret["metadata"]["annotations"]["regcred.dev/expires-at"].as_str().unwrap();
    let expires = humantime::parse_rfc3339(expires).unwrap();
    let horizon = SystemTime::now() + Duration::from_secs(12 * 3600);
    assert!(expires <= horizon, "expiry taken as at most 12 h away: {expires:?}");
    assert!(out.stderr.contains("beyond what Google issues"), "{}", out.stderr);
}

// ---- 3. Overload answered with less load ----------------------------------

#[tokio::test]
async fn a_503_gets_one_request_per_attempt_and_is_reported_as_such() {
    let kit = Kit::start_emulator().await;
    kit.emulator().faults().inject(Some("GET"), SECRETS, status(503, None), 1000);
    let out = kit.once(&["--secret", "gcr-pull"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    let reads = count(&kit, "GET", &format!("{SECRETS}/gcr-pull"), None);
    assert_eq!(reads, 4, "one read per attempt of `once`, no retries underneath");
    let last = out.stderr.lines().last().unwrap();
    assert!(last.contains("503"), "reported as the server's answer, not a timeout: {last}");
}

#[tokio::test]
async fn retry_after_from_the_api_server_is_honoured() {
    let kit = Kit::start_emulator().await;
    kit.emulator().faults().inject(Some("GET"), SECRETS, status(429, Some(2)), 1);
    let started = Instant::now();
    let out = kit.once(&["--secret", "gcr-pull"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(started.elapsed() >= Duration::from_secs(2), "retried after {:?}", started.elapsed());
    assert_eq!(count(&kit, "GET", &format!("{SECRETS}/gcr-pull"), None), 2, "one refused read, one good one");
}

#[tokio::test]
async fn fan_out_against_an_overloaded_server_stays_within_its_request_rate() {
    let kit = Kit::start_emulator().await;
    for i in 0..10 {
        kit.emulator().create_namespace(&format!("team-{i}"), &[]);
    }
    kit.emulator().faults().inject(Some("POST"), "/api/v1/namespaces/team-", status(429, None), 100_000);
    let child = kit.daemon(&[
        "--secret",
        "gcr-pull",
        "--all-namespaces",
        "--max-requests-per-second",
        "2",
        "--max-concurrent-writes",
        "4",
        "--admin-addr",
        "off",
    ]);
    wait_for(Duration::from_secs(20), "the first refused write", async || {
        kit.emulator()
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.starts_with("/api/v1/namespaces/team-"))
            .then_some(())
    })
    .await;
    kit.emulator().clear_requests();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let writes = kit
        .emulator()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.starts_with("/api/v1/namespaces/team-"))
        .count();
    // 2 per second for 5 s, plus a burst of one per concurrent write.
    assert!((1..=14).contains(&writes), "{writes} writes in 5 s at --max-requests-per-second 2");
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
}

// ---- 4. One failing sink never delays the others ---------------------------

#[tokio::test]
async fn healthy_namespaces_never_hold_an_expired_token_while_one_keeps_failing() {
    let kit = Kit::start_emulator().await;
    kit.google.set_token_lifetime(Duration::from_secs(4));
    let healthy: Vec<String> = (0..9).map(|i| format!("team-{i}")).collect();
    for ns in &healthy {
        kit.emulator().create_namespace(ns, &[]);
    }
    kit.emulator().create_namespace("broken", &[]);
    kit.emulator().faults().inject(None, "/api/v1/namespaces/broken/secrets", status(500, None), 100_000);
    let mut args = vec!["--secret", "gcr-pull", "--namespace", "broken"];
    let list = healthy.join(",");
    args.extend(["--namespace", &list, "--refresh-before", "2s", "--jitter", "0s", "--admin-addr", "off"]);
    let child = kit.daemon(&args);
    wait_for(Duration::from_secs(20), "every healthy namespace written", async || {
        healthy.iter().all(|ns| kit.emulator().secret(ns, "gcr-pull").is_some()).then_some(())
    })
    .await;

    // Sample for 20 s (five token lifetimes): the password in each healthy
    // namespace must be a token the kit still considers unexpired.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut samples = 0;
    while Instant::now() < deadline {
        let issued = kit.google.issued_tokens();
        let now = SystemTime::now();
        for ns in &healthy {
            let doc = kit.secret_doc(ns, "gcr-pull", ".dockerconfigjson").await.unwrap();
            let token = issued.iter().find(|t| t.access_token == password(&doc)).expect("an issued token");
            assert!(
                token.expires_at > now,
                "{ns} holds a token expired {:?} ago",
                now.duration_since(token.expires_at)
            );
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(samples > 50, "{samples} samples");
    assert!(kit.issued().len() >= 5, "tokens kept rotating: {}", kit.issued().len());
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
}

/// `run` writing `file` beside the Secret sink of `sink_args`, with each
/// token (4 s long on a kit that issues them so) replaced 2 s after its mint.
fn rotating_beside(kit: &Kit, file: &std::path::Path, sink_args: &[&str]) -> tokio::process::Child {
    let file = file.display().to_string();
    let mut args = sink_args.to_vec();
    args.extend(["--output-file", &file, "--refresh-before", "2s", "--jitter", "0s", "--admin-addr", "off"]);
    kit.daemon(&args)
}

#[tokio::test]
async fn a_failing_secret_does_not_delay_the_file() {
    let kit = Kit::start_emulator().await;
    kit.google.set_token_lifetime(Duration::from_secs(4));
    kit.emulator().faults().inject(None, SECRETS, status(500, None), 100_000);
    let file = kit.path("config.json");
    let child = rotating_beside(&kit, &file, &["--secret", "gcr-pull"]);
    wait_for(Duration::from_secs(20), "the file", async || common::read_json(&file)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let doc = common::read_json(&file).unwrap();
        let token = kit.google.issued_tokens().into_iter().find(|t| t.access_token == password(&doc)).expect("issued");
        assert!(token.expires_at > SystemTime::now(), "the file holds an expired token");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn a_stalled_fan_out_never_holds_back_the_next_mint_or_the_file_beside_it() {
    let kit = Kit::start_emulator().await;
    kit.google.set_token_lifetime(Duration::from_secs(4));
    kit.kube.create_namespace("a", &[]).await;
    // The API server accepts fan-out's namespace listing and never sends the
    // list: fan-out waits (up to a minute) for a first listing that never comes.
    kit.emulator().faults().inject_query(Some("GET"), "/api/v1/namespaces", "limit=500", Fault::Stall, 1000);
    let file = kit.path("config.json");
    let child = rotating_beside(&kit, &file, &["--secret", "gcr-pull", "--namespace", "a"]);
    // Each token is replaced 2 s after it is minted: the file follows.
    let mut seen =
        vec![password(&wait_for(Duration::from_secs(20), "the file", async || common::read_json(&file)).await)];
    for rotation in 1..=3 {
        let next = wait_for(Duration::from_secs(8), &format!("file rotation {rotation}"), async || {
            common::read_json(&file).map(|d| password(&d)).filter(|p| !seen.contains(p))
        })
        .await;
        seen.push(next);
    }
    assert!(kit.emulator().secret("a", "gcr-pull").is_none(), "the fan-out is still stalled");

    // Once the API server answers, the fan-out catches up with the newest
    // document, never the one it was first offered.
    kit.emulator().faults().clear();
    wait_for(Duration::from_secs(60), "the fan-out holding the file's token", async || {
        let secret = password(&kit.secret_doc("a", "gcr-pull", ".dockerconfigjson").await?);
        let current = password(&common::read_json(&file)?);
        (secret == current).then_some(())
    })
    .await;
    let secret = password(&kit.secret_doc("a", "gcr-pull", ".dockerconfigjson").await.unwrap());
    assert_ne!(secret, seen[0], "not the document offered while it was stalled");
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
}

// ---- 5. Readiness tells the truth ------------------------------------------

/// Polls /readyz until it answers `want`; returns the body.
async fn readyz(port: u16, want: u16, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((code, body)) = http_get(port, "/readyz").await {
            if code == want {
                return body;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readyz_fails_at_once_when_the_secret_is_gone_for_good_or_has_the_wrong_type() {
    let kit = Kit::start_emulator().await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = kit.daemon(&["--secret", "gcr-pull", "--resync-interval", "1s", "--admin-addr", &addr]);
    readyz(port, 200, "ready").await;

    // Deleted, and regcred may not create it again.
    let forbidden = Fault::Status { code: 403, body: None, retry_after: None };
    kit.emulator().faults().inject(Some("POST"), SECRETS, forbidden, 100_000);
    kit.emulator().delete_object("default", "secrets", "gcr-pull");
    let body = readyz(port, 503, "unready after the deletion").await;
    assert!(body.contains("forbidden"), "{body}");

    // Allowed again: it comes back, and so does readiness.
    kit.emulator().faults().clear();
    readyz(port, 200, "ready again").await;

    // Replaced by someone with a Secret of another type.
    kit.emulator().delete_object("default", "secrets", "gcr-pull");
    kit.emulator().put_object(
        "default",
        "secrets",
        json!({"metadata": {"name": "gcr-pull"}, "type": "Opaque", "data": {"other": "eA=="}}),
    );
    let body = readyz(port, 503, "unready with the wrong type").await;
    assert!(body.contains("has type Opaque"), "{body}");
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
}

// ---- 6. Events match the current failure ------------------------------------

#[tokio::test]
async fn a_new_failure_on_the_same_secret_gets_its_own_event() {
    let kit = Kit::start_emulator().await;
    let child = kit.daemon(&["--secret", "gcr-pull", "--resync-interval", "1s", "--admin-addr", "off"]);
    wait_for(Duration::from_secs(20), "the Secret", async || kit.emulator().secret("default", "gcr-pull")).await;

    // First: forbidden to update an edited Secret.
    let forbidden = Fault::Status { code: 403, body: None, retry_after: None };
    kit.emulator().faults().inject(Some("PATCH"), SECRETS, forbidden, 100_000);
    let mut edited = kit.emulator().secret("default", "gcr-pull").unwrap();
    edited["data"][".dockerconfigjson"] = json!("eyJhdXRocyI6e319");
    kit.emulator().put_object("default", "secrets", edited);
    let warnings = |kit: &Kit| -> Vec<String> {
        kit.emulator()
            .events("default")
            .iter()
            .filter(|e| e["reason"] == "WriteFailed")
            .map(|e| e["note"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    wait_for(Duration::from_secs(10), "a forbidden Warning", async || (warnings(&kit).len() == 1).then_some(())).await;
    assert!(warnings(&kit)[0].contains("forbidden"), "{:?}", warnings(&kit));

    // Then: someone replaces it with a Secret of another type.
    kit.emulator().faults().clear();
    kit.emulator().delete_object("default", "secrets", "gcr-pull");
    kit.emulator().put_object("default", "secrets", json!({"metadata": {"name": "gcr-pull"}, "type": "Opaque"}));
    wait_for(Duration::from_secs(10), "a second Warning", async || (warnings(&kit).len() == 2).then_some(())).await;
    let notes = warnings(&kit);
    assert!(notes.iter().any(|n| n.contains("has type Opaque")), "the new failure has its own note: {notes:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(warnings(&kit).len(), 2, "the same failure is not published again: {:?}", warnings(&kit));
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
}

// ---- 7. --prune after a relist ----------------------------------------------

#[tokio::test]
async fn prune_catches_namespaces_that_stopped_matching_while_the_watch_was_down() {
    let kit = Kit::start_emulator().await;
    kit.emulator().create_namespace("a", &[("regcred", "enabled")]);
    kit.emulator().create_namespace("b", &[("regcred", "enabled")]);
    let child = kit.daemon(&[
        "--secret",
        "gcr-pull",
        "--namespace-selector",
        "regcred=enabled",
        "--prune",
        "--watch-timeout",
        "1s",
        "--resync-interval",
        "1h",
        "--admin-addr",
        "off",
    ]);
    wait_for(Duration::from_secs(20), "both Secrets", async || {
        (kit.emulator().secret("a", "gcr-pull").is_some() && kit.emulator().secret("b", "gcr-pull").is_some())
            .then_some(())
    })
    .await;

    // The namespace watch fails for a while (each renewal is refused) ...
    kit.emulator().faults().inject_query(Some("GET"), NAMESPACES, "watch=true", status(500, None), 100_000);
    wait_for(Duration::from_secs(10), "a refused watch", async || {
        (count(&kit, "GET", NAMESPACES, Some("watch=true")) > 0
            && kit.emulator().requests().iter().any(|r| r.path == NAMESPACES && r.status == 500))
        .then_some(())
    })
    .await;
    // ... meanwhile `a` stops matching, and history is compacted, so the
    // watch cannot resume: regcred must relist and notice `a` is gone.
    kit.emulator().label_namespace("a", &[("regcred", "disabled")]);
    kit.emulator().compact();
    kit.emulator().faults().clear();
    wait_for(Duration::from_secs(30), "a's Secret pruned", async || {
        kit.emulator().secret("a", "gcr-pull").is_none().then_some(())
    })
    .await;
    assert!(kit.emulator().secret("b", "gcr-pull").is_some(), "b still matches");
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
}

// ---- Secrets stay secret, even in an answer regcred cannot read -----------

#[tokio::test]
async fn an_unreadable_secret_from_the_api_server_is_never_logged() {
    let kit = Kit::start_emulator().await;
    // A Secret whose data is not base64: the client cannot decode it and
    // must not print what it received, which may hold a credential.
    let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gcr-pull", "namespace": "default"},
                      "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "SECRET-MARKER-not-base64!"}});
    let fault = Fault::Status { code: 200, body: Some(body.to_string()), retry_after: None };
    kit.emulator().faults().inject(Some("GET"), &format!("{SECRETS}/gcr-pull"), fault, 100);
    let out = kit.once(&["--secret", "gcr-pull", "--log-level", "trace"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(!out.stderr.contains("SECRET-MARKER"), "the answer was logged: {}", out.stderr);
}
