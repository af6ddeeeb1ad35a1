//! Fault injection shared by every emulated peer.
//!
//! Real peers fail in a handful of distinct ways, and a client must survive each
//! of them: an error status (with or without `Retry-After`), a request that is
//! accepted but never answered, a slow answer, a garbled body, and a connection
//! that is cut before any response. A test arms a [`Fault`] for the next N
//! matching requests; the shared HTTP front end ([`crate::server`]) consults
//! [`Faults`] before the peer's own handler runs, so a faulted request never
//! touches the emulator's state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One way a request can go wrong.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Respond with this status. `body: None` means "the peer's proper error body
    /// for that code" (a Kubernetes `Status` object, a Google OAuth error, ...),
    /// so clients that parse error bodies see what the real peer would send.
    /// `retry_after` sets a `Retry-After: N` header (seconds).
    Status { code: u16, body: Option<String>, retry_after: Option<u64> },
    /// Accept the request and never answer, until the client gives up (or the
    /// emulator is dropped).
    Hang,
    /// Answer normally, after this delay.
    Delay(Duration),
    /// `200 OK` with `Content-Type: application/json` and a body that is not JSON.
    Malformed,
    /// Close the connection without writing any response.
    Drop,
    /// Send `200 OK` and the headers, then nothing, ever: a watch whose
    /// connection died without a FIN, or a body that never arrives.
    Stall,
}

#[derive(Debug)]
struct Rule {
    method: Option<String>,
    path_prefix: String,
    /// A `key=value` pair the query string must contain (e.g. `watch=true`).
    query: Option<String>,
    fault: Fault,
    remaining: usize,
}

#[derive(Debug, Default)]
struct Inner {
    rules: Vec<Rule>,
    latency: Duration,
}

/// The armed faults of one emulator. Cheap to clone; clones share state.
#[derive(Clone, Default, Debug)]
pub struct Faults {
    inner: Arc<Mutex<Inner>>,
}

impl Faults {
    /// The next `times` requests whose method matches (`None` = any method,
    /// compared case-insensitively) and whose path starts with `path_prefix` get
    /// `fault`. Rules are consulted in the order they were injected; a request
    /// consumes at most one rule.
    pub fn inject(&self, method: Option<&str>, path_prefix: &str, fault: Fault, times: usize) {
        self.push(method, path_prefix, None, fault, times);
    }

    /// Like [`Faults::inject`], for requests whose query string also holds
    /// the pair `query` (`"watch=true"` tells a watch from a list of the same path).
    pub fn inject_query(&self, method: Option<&str>, path_prefix: &str, query: &str, fault: Fault, times: usize) {
        self.push(method, path_prefix, Some(query), fault, times);
    }

    fn push(&self, method: Option<&str>, path_prefix: &str, query: Option<&str>, fault: Fault, times: usize) {
        if times == 0 {
            return;
        }
        self.lock().rules.push(Rule {
            method: method.map(str::to_ascii_uppercase),
            path_prefix: path_prefix.to_string(),
            query: query.map(str::to_string),
            fault,
            remaining: times,
        });
    }

    /// Removes every armed fault and resets the added latency to zero.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.rules.clear();
        inner.latency = Duration::ZERO;
    }

    /// Adds `d` to the handling time of every request (for benchmarks that want
    /// a realistic round trip rather than loopback speed).
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// How many faulted requests are still armed (summed over all rules).
    pub fn pending(&self) -> usize {
        self.lock().rules.iter().map(|r| r.remaining).sum()
    }

    pub(crate) fn latency(&self) -> Duration {
        self.lock().latency
    }

    /// Consumes one use of the first rule matching this request, if any.
    pub(crate) fn take(&self, method: &str, path: &str, query: &str) -> Option<Fault> {
        let mut inner = self.lock();
        let idx = inner.rules.iter().position(|r| {
            r.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
                && path.starts_with(&r.path_prefix)
                && r.query.as_deref().is_none_or(|q| query.split('&').any(|pair| pair == q))
        })?;
        let rule = &mut inner.rules[idx];
        rule.remaining -= 1;
        let fault = rule.fault.clone();
        if rule.remaining == 0 {
            inner.rules.remove(idx);
        }
        Some(fault)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_counted_and_matched_by_method_and_prefix() {
        let f = Faults::default();
        f.inject(Some("put"), "/api/v1/namespaces/default/secrets", Fault::Hang, 2);
        f.inject(None, "/token", Fault::Malformed, 1);
        assert_eq!(f.pending(), 3);
        assert!(f.take("GET", "/api/v1/namespaces/default/secrets/x", "").is_none());
        assert!(matches!(f.take("PUT", "/api/v1/namespaces/default/secrets/x", ""), Some(Fault::Hang)));
        assert!(matches!(f.take("POST", "/token", ""), Some(Fault::Malformed)));
        assert!(f.take("POST", "/token", "").is_none());
        assert!(f.take("PUT", "/api/v1/namespaces/default/secrets/x", "").is_some());
        assert!(f.take("PUT", "/api/v1/namespaces/default/secrets/x", "").is_none());
        assert_eq!(f.pending(), 0);
        f.inject_query(Some("GET"), "/api/v1/namespaces", "watch=true", Fault::Stall, 1);
        assert!(f.take("GET", "/api/v1/namespaces", "limit=500").is_none(), "a list is not a watch");
        assert!(f.take("GET", "/api/v1/namespaces", "watchx=true").is_none());
        assert!(matches!(f.take("GET", "/api/v1/namespaces", "timeoutSeconds=1&watch=true"), Some(Fault::Stall)));
        f.inject(None, "/", Fault::Drop, 5);
        f.set_latency(Duration::from_millis(5));
        f.clear();
        assert_eq!(f.pending(), 0);
        assert_eq!(f.latency(), Duration::ZERO);
    }
}
