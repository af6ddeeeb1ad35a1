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

/// What regcred calls itself in every request, to Google and to the API
/// server, so that operators find it in audit and access logs.
pub(crate) const USER_AGENT: &str = concat!("regcred/", env!("CARGO_PKG_VERSION"));

/// A response read in full.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A response with `status` and `body` and no headers, for the unit tests
/// of the code that reads one.
#[cfg(test)]
pub(crate) fn test_response(status: u16, body: &str) -> Response {
    Response { status: StatusCode::from_u16(status).unwrap(), headers: HeaderMap::new(), body: body.to_string().into() }
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
    /// The URL, or a header value, is not something HTTP can carry (the
    /// value is not repeated: a header may be a credential).
    #[error("cannot send a request to {url:?}: not an http(s) URL, or a header value HTTP does not allow")]
    Invalid { url: String },
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

    /// GET with extra headers: the metadata server, a subject-token URL.
    pub(crate) async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response, HttpError> {
        let request = headers.iter().fold(Request::get(url), |r, (name, value)| r.header(*name, *value));
        self.send(finish(url, request, Bytes::new())?).await
    }

    /// POST of an `application/x-www-form-urlencoded` body ([`form`]), as
    /// OAuth token endpoints and STS take; `authorization` is a whole
    /// `Authorization` header value.
    pub(crate) async fn post_form(
        &self,
        url: &str,
        form: String,
        authorization: Option<&str>,
    ) -> Result<Response, HttpError> {
        let mut request = Request::post(url).header(hyper::header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(value) = authorization {
            request = request.header(hyper::header::AUTHORIZATION, value);
        }
        self.send(finish(url, request, Bytes::from(form))?).await
    }

    /// POST of a JSON body with a bearer token: IAM Credentials.
    pub(crate) async fn post_json(&self, url: &str, bearer: &str, body: String) -> Result<Response, HttpError> {
        let request = Request::post(url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::AUTHORIZATION, format!("Bearer {bearer}"));
        self.send(finish(url, request, Bytes::from(body))?).await
    }

    /// Any method with headers and a body, as given: the signed AWS calls
    /// (whose headers must be sent exactly as signed) and IMDS's `PUT`.
    pub(crate) async fn call(
        &self,
        method: hyper::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        let request = headers.iter().fold(Request::builder().method(method).uri(url), |r, (k, v)| r.header(*k, *v));
        self.send(finish(url, request, Bytes::from(body))?).await
    }

    /// Sends a request, as [`USER_AGENT`], and reads the whole body, all
    /// within the timeout.
    pub(crate) async fn send(&self, mut req: Request<Full<Bytes>>) -> Result<Response, HttpError> {
        let url = redact_query(&req.uri().to_string());
        req.headers_mut().insert(hyper::header::USER_AGENT, hyper::header::HeaderValue::from_static(USER_AGENT));
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

/// The request, or [`HttpError::Invalid`] if the URL or a header would not
/// make one. Only http(s) URLs are sent: the client would refuse others later,
/// with a less helpful message.
fn finish(url: &str, builder: hyper::http::request::Builder, body: Bytes) -> Result<Request<Full<Bytes>>, HttpError> {
    let invalid = || HttpError::Invalid { url: redact_query(url) };
    if !is_http_url(url) {
        return Err(invalid());
    }
    builder.body(Full::new(body)).map_err(|_| invalid())
}

/// Whether `s` starts like a URL this client can send to.
pub(crate) fn is_http_url(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://")
}

/// An `application/x-www-form-urlencoded` body, as Google's token endpoints take.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// One form-encoded component (also what OAuth's client authentication
/// header expects of the client id and secret, RFC 6749 section 2.3.1).
pub(crate) fn form_escape(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_http_cannot_carry_is_refused_without_repeating_its_headers() {
        let client = HttpClient::new(Duration::from_secs(1)).unwrap();
        let secret_header = "Bearer ya29.secret\nInjected: yes";
        let err = client.get("http://127.0.0.1:9/x", &[("Authorization", secret_header)]).await.unwrap_err();
        assert!(matches!(&err, HttpError::Invalid { url } if url == "http://127.0.0.1:9/x"), "{err:?}");
        assert!(!err.to_string().contains("ya29"), "{err}");
        for url in ["sts.googleapis.com/v1/token", "ftp://h/x", "http://bad host/"] {
            let err = client.post_form(url, form(&[("a", "b")]), None).await.unwrap_err();
            assert!(matches!(err, HttpError::Invalid { .. }), "{url}: {err:?}");
        }
        // A valid request is sent (nothing listens on port 9), and its error
        // names the URL without the query.
        let err = client.post_json("http://127.0.0.1:9/x?key=abc", "t", "{}".into()).await.unwrap_err();
        assert!(matches!(&err, HttpError::Transport { url, .. } if url == "http://127.0.0.1:9/x?…"), "{err:?}");
    }
}
