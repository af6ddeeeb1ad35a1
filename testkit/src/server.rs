//! The HTTP front end shared by the emulators.
//!
//! Each emulator is an axum [`Router`] served by a hand-written hyper accept
//! loop rather than `axum::serve`, because one fault needs it: to *drop* a
//! connection without any response, the per-request service returns an error,
//! which makes hyper close the socket. The same wrapper records every request,
//! applies the configured latency and the armed [`Faults`], and logs one line per
//! request (method, path, status; never headers, query or bodies, which carry
//! tokens). The registry fronts ([`crate::front`]) are served by the same loop
//! behind a TLS handshake.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::Router;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::faults::{Fault, Faults};

/// One request as the emulator saw it, in arrival order.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The raw query string (without `?`), empty if none.
    pub query: String,
    /// The response status; `0` while the request is still being answered, or if
    /// it never was (a [`Fault::Hang`] or [`Fault::Drop`]).
    pub status: u16,
    /// The request body, lossily decoded as UTF-8.
    pub body: String,
    /// Request headers, lower-case names, in the order received.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The value of a request header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The request log of one emulator.
#[derive(Default)]
pub(crate) struct Recorder {
    reqs: Mutex<Vec<RecordedRequest>>,
    /// Index of the first entry still in `reqs` (entries before were cleared),
    /// so in-flight requests can still set their status after a clear.
    base: Mutex<usize>,
}

impl Recorder {
    fn push(&self, r: RecordedRequest) -> usize {
        let mut reqs = self.reqs.lock().unwrap();
        reqs.push(r);
        *self.base.lock().unwrap() + reqs.len() - 1
    }

    fn set_status(&self, idx: usize, status: u16) {
        let mut reqs = self.reqs.lock().unwrap();
        let base = *self.base.lock().unwrap();
        if let Some(r) = idx.checked_sub(base).and_then(|i| reqs.get_mut(i)) {
            r.status = status;
        }
    }

    pub(crate) fn all(&self) -> Vec<RecordedRequest> {
        self.reqs.lock().unwrap().clone()
    }

    pub(crate) fn clear(&self) {
        let mut reqs = self.reqs.lock().unwrap();
        *self.base.lock().unwrap() += reqs.len();
        reqs.clear();
    }
}

/// Builds the peer's own error response for an injected `Fault::Status` without
/// a body: `(status, path) -> response`.
pub(crate) type ErrorResponder = Arc<dyn Fn(StatusCode, &str) -> Response<Body> + Send + Sync>;

/// What the front end needs to know about the peer it serves.
#[derive(Clone)]
pub(crate) struct Peer {
    /// Short name used in log lines ("kube", "google").
    pub name: &'static str,
    pub faults: Faults,
    pub recorder: Arc<Recorder>,
    pub error: ErrorResponder,
}

/// A running server; dropping it stops the accept loop and every open
/// connection (including hung requests and watch streams).
pub(crate) struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The error a service returns to make hyper close the connection unanswered.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by injected fault")
    }
}

impl std::error::Error for DropConnection {}

/// Binds `127.0.0.1:0` (the port is known before the router is built, so
/// handlers can mention their own URL).
pub(crate) async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0")
}

/// Binds `127.0.0.1:0` and serves `router` in a background task.
pub(crate) async fn serve(router: Router, peer: Peer) -> Server {
    serve_on(bind().await, router, peer)
}

/// Serves `router` on an already bound listener in a background task.
pub(crate) fn serve_on(listener: TcpListener, router: Router, peer: Peer) -> Server {
    let addr = listener.local_addr().expect("local_addr");
    let task = tokio::spawn(accept_loop(listener, None, router, peer));
    Server { addr, task }
}

/// Serves `router` over TLS (HTTP/1.1) on an already bound listener in a
/// background task.
pub(crate) fn serve_tls_on(listener: TcpListener, tls: TlsAcceptor, router: Router, peer: Peer) -> Server {
    let addr = listener.local_addr().expect("local_addr");
    let task = tokio::spawn(accept_loop(listener, Some(tls), router, peer));
    Server { addr, task }
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, router: Router, peer: Peer) {
    // Connections live in this JoinSet so that aborting the accept loop (when the
    // emulator is dropped) aborts them all.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let peer = peer.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    match tls {
                        None => serve_connection(stream, router, peer).await,
                        // The handshake runs in the connection's task, so a
                        // slow or failing client holds up no one else.
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => serve_connection(stream, router, peer).await,
                            Err(e) => tracing::info!(target: "regcred_testkit", "{} TLS handshake failed: {e}", peer.name),
                        },
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_connection<S>(stream: S, router: Router, peer: Peer)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| handle(req, router.clone(), peer.clone()));
    let _ =
        hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc).await;
}

async fn handle(req: Request<Incoming>, router: Router, peer: Peer) -> Result<Response<Body>, DropConnection> {
    let (parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let idx = peer.recorder.push(RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        status: 0,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        headers,
    });

    let latency = peer.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let response = match peer.faults.take(&method, &path, &query) {
        Some(Fault::Status { code, body, retry_after }) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = match body {
                Some(b) => Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, guess_content_type(&b))
                    .body(Body::from(b))
                    .expect("valid response"),
                None => (peer.error)(status, &path),
            };
            if let Some(secs) = retry_after {
                resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            }
            Some(resp)
        }
        Some(Fault::Hang) => {
            tracing::info!(target: "regcred_testkit", "{} {method} {path} (hang)", peer.name);
            std::future::pending::<()>().await;
            unreachable!()
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        Some(Fault::Malformed) => Some(
            Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"kind\": \"Sta<<not json"))
                .expect("valid response"),
        ),
        Some(Fault::Stall) => {
            tracing::info!(target: "regcred_testkit", "{} {method} {path} (stalled)", peer.name);
            let body = Body::from_stream(futures_util::stream::pending::<Result<bytes::Bytes, Infallible>>());
            Some(
                Response::builder()
                    .status(StatusCode::OK)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .expect("valid response"),
            )
        }
        Some(Fault::Drop) => {
            tracing::info!(target: "regcred_testkit", "{} {method} {path} (dropped)", peer.name);
            return Err(DropConnection);
        }
        None => None,
    };

    let response = match response {
        Some(r) => r,
        None => {
            let req = Request::from_parts(parts, Body::from(bytes));
            let r: Result<_, Infallible> = router.oneshot(req).await;
            r.unwrap_or_else(|e| match e {})
        }
    };
    let status = response.status().as_u16();
    peer.recorder.set_status(idx, status);
    tracing::info!(target: "regcred_testkit", "{} {method} {path} {status}", peer.name);
    Ok(response)
}

fn guess_content_type(body: &str) -> &'static str {
    if serde_json::from_str::<serde_json::Value>(body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    }
}
