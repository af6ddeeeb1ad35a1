//! The admin HTTP server: `/livez`, `/readyz` and `/metrics`.
//!
//! Nothing it serves is secret: readiness reasons are sink names and error
//! messages (which never carry credentials), metrics carry sink names and
//! fixed reason labels.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

use crate::health::Health;
use crate::metrics::Metrics;

/// `--admin-addr`: an address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AdminAddr {
    Off,
    At(SocketAddr),
}

impl std::str::FromStr for AdminAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(AdminAddr::Off),
            _ => {
                s.parse().map(AdminAddr::At).map_err(|_| "expected IP:PORT (for example 0.0.0.0:8080) or `off`".into())
            }
        }
    }
}

/// What the handlers read.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
}

/// Binds the admin address, before the refresh loop starts, so that a
/// taken address stops regcred at start-up. The listener knows the address
/// it got ([`serve`] logs it), so `--admin-addr 127.0.0.1:0` works in tests
/// and demos.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `shutdown` flips.
pub(crate) async fn serve(listener: TcpListener, state: AdminState, mut shutdown: watch::Receiver<bool>) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "admin server listening");
    }
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => { debug!(error = %e, "accept failed"); continue; }
            },
            _ = shutdown.changed() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn handle<B>(state: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into());
    }
    match req.uri().path() {
        "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match state.health.readiness(SystemTime::now()) {
            Ok(()) => text(StatusCode::OK, "ok\n".into()),
            Err(problems) => text(StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n"),
        },
        "/metrics" => {
            let mut resp = text(StatusCode::OK, state.metrics.encode());
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8".parse().expect("valid header"),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8".parse().expect("valid header"));
    resp
}
