//! What `/readyz` reports: whether every sink holds a usable credential.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// What is known about one sink.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SinkState {
    /// Last time the sink was confirmed to hold the current credential.
    pub last_success: Option<SystemTime>,
    /// When that credential expires (`None`: never).
    pub expires_at: Option<SystemTime>,
    /// When that credential was due to be replaced.
    pub refresh_at: Option<SystemTime>,
    /// The last write's error, cleared on success.
    pub last_error: Option<String>,
    /// Whether that error will not go away without someone changing
    /// something (forbidden, wrong Secret type, rejected).
    pub permanent: bool,
}

/// Whether this replica writes, under leader election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// It mints and writes: the only replica, or the leader.
    Writer,
    /// Another replica writes (or will): `holder` as last seen, believed to
    /// be writing until `fresh_until` by this replica's clock.
    Standby { holder: Option<String>, fresh_until: Option<Instant> },
}

/// Shared between the refresh loop (writer) and the admin server (reader).
#[derive(Debug)]
pub(crate) struct Health {
    sinks: Mutex<BTreeMap<String, SinkState>>,
    role: Mutex<Role>,
    /// How far past its refresh point a credential may be and still count as ready.
    grace: Duration,
    /// How old a confirmation may be (for keys that never expire).
    stale_after: Duration,
}

impl Health {
    /// Registers every sink up front, so that a sink never written keeps the
    /// process unready.
    pub(crate) fn new(sinks: impl IntoIterator<Item = String>, grace: Duration, stale_after: Duration) -> Self {
        let sinks = sinks.into_iter().map(|s| (s, SinkState::default())).collect();
        Self { sinks: Mutex::new(sinks), role: Mutex::new(Role::Writer), grace, stale_after }
    }

    pub(crate) fn succeeded(&self, sink: &str, expires_at: Option<SystemTime>, refresh_at: Option<SystemTime>) {
        let mut sinks = self.sinks.lock().expect("health lock");
        let s = sinks.entry(sink.to_string()).or_default();
        *s = SinkState {
            last_success: Some(SystemTime::now()),
            expires_at,
            refresh_at,
            last_error: None,
            permanent: false,
        };
    }

    /// Records a failed write (or, with `permanent: false`, a failed mint
    /// that leaves the sink's current credential in place).
    pub(crate) fn failed(&self, sink: &str, error: String, permanent: bool) {
        // /readyz names the sink before each reason: once is enough.
        let error = error.strip_prefix(&format!("{sink}: ")).map(str::to_string).unwrap_or(error);
        let mut sinks = self.sinks.lock().expect("health lock");
        let s = sinks.entry(sink.to_string()).or_default();
        s.last_error = Some(error);
        s.permanent = permanent;
    }

    /// Records whether this replica writes.
    pub(crate) fn set_role(&self, role: Role) {
        *self.role.lock().expect("health lock") = role;
    }

    /// `Ok` when every sink is fresh, else the reasons, one per sink. A
    /// standby has no sinks of its own to vouch for: it is ready while a
    /// leader holds the Lease and renews it, so a rollout is not held up by
    /// it, and unready when nobody writes.
    pub(crate) fn readiness(&self, now: SystemTime) -> Result<(), Vec<String>> {
        if let Role::Standby { holder, fresh_until } = &*self.role.lock().expect("health lock") {
            return standby_readiness(holder.as_deref(), *fresh_until, Instant::now()).map_err(|why| vec![why]);
        }
        let sinks = self.sinks.lock().expect("health lock");
        let problems: Vec<String> = sinks
            .iter()
            .filter_map(|(name, s)| unready(s, now, self.grace, self.stale_after).map(|why| format!("{name}: {why}")))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// A standby's readiness: a holder whose renewal it saw within a lease duration.
fn standby_readiness(holder: Option<&str>, fresh_until: Option<Instant>, now: Instant) -> Result<(), String> {
    match (holder, fresh_until) {
        (Some(_), Some(until)) if now < until => Ok(()),
        (Some(holder), _) => {
            Err(format!("standby: the leader {holder} has not renewed the Lease within its lease duration"))
        }
        (None, _) => Err("standby: no replica holds the Lease".into()),
    }
}

/// Why one sink is not ready, if it is not. Pure, for testing.
pub(crate) fn unready(s: &SinkState, now: SystemTime, grace: Duration, stale_after: Duration) -> Option<String> {
    let with_error = |msg: String| match &s.last_error {
        Some(e) => format!("{msg}; last error: {e}"),
        None => msg,
    };
    if let (true, Some(e)) = (s.permanent, &s.last_error) {
        // Whatever the sink held may be gone (a deleted Secret that cannot be
        // re-created) or unusable (a Secret of another type): do not wait for
        // the grace period to say so.
        return Some(format!("the last write failed and will not succeed until something changes: {e}"));
    }
    let Some(last) = s.last_success else {
        return Some(with_error("no credential written yet".into()));
    };
    if let Some(exp) = s.expires_at {
        if now >= exp {
            return Some(with_error("credential expired".into()));
        }
    }
    if let Some(at) = s.refresh_at {
        if at.checked_add(grace).is_some_and(|limit| now > limit) {
            return Some(with_error("credential overdue for refresh".into()));
        }
    }
    if now.duration_since(last).unwrap_or_default() > stale_after {
        return Some(with_error("not confirmed recently".into()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_standby_is_ready_only_while_a_leader_renews_the_lease() {
        let now = Instant::now();
        let later = now + Duration::from_secs(15);
        assert_eq!(standby_readiness(Some("a_1"), Some(later), now), Ok(()));
        let stale = standby_readiness(Some("a_1"), Some(later), later).unwrap_err();
        assert!(stale.contains("a_1 has not renewed"), "{stale}");
        assert!(standby_readiness(None, None, now).unwrap_err().contains("no replica holds the Lease"));
        // The role decides: a standby's readiness is the Lease's, whatever
        // its (never written) sinks say.
        let h = Health::new(["s".to_string()], Duration::from_secs(60), Duration::from_secs(60));
        assert!(h.readiness(SystemTime::now()).is_err(), "a writer whose sink was never written");
        h.set_role(Role::Standby { holder: Some("a_1".into()), fresh_until: Some(now + Duration::from_secs(1)) });
        assert_eq!(h.readiness(SystemTime::now()), Ok(()));
    }

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }
    const G: Duration = Duration::from_secs(60);
    const STALE: Duration = Duration::from_secs(1800);

    #[test]
    fn not_ready_before_the_first_write() {
        let h = Health::new(["secret a/b".to_string()], G, STALE);
        let err = h.readiness(SystemTime::now()).unwrap_err();
        assert_eq!(err, vec!["secret a/b: no credential written yet"]);
    }

    #[test]
    fn turns_unready_past_refresh_plus_grace_before_expiry() {
        const STALE: Duration = Duration::from_secs(7200);
        let s = SinkState {
            last_success: Some(t(0)),
            expires_at: Some(t(3600)),
            refresh_at: Some(t(2700)),
            last_error: None,
            permanent: false,
        };
        assert_eq!(unready(&s, t(2700), G, STALE), None);
        assert_eq!(unready(&s, t(2760), G, STALE), None);
        assert!(unready(&s, t(2761), G, STALE).unwrap().contains("overdue"));
        let s = SinkState { refresh_at: None, ..s };
        assert!(unready(&s, t(3600), G, STALE).unwrap().contains("expired"));
    }

    #[test]
    fn keys_that_never_expire_need_recent_confirmation() {
        let s = SinkState {
            last_success: Some(t(0)),
            expires_at: None,
            refresh_at: None,
            last_error: Some("boom".into()),
            permanent: false,
        };
        assert_eq!(unready(&s, t(1800), G, STALE), None);
        assert_eq!(unready(&s, t(1801), G, STALE).unwrap(), "not confirmed recently; last error: boom");
    }

    #[test]
    fn a_permanent_write_failure_is_unready_at_once_and_a_success_clears_it() {
        let h = Health::new(["secret a/b".to_string()], G, STALE);
        let now = SystemTime::now();
        h.succeeded("secret a/b", Some(now + Duration::from_secs(3600)), Some(now + Duration::from_secs(2700)));
        assert_eq!(h.readiness(now), Ok(()));
        h.failed("secret a/b", "server busy".into(), false);
        assert_eq!(h.readiness(now), Ok(()), "a transient failure keeps the grace rule");
        h.failed("secret a/b", "secret a/b: forbidden: cannot `create` secrets/b".into(), true);
        let err = h.readiness(now).unwrap_err();
        assert_eq!(
            err,
            ["secret a/b: the last write failed and will not succeed until something changes: forbidden: cannot `create` secrets/b"]
        );
        h.succeeded("secret a/b", Some(now + Duration::from_secs(3600)), Some(now + Duration::from_secs(2700)));
        assert_eq!(h.readiness(now), Ok(()));
    }
}
