//! The Kubernetes client regcred uses, with one request policy in one place.
//!
//! Every call to the API server goes through [`RequestPolicy`], a tower layer
//! on the client, instead of a timeout wrapped around each call:
//! - **A deadline on every request.** The response head must arrive within
//!   `--request-timeout`; for anything but a watch, so must the whole body. A
//!   peer that accepts a request and never answers becomes a timeout error,
//!   never a stuck task. A watch's body is a stream that may rightly idle; the
//!   watcher ends it after the server-side `timeoutSeconds` plus a small margin
//!   and starts a new one (see [`WATCH_TIMEOUT`]).
//! - **No retries underneath regcred's own.** The client library's retry of
//!   429/503/504 is turned off: it retried within milliseconds, many times,
//!   outside `--max-requests-per-second`. Failures go up to regcred's capped,
//!   jittered backoff.
//! - **`Retry-After` is honoured.** When the API server answers 429 or 503 with
//!   `Retry-After`, every request through this client waits until then: the
//!   server's overload protection (API Priority and Fairness) limits the whole
//!   client, not one URL.
//! - **regcred says who it is.** Every request carries `User-Agent:
//!   regcred/VERSION` ([`crate::http::USER_AGENT`], as requests to Google
//!   do), so the API server's audit log names it.
//! - **A client-side bound and rate limit where asked for.** Fan-out's
//!   writes pass a [`Throttle`] (`--max-concurrent-writes`,
//!   `--max-requests-per-second`), so a 10,000-namespace cluster is not hammered.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::{Request, Response, StatusCode};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

/// How long a watch may stay open, asked of the server as `timeoutSeconds`;
/// the watcher treats a stream silent for this plus 5 s as broken and
/// reconnects from where it was. Below kube's 295 s limit.
pub(crate) const WATCH_TIMEOUT: Duration = Duration::from_secs(290);

/// The longest `Retry-After` regcred waits for: a peer asking for more is
/// probably misconfigured, and the credential must not go stale meanwhile.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The field manager regcred's writes are recorded under (`managedFields`),
/// so `kubectl get -o yaml --show-managed-fields` says who wrote what.
pub(crate) const FIELD_MANAGER: &str = "regcred";

/// Parameters of a create made by regcred.
pub(crate) fn post_params() -> kube::api::PostParams {
    kube::api::PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

/// Parameters of a (merge) patch made by regcred.
pub(crate) fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

/// Why the Kubernetes client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot find Kubernetes credentials ({0}); in a cluster, run with a service account; elsewhere set KUBECONFIG or create ~/.kube/config")]
    Kubeconfig(String),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(String),
}

/// A request the API server did not answer within the deadline. Found in a
/// `kube::Error`'s source chain by [`missed_deadline`].
#[derive(Debug, thiserror::Error)]
#[error("no answer within {0:?}")]
pub(crate) struct DeadlineExceeded(pub Duration);

/// The client, and the namespace the kubeconfig (or the pod) names.
pub(crate) async fn connect(request_timeout: Duration) -> Result<(kube::Client, String), ClusterError> {
    let mut config = kube::Config::infer().await.map_err(|e| ClusterError::Kubeconfig(e.to_string()))?;
    config.connect_timeout = Some(request_timeout);
    config.write_timeout = Some(request_timeout);
    config.default_retry = false;
    config.headers.push((hyper::header::USER_AGENT, hyper::header::HeaderValue::from_static(crate::http::USER_AGENT)));
    let namespace = config.default_namespace.clone();
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| ClusterError::Client(e.to_string()))?;
    let client = builder.with_layer(&RequestPolicy::new(request_timeout)).build();
    Ok((client, namespace))
}

/// The deadline `err` (or one of its causes) reports missing, if any.
pub(crate) fn missed_deadline(err: &(dyn std::error::Error + 'static)) -> Option<Duration> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(DeadlineExceeded(timeout)) = e.downcast_ref::<DeadlineExceeded>() {
            return Some(*timeout);
        }
        cur = e.source();
    }
    None
}

/// The tower layer described in the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct RequestPolicy {
    timeout: Duration,
    /// No request leaves before this instant (set by `Retry-After`).
    not_before: Arc<Mutex<Option<Instant>>>,
}

impl RequestPolicy {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self { timeout, not_before: Arc::default() }
    }
}

impl<S> Layer<S> for RequestPolicy {
    type Service = PolicyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PolicyService { inner, policy: self.clone() }
    }
}

/// [`RequestPolicy`] applied to a service.
#[derive(Clone, Debug)]
pub(crate) struct PolicyService<S> {
    inner: S,
    policy: RequestPolicy,
}

impl<S, ReqBody, B> Service<Request<ReqBody>> for PolicyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: HttpBody + Unpin,
{
    type Response = Response<DeadlineBody<B>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let policy = self.policy.clone();
        let watch = is_watch(req.uri().query());
        // Nothing is sent until the future is polled, so waiting for
        // `Retry-After` before polling it delays the request itself.
        let call = self.inner.call(req);
        Box::pin(async move {
            let not_before = *policy.not_before.lock().expect("policy lock");
            if let Some(at) = not_before {
                tokio::time::sleep_until(at).await;
            }
            let deadline = after(policy.timeout);
            let response = match tokio::time::timeout_at(deadline, call).await {
                Ok(result) => result.map_err(Into::into)?,
                Err(_) => return Err(Box::new(DeadlineExceeded(policy.timeout)) as BoxError),
            };
            if let Some(wait) = retry_after(&response) {
                let until = after(wait);
                let mut not_before = policy.not_before.lock().expect("policy lock");
                *not_before = Some(not_before.map_or(until, |t| t.max(until)));
            }
            let body_deadline = (!watch).then_some((deadline, policy.timeout));
            Ok(response.map(|body| DeadlineBody::new(body, body_deadline)))
        })
    }
}

/// `d` from now, or as far ahead as the clock goes.
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// `watch=true` (or `1`) in a query string.
fn is_watch(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"))
}

/// The delay a 429 or 503 answer asks for (seconds form), capped.
fn retry_after<B>(response: &Response<B>) -> Option<Duration> {
    if !matches!(response.status(), StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) {
        return None;
    }
    crate::http::retry_after(response.headers()).map(|d| d.min(MAX_RETRY_AFTER))
}

/// A response body that fails with [`DeadlineExceeded`] when it is not
/// complete by the request's deadline (no deadline for watch streams).
pub(crate) struct DeadlineBody<B> {
    inner: B,
    deadline: Option<(Pin<Box<tokio::time::Sleep>>, Duration)>,
}

impl<B> DeadlineBody<B> {
    fn new(inner: B, deadline: Option<(Instant, Duration)>) -> Self {
        let deadline = deadline.map(|(at, timeout)| (Box::pin(tokio::time::sleep_until(at)), timeout));
        Self { inner, deadline }
    }
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        if let Some((sleep, timeout)) = self.deadline.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                let timeout = *timeout;
                return Poll::Ready(Some(Err(Box::new(DeadlineExceeded(timeout)))));
            }
        }
        Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A bound on requests in flight and a rate limit (fan-out's
/// `--max-concurrent-writes` and `--max-requests-per-second`).
pub(crate) struct Throttle {
    permits: Semaphore,
    limiter: RateLimiter,
}

impl Throttle {
    pub(crate) fn new(max_in_flight: usize, per_second: u32) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Throttle {
            permits: Semaphore::new(max_in_flight),
            limiter: RateLimiter::new(per_second, u32::try_from(max_in_flight).unwrap_or(u32::MAX)),
        }
    }

    /// Waits until one more request may go; it is in flight while the
    /// permit lives.
    pub(crate) async fn enter(&self) -> SemaphorePermit<'_> {
        let permit = self.permits.acquire().await.expect("semaphore never closed");
        self.limiter.acquire().await;
        permit
    }
}

/// Spaces requests at most `per_second` apart on average, allowing a burst.
struct RateLimiter {
    interval: Duration,
    burst: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    fn new(per_second: u32, burst: u32) -> Self {
        let interval = if per_second == 0 { Duration::ZERO } else { Duration::from_secs(1) / per_second };
        RateLimiter { interval, burst: interval.saturating_mul(burst), next: Mutex::new(Instant::now()) }
    }

    async fn acquire(&self) {
        if self.interval.is_zero() {
            return;
        }
        let at = {
            let mut next = self.next.lock().expect("lock");
            let now = Instant::now();
            let earliest = now.checked_sub(self.burst).unwrap_or(now);
            let at = (*next).max(earliest);
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_spaces_requests_after_a_burst() {
        let limiter = RateLimiter::new(10, 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        let start = Instant::now();
        for _ in 0..7 {
            limiter.acquire().await;
        }
        // Two come from the burst allowance; the other five are 100 ms apart.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(400) && took <= Duration::from_millis(500), "{took:?}");
    }

    #[test]
    fn watches_are_told_apart_by_their_query() {
        assert!(is_watch(Some("fieldSelector=metadata.name%3Dx&watch=true&timeoutSeconds=290")));
        assert!(is_watch(Some("watch=1")));
        assert!(!is_watch(Some("limit=500")));
        assert!(!is_watch(Some("watchfoo=true")));
        assert!(!is_watch(None));
    }

    #[test]
    fn retry_after_counts_only_on_overload_answers_and_is_capped() {
        let resp = |code: u16, ra: &str| {
            Response::builder().status(code).header(hyper::header::RETRY_AFTER, ra).body(()).unwrap()
        };
        assert_eq!(retry_after(&resp(429, "3")), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&resp(503, "3600")), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&resp(500, "3")), None);
        assert_eq!(retry_after(&resp(429, "soon")), None);
    }

    #[test]
    fn deadline_is_found_in_a_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] DeadlineExceeded);
        assert_eq!(missed_deadline(&Outer(DeadlineExceeded(Duration::from_secs(1)))), Some(Duration::from_secs(1)));
        assert_eq!(missed_deadline(&std::io::Error::other("x")), None);
    }
}
