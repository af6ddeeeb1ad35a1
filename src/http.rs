//! A small HTTP client for the credential sources that regcred implements
//! itself (metadata server, refresh-token grant, and the token exchanges that
//! gcp_auth lacks). Every request carries a timeout: a peer that hangs must
//! turn into a retryable error, never a stuck refresh loop.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// A response read in full.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Transport failures. Messages name the URL but never a request body,
/// which may carry a token or an assertion.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("request to {url} timed out after {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("request to {url} failed: {source}")]
    Transport {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot load the system's CA certificates for HTTPS: {0}")]
    Tls(std::io::Error),
}

/// Shared client with a per-request timeout.
#[derive(Clone)]
pub(crate) struct HttpClient {
    inner: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpClient {
    /// Builds a client that speaks HTTP and HTTPS (system CA roots).
    pub(crate) fn new(timeout: Duration) -> Result<Self, HttpError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(HttpError::Tls)?
            .https_or_http()
            .enable_http1()
            .build();
        let inner = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https);
        Ok(Self { inner, timeout })
    }

    /// Sends a request and reads the whole body, all within the timeout.
    pub(crate) async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response, HttpError> {
        let url = redact_query(&req.uri().to_string());
        let call = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| HttpError::Transport { url: url.clone(), source: Box::new(e) })?;
            let (parts, body) = resp.into_parts();
            let body =
                body.collect().await.map_err(|e| HttpError::Transport { url: url.clone(), source: Box::new(e) })?;
            Ok(Response { status: parts.status, headers: parts.headers, body: body.to_bytes() })
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout { url, timeout: self.timeout }),
        }
    }
}

/// URLs go into error messages; their query strings are dropped in case a
/// caller ever puts something sensitive there.
fn redact_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

/// Whether an answer with this status may succeed if the same request is
/// sent again later: server errors, 429 Too Many Requests, 408 Request
/// Timeout. The one rule for Google's endpoints and the API server.
pub(crate) fn is_retryable_status(code: u16) -> bool {
    code >= 500 || code == 429 || code == 408
}

/// Parses the `Retry-After` header (seconds form) that Google and the
/// Kubernetes API send with 429 and 503 answers.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get(hyper::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}
