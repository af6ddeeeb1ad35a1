//! Fault injection, observed from a plain HTTP client.

mod common;

use std::time::{Duration, Instant};

use common::*;
use regcred_testkit::{Fault, Google, KubeApi};

#[tokio::test]
async fn status_faults_use_the_peers_error_shape_and_count_down() {
    let k = KubeApi::start().await;
    let url = format!("{}/api/v1/namespaces/default/secrets", k.url());
    k.faults().inject(
        Some("GET"),
        "/api/v1/namespaces/default/secrets",
        Fault::Status { code: 503, body: None, retry_after: Some(7) },
        2,
    );
    for _ in 0..2 {
        let r = get(&url).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("7"));
        let s = r.json();
        assert_eq!(s["kind"], "Status");
        assert_eq!(s["reason"], "ServiceUnavailable");
        assert_eq!(s["code"], 503);
    }
    assert_eq!(get(&url).await.status, 200);
    assert_eq!(k.faults().pending(), 0);
    // Method filter: a POST is not faulted by a GET rule.
    k.faults().inject(Some("GET"), "/", Fault::Status { code: 500, body: Some("boom".into()), retry_after: None }, 1);
    let r = send("POST", &url, &[("content-type", "application/json")], Some("{\"metadata\":{\"name\":\"a\"}}"))
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let r = get(&url).await;
    assert_eq!((r.status, r.body.as_str()), (500, "boom"));
    let statuses: Vec<u16> = k.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200, 201, 500]);

    let g = Google::start().await;
    g.faults().inject(None, "/token", Fault::Status { code: 500, body: None, retry_after: None }, 1);
    let r = send("POST", &g.token_uri(), &[], Some("")).await.unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["error"], "internal_failure");
}

#[tokio::test]
async fn hang_delay_malformed_drop() {
    let k = KubeApi::start().await;
    let url = format!("{}/api/v1/namespaces", k.url());

    k.faults().inject(None, "/api", Fault::Hang, 1);
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_millis(300), get(&url)).await;
    assert!(r.is_err(), "a hung request must not be answered");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(k.requests().last().unwrap().status, 0);

    k.faults().inject(None, "/api", Fault::Delay(Duration::from_millis(300)), 1);
    let t = Instant::now();
    let r = get(&url).await;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    k.faults().inject(None, "/api", Fault::Malformed, 1);
    let r = get(&url).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(serde_json::from_str::<serde_json::Value>(&r.body).is_err());

    k.faults().inject(None, "/api", Fault::Drop, 1);
    let err = send("GET", &url, &[], None).await.err().expect("dropped connection is an error");
    assert!(!err.to_string().is_empty());
    // The next request on a new connection works.
    assert_eq!(get(&url).await.status, 200);

    k.faults().set_latency(Duration::from_millis(100));
    let t = Instant::now();
    get(&url).await;
    assert!(t.elapsed() >= Duration::from_millis(100));
    k.faults().clear();
}
