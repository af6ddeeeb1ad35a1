//! Refresh arithmetic: when to mint next and how long to back off.
//!
//! Pure functions of `now`, the token's expiry and a random fraction, so the
//! schedule is unit-tested without sleeping.

use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime};

/// When to refresh: the `--refresh-before`, `--jitter` and
/// `--resync-interval` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub refresh_before: Duration,
    pub jitter: Duration,
    pub resync_interval: Duration,
}

/// The timing flags.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub(crate) struct Args {
    /// Mint the next token this long before the current one expires.
    #[arg(long, env = "REGCRED_REFRESH_BEFORE", value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    refresh_before: Duration,

    /// Refresh up to this much earlier, at random, so that replicas do not mint together.
    #[arg(long, env = "REGCRED_JITTER", value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    jitter: Duration,

    /// Rewrite the current credential at least this often (at least 1s), so that a deleted
    /// or edited Secret or file comes back (and keys that never expire are re-checked).
    #[arg(long, env = "REGCRED_RESYNC_INTERVAL", value_name = "DURATION", default_value = "10m", value_parser = parse_resync_interval)]
    resync_interval: Duration,
}

impl Args {
    /// The timing the flags ask for.
    pub(crate) fn timing(&self) -> Timing {
        Timing { refresh_before: self.refresh_before, jitter: self.jitter, resync_interval: self.resync_interval }
    }
}

fn parse_resync_interval(s: &str) -> Result<Duration, String> {
    duration_in(s, Duration::from_secs(1)..=Duration::MAX, "expected at least 1s")
}

/// The shortest wait between two refreshes, so a misconfigured schedule or a
/// token that is about to expire cannot turn into a busy loop.
pub(crate) const MIN_DELAY: Duration = Duration::from_secs(1);

/// First retry delay after a failure.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(1);

/// Longest retry delay. Short enough that a token with a 15-minute refresh
/// margin gets many attempts before it expires.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// When the credential expiring at `expires_at` should be replaced.
///
/// Normally `refresh_before` (plus up to `jitter`, scaled by `random` in
/// [0, 1)) ahead of expiry. If that margin is more than half the token's
/// remaining life (short-lived tokens, or a large `--refresh-before`), the
/// token is replaced at half-life instead, so each token is used for a while.
pub(crate) fn refresh_at(now: SystemTime, expires_at: SystemTime, timing: &Timing, random: f64) -> SystemTime {
    let remaining = expires_at.duration_since(now).unwrap_or_default();
    let lead = timing.refresh_before.saturating_add(timing.jitter.mul_f64(random.clamp(0.0, 1.0)));
    let lead = lead.min(remaining / 2);
    expires_at - lead
}

/// How long to sleep before the next pass of the loop: until the refresh
/// point, but no longer than the resync interval (so a deleted Secret comes
/// back), and never less than [`MIN_DELAY`].
pub(crate) fn next_wake(now: SystemTime, refresh_at: Option<SystemTime>, resync_interval: Duration) -> Duration {
    let until_refresh = match refresh_at {
        Some(at) => at.duration_since(now).unwrap_or_default(),
        None => resync_interval,
    };
    until_refresh.min(resync_interval).max(MIN_DELAY)
}

/// Capped exponential backoff with full jitter: a random delay in
/// [0, min(cap, base * 2^attempt)], at least `retry_after` when the peer
/// asked for one (429 / 503 with Retry-After).
pub(crate) fn backoff(attempt: u32, random: f64, retry_after: Option<Duration>) -> Duration {
    let ceiling = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(attempt.min(16))).min(BACKOFF_CAP);
    let delay = ceiling.mul_f64(random.clamp(0.0, 1.0)).max(Duration::from_millis(100));
    match retry_after {
        Some(ra) => delay.max(ra.min(BACKOFF_CAP * 5)),
        None => delay,
    }
}

/// A duration flag's value (`90s`, `15m`, `1h`), for clap's value parsers;
/// the message says what a duration looks like.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use a duration such as 90s, 15m or 1h)"))
}

/// A duration flag's value within `range`; `expected` explains the range.
pub(crate) fn duration_in(s: &str, range: RangeInclusive<Duration>, expected: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if range.contains(&d) {
        Ok(d)
    } else {
        Err(expected.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::from_secs(1_800_000_000);

    fn timing(before: u64, jitter: u64) -> Timing {
        Timing {
            refresh_before: Duration::from_secs(before),
            jitter: Duration::from_secs(jitter),
            resync_interval: Duration::from_secs(600),
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(secs)
    }

    #[test]
    fn refreshes_refresh_before_ahead_of_expiry() {
        let t = timing(900, 60);
        assert_eq!(refresh_at(at(0), at(3600), &t, 0.0), at(2700));
        assert_eq!(refresh_at(at(0), at(3600), &t, 0.5), at(2670));
        // Jitter only ever moves the refresh earlier.
        assert!(refresh_at(at(0), at(3600), &t, 0.999) > at(2640));
    }

    #[test]
    fn short_lived_tokens_are_replaced_at_half_life() {
        assert_eq!(refresh_at(at(0), at(4), &timing(900, 0), 0.0), at(2));
        assert_eq!(refresh_at(at(10), at(4), &timing(900, 0), 0.0), at(4), "already expired: refresh now");
    }

    #[test]
    fn wake_is_bounded_by_resync_and_min_delay() {
        let resync = Duration::from_secs(600);
        assert_eq!(next_wake(at(0), Some(at(2700)), resync), resync);
        assert_eq!(next_wake(at(0), Some(at(30)), resync), Duration::from_secs(30));
        assert_eq!(next_wake(at(100), Some(at(30)), resync), MIN_DELAY);
        assert_eq!(next_wake(at(0), None, resync), resync);
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        assert_eq!(backoff(0, 1.0, None), Duration::from_secs(1));
        assert_eq!(backoff(3, 1.0, None), Duration::from_secs(8));
        assert_eq!(backoff(30, 1.0, None), BACKOFF_CAP);
        assert_eq!(backoff(3, 0.5, None), Duration::from_secs(4));
        assert_eq!(backoff(0, 0.0, None), Duration::from_millis(100));
        assert_eq!(backoff(0, 0.1, Some(Duration::from_secs(7))), Duration::from_secs(7));
    }
}
