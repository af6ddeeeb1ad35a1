//! Prometheus metrics, registered in one place.
//!
//! Labels are sink names and fixed failure reasons (`metric_label()` on the
//! error types), never anything taken from a credential.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(&'static str, String)>;
type TimeGauge = Gauge<f64, AtomicU64>;

/// Every metric regcred exports.
pub(crate) struct Metrics {
    registry: Registry,
    credential_expiry: Family<Labels, TimeGauge>,
    last_success: Family<Labels, TimeGauge>,
    refresh_attempts: Counter,
    refresh_failures: Family<Labels, Counter>,
    write_failures: Family<Labels, Counter>,
    mint_duration: Histogram,
    write_duration: Family<Labels, Histogram>,
    leader: Gauge,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0].into_iter()
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("regcred");
        let credential_expiry = Family::<Labels, TimeGauge>::default();
        registry.register(
            "credential_expiry_timestamp_seconds",
            "When the credential held by each sink expires (Unix time)",
            credential_expiry.clone(),
        );
        let last_success = Family::<Labels, TimeGauge>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "Last time each sink was confirmed to hold the current credential (Unix time)",
            last_success.clone(),
        );
        let refresh_attempts = Counter::default();
        registry.register("refresh_attempts", "Attempts to mint a credential", refresh_attempts.clone());
        let refresh_failures = Family::<Labels, Counter>::default();
        registry.register(
            "refresh_failures",
            "Failed attempts to mint a credential, by reason",
            refresh_failures.clone(),
        );
        let write_failures = Family::<Labels, Counter>::default();
        registry.register("write_failures", "Failed writes, by sink and reason", write_failures.clone());
        let mint_duration = Histogram::new(seconds_buckets());
        registry.register("token_mint_duration_seconds", "Time taken to mint a credential", mint_duration.clone());
        let write_duration = Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(seconds_buckets()));
        registry.register(
            "write_duration_seconds",
            "Time taken to write a sink, by kind (secret, file)",
            write_duration.clone(),
        );
        let leader = Gauge::default();
        leader.set(1);
        registry.register(
            "leader",
            "1 when this replica mints and writes (the only replica, or the leader under --leader-elect), 0 on a standby",
            leader.clone(),
        );
        let build_info = Family::<Labels, Gauge>::default();
        build_info.get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())]).set(1);
        registry.register("build_info", "regcred's version; always 1", build_info);
        Self {
            registry,
            credential_expiry,
            last_success,
            refresh_attempts,
            refresh_failures,
            write_failures,
            mint_duration,
            write_duration,
            leader,
        }
    }

    /// Records whether this replica writes.
    pub(crate) fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Records a mint attempt and its outcome.
    pub(crate) fn mint(&self, took: Duration, failure: Option<&'static str>) {
        self.refresh_attempts.inc();
        self.mint_duration.observe(took.as_secs_f64());
        if let Some(reason) = failure {
            self.refresh_failures.get_or_create(&vec![("reason", reason.to_string())]).inc();
        }
    }

    /// Records a successful write (or a confirmation that nothing changed).
    pub(crate) fn write_ok(&self, sink: &str, kind: &'static str, took: Duration, expires_at: Option<SystemTime>) {
        self.write_duration.get_or_create(&vec![("kind", kind.to_string())]).observe(took.as_secs_f64());
        let labels = vec![("sink", sink.to_string())];
        self.last_success.get_or_create(&labels).set(unix(SystemTime::now()));
        // A key that never expires is reported as +Inf, which alert rules
        // comparing with time() treat correctly.
        self.credential_expiry.get_or_create(&labels).set(expires_at.map_or(f64::INFINITY, unix));
    }

    /// Records a failed write.
    pub(crate) fn write_failed(&self, sink: &str, kind: &'static str, took: Duration, reason: &'static str) {
        self.write_duration.get_or_create(&vec![("kind", kind.to_string())]).observe(took.as_secs_f64());
        self.write_failures.get_or_create(&vec![("sink", sink.to_string()), ("reason", reason.to_string())]).inc();
    }

    /// The Prometheus text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}
