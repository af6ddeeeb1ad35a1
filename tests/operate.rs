//! What operators see: /readyz, /metrics and Kubernetes Events; on either
//! Kubernetes backend (see `common::backend`).

mod common;

use std::time::{Duration, SystemTime};

use common::{free_port, http_get, terminate, wait_for, Kit};
use regcred_testkit::Fault;

fn status_500() -> Fault {
    Fault::Status { code: 500, body: None, retry_after: None }
}

/// The first answer of the admin server, once it listens.
async fn wait_for_answer(port: u16, path: &str) -> (u16, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = http_get(port, path).await {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "the admin server never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn poll_status(port: u16, path: &str, want: u16, timeout: Duration) -> SystemTime {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some((code, _)) = http_get(port, path).await {
            if code == want {
                return SystemTime::now();
            }
        }
        assert!(std::time::Instant::now() < deadline, "{path} never answered {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readyz_fails_before_expiry_when_refreshes_keep_failing_and_recovers() {
    let kit = Kit::start().await;
    kit.google.set_token_lifetime(Duration::from_secs(8));
    // The first mints fail: not ready before the first successful write.
    kit.google.faults().inject(None, "/token", status_500(), 2);
    let port = free_port();
    let child = kit.daemon(&[
        "--secret",
        "gcr-pull",
        "--refresh-before",
        "4s",
        "--jitter",
        "0s",
        "--admin-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    let (code, body) = wait_for_answer(port, "/readyz").await;
    assert_eq!(code, 503, "unready before any credential: {body}");
    assert!(body.contains(&format!("secret {}/gcr-pull: no credential written yet", kit.namespace)), "{body}");
    assert_eq!(http_get(port, "/livez").await.unwrap().0, 200);

    poll_status(port, "/readyz", 200, Duration::from_secs(15)).await;
    let first = kit.google.issued_tokens().pop().unwrap();

    // From now on every mint fails: readiness must drop while the token still works.
    kit.google.faults().inject(None, "/token", status_500(), 10_000);
    let flipped = poll_status(port, "/readyz", 503, Duration::from_secs(15)).await;
    assert!(flipped < first.expires_at, "unready only after the credential expired");
    let (_, body) = http_get(port, "/readyz").await.unwrap();
    assert!(body.contains("overdue for refresh") && body.contains("500"), "{body}");

    kit.google.faults().clear();
    poll_status(port, "/readyz", 200, Duration::from_secs(40)).await;
    let (code, stderr) = terminate(child).await;
    assert_eq!(code, Some(0), "{stderr}");
}

fn sample<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &str,
    label: Option<(&str, &str)>,
) -> Option<&'a prometheus_parse::Sample> {
    scrape.samples.iter().find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
}

fn value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => panic!("not a scalar: {s:?}"),
    }
}

#[tokio::test]
async fn metrics_report_expiry_success_and_failures_by_reason() {
    let kit = Kit::start().await;
    kit.google.faults().inject(None, "/token", status_500(), 1);
    let port = free_port();
    let child = kit.daemon(&["--secret", "gcr-pull", "--admin-addr", &format!("127.0.0.1:{port}")]);
    poll_status(port, "/readyz", 200, Duration::from_secs(20)).await;
    let (code, body) = http_get(port, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();

    let sink_name = format!("secret {}/gcr-pull", kit.namespace);
    let sink = ("sink", sink_name.as_str());
    let annotation = kit.kube.secret(&kit.namespace, "gcr-pull").await.unwrap()["metadata"]["annotations"]
        ["regcred.dev/expires-at"]
        .as_str()
        .unwrap()
        .to_string();
    let expires =
        humantime::parse_rfc3339(&annotation).unwrap().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
    let reported =
        value(sample(&scrape, "regcred_credential_expiry_timestamp_seconds", Some(sink)).expect("expiry gauge"));
    assert!((reported - expires).abs() < 1.5, "expiry {reported} vs annotation {expires}");
    let last = value(sample(&scrape, "regcred_last_success_timestamp_seconds", Some(sink)).expect("last success"));
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(now - last < 30.0);
    assert_eq!(value(sample(&scrape, "regcred_refresh_attempts_total", None).expect("attempts")), 2.0);
    assert_eq!(
        value(sample(&scrape, "regcred_refresh_failures_total", Some(("reason", "endpoint_5xx"))).expect("failures")),
        1.0
    );
    assert_eq!(
        value(sample(&scrape, "regcred_build_info", Some(("version", env!("CARGO_PKG_VERSION")))).expect("build info")),
        1.0
    );
    assert!(sample(&scrape, "regcred_token_mint_duration_seconds_count", None).is_some(), "mint histogram");
    assert!(
        sample(&scrape, "regcred_write_duration_seconds_count", Some(("kind", "secret"))).is_some(),
        "write histogram"
    );
    for token in kit.issued() {
        assert!(!body.contains(&token), "token in /metrics");
    }
    let (code, _) = terminate(child).await;
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn routine_rotations_publish_no_events_unless_asked() {
    let kit = Kit::start().await;
    assert_eq!(kit.once(&["--secret", "gcr-pull"]).await.code, Some(0));
    assert_eq!(kit.once(&["--secret", "gcr-pull"]).await.code, Some(0));
    assert!(kit.kube.events(&kit.namespace).await.is_empty());
    assert_eq!(kit.once(&["--secret", "gcr-pull", "--rotation-events"]).await.code, Some(0));
    let events = kit.kube.events(&kit.namespace).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "Rotated");
}

/// Tests that need the emulator: 500s are injected, its request log is read.
mod emulator_only {
    use super::*;

    #[tokio::test]
    async fn events_say_when_writes_fail_and_when_they_recover() {
        let kit = Kit::start_emulator().await;
        kit.emulator().faults().inject(Some("POST"), "/api/v1/namespaces/default/secrets", status_500(), 3);
        let child = kit.daemon(&["--secret", "gcr-pull", "--admin-addr", "off"]);
        wait_for(Duration::from_secs(30), "the Secret", async || kit.kube.secret("default", "gcr-pull").await).await;
        let events = wait_for(Duration::from_secs(10), "two events", async || {
            let ev = kit.kube.events("default").await;
            (ev.len() >= 2).then_some(ev)
        })
        .await;
        let (code, _) = terminate(child).await;
        assert_eq!(code, Some(0));

        let reasons: Vec<&str> = events.iter().map(|e| e["reason"].as_str().unwrap()).collect();
        assert_eq!(reasons, ["WriteFailed", "Recovered"]);
        assert_eq!(events[0]["type"], "Warning");
        assert_eq!(events[1]["type"], "Normal");
        for e in &events {
            assert_eq!(e["regarding"]["kind"], "Secret");
            assert_eq!(e["regarding"]["name"], "gcr-pull");
            assert_eq!(e["reportingController"], "regcred");
        }
        assert!(events[0]["note"].as_str().unwrap().contains("500"), "{}", events[0]["note"]);
        let all = serde_json::to_string(&events).unwrap();
        for token in kit.issued() {
            assert!(!all.contains(&token), "token in an Event");
        }
    }

    #[tokio::test]
    async fn every_request_to_kubernetes_and_google_names_regcred_and_its_version() {
        let kit = Kit::start_emulator().await;
        // A key file (Google's token endpoint) into one Secret, then the
        // metadata server into a fan-out (watches, writes, rotation Events).
        let out = kit.once(&["--secret", "gcr-pull"]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let out = kit.run(&["once", "--secret", "fanned", "--namespace", "default", "--rotation-events"]).await;
        assert_eq!(out.code, Some(0), "{out:?}");

        let wanted = format!("regcred/{}", env!("CARGO_PKG_VERSION"));
        let kube = kit.emulator().requests();
        let google = kit.google.requests();
        for r in kube.iter().chain(&google) {
            assert_eq!(r.header("user-agent"), Some(wanted.as_str()), "{} {}?{}", r.method, r.path, r.query);
        }
        let saw = |what: &str, hit: bool| assert!(hit, "no {what} was made: the check above proved nothing about it");
        saw("watch", kube.iter().any(|r| r.query.contains("watch=true")));
        saw("Secret write", kube.iter().any(|r| r.method == "POST" && r.path.ends_with("/secrets")));
        saw("Event", kube.iter().any(|r| r.path.contains("/events")));
        saw("token request", google.iter().any(|r| r.path == "/token"));
        saw("metadata request", google.iter().any(|r| r.path.starts_with("/computeMetadata/")));
    }
}
