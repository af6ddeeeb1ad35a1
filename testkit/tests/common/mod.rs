//! A plain HTTP client for the tests: what goes over the wire, no client library
//! in between.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).and_then(|v| v.to_str().ok())
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn build(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.unwrap_or("").to_string()))).expect("request")
}

/// Sends a request and reads the whole response.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Resp, hyper_util::client::legacy::Error> {
    let resp = client().request(build(method, url, headers, body)).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    Ok(Resp { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() })
}

pub async fn get(url: &str) -> Resp {
    send("GET", url, &[], None).await.expect("GET")
}

pub async fn json_req(method: &str, url: &str, body: &Value) -> Resp {
    send(method, url, &[("content-type", "application/json")], Some(&body.to_string())).await.expect("request")
}

pub async fn patch(url: &str, content_type: &str, body: &Value) -> Resp {
    send("PATCH", url, &[("content-type", content_type)], Some(&body.to_string())).await.expect("PATCH")
}

/// Opens a streaming GET (a watch) and returns its status and body.
pub async fn open_stream(url: &str) -> (u16, Incoming) {
    open_stream_with(url, &[]).await
}

/// [`open_stream`] with request headers.
pub async fn open_stream_with(url: &str, headers: &[(&str, &str)]) -> (u16, Incoming) {
    let resp = client().request(build("GET", url, headers, None)).await.expect("watch request");
    (resp.status().as_u16(), resp.into_body())
}

/// Reads newline-delimited JSON events from a stream until `n` arrived or the
/// timeout passed.
pub async fn read_events(body: &mut Incoming, buf: &mut String, n: usize, timeout: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            out.push(serde_json::from_str(line.trim()).expect("event JSON"));
            if out.len() == n {
                return out;
            }
        }
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(f))) => f,
            _ => return out,
        };
        if let Ok(data) = frame.into_data() {
            buf.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

pub fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
