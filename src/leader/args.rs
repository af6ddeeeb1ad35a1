//! The leader-election flags of `run`, and the [`Settings`] they make.

use std::time::Duration;

use super::Settings;
use crate::fanout::NamespaceName;
use crate::registry::is_dns_subdomain;
use crate::schedule::duration_in;

/// Leader election: several replicas, one writer.
#[derive(Debug, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Leader election")]
pub(crate) struct Args {
    /// Run as one of several replicas: only the holder of a Lease mints and
    /// writes; the others stand by and take over when it stops renewing.
    #[arg(long, env = "REGCRED_LEADER_ELECT")]
    leader_elect: bool,

    /// The Lease's name.
    #[arg(long, env = "REGCRED_LEADER_ELECT_LEASE_NAME", value_name = "NAME", default_value = "regcred", value_parser = parse_lease_name)]
    leader_elect_lease_name: String,

    /// The Lease's namespace [default: the pod's own namespace, or the
    /// kubeconfig's].
    #[arg(long, env = "REGCRED_LEADER_ELECT_LEASE_NAMESPACE", value_name = "NAMESPACE")]
    leader_elect_lease_namespace: Option<NamespaceName>,

    /// How long a standby waits, after it last saw the Lease renewed, before
    /// it takes the Lease (whole seconds, 2s to 10m).
    #[arg(long, env = "REGCRED_LEADER_ELECT_LEASE_DURATION", value_name = "DURATION", default_value = "15s", value_parser = parse_lease_duration)]
    leader_elect_lease_duration: Duration,

    /// How long the leader keeps writing without a successful renewal; it
    /// stops before a standby can take over. Shorter than the lease duration.
    #[arg(long, env = "REGCRED_LEADER_ELECT_RENEW_DEADLINE", value_name = "DURATION", default_value = "10s", value_parser = parse_period)]
    leader_elect_renew_deadline: Duration,

    /// How often the leader renews and a standby looks at the Lease.
    /// Shorter than the renew deadline.
    #[arg(long, env = "REGCRED_LEADER_ELECT_RETRY_PERIOD", value_name = "DURATION", default_value = "2s", value_parser = parse_period)]
    leader_elect_retry_period: Duration,
}

/// Timings that cannot make one writer: the leader must give up before a
/// standby may take over, and get more than one try at renewing first.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaderTimingError {
    #[error("--leader-elect-renew-deadline ({renew:?}) must be shorter than --leader-elect-lease-duration ({lease:?}): the leader stops writing at the renew deadline, and a standby takes over at the lease duration")]
    RenewNotBeforeExpiry { renew: Duration, lease: Duration },
    #[error("--leader-elect-retry-period ({retry:?}) must be at most half the --leader-elect-renew-deadline ({renew:?}), so the leader gets a second try at renewing before it stops")]
    RetryTooLong { retry: Duration, renew: Duration },
}

impl Args {
    /// The settings, when `--leader-elect` asks for an election.
    pub(crate) fn into_settings(self) -> Result<Option<Settings>, LeaderTimingError> {
        if !self.leader_elect {
            return Ok(None);
        }
        let (lease, renew, retry) =
            (self.leader_elect_lease_duration, self.leader_elect_renew_deadline, self.leader_elect_retry_period);
        if renew >= lease {
            return Err(LeaderTimingError::RenewNotBeforeExpiry { renew, lease });
        }
        if retry.saturating_mul(2) > renew {
            return Err(LeaderTimingError::RetryTooLong { retry, renew });
        }
        Ok(Some(Settings {
            lease_name: self.leader_elect_lease_name,
            namespace: self.leader_elect_lease_namespace.map(|n| n.as_str().to_string()),
            lease_duration: lease,
            renew_deadline: renew,
            retry_period: retry,
        }))
    }
}

fn parse_lease_name(s: &str) -> Result<String, String> {
    if is_dns_subdomain(s) && !s.is_empty() {
        Ok(s.to_string())
    } else {
        Err("expected a lower-case DNS name (a Lease's name), for example regcred".into())
    }
}

/// Whole seconds: a Lease records its duration in seconds.
fn parse_lease_duration(s: &str) -> Result<Duration, String> {
    let expected = "expected whole seconds from 2s to 10m (a Lease records its duration in seconds)";
    let d = duration_in(s, Duration::from_secs(2)..=Duration::from_secs(600), expected)?;
    if d.subsec_nanos() != 0 {
        return Err(expected.into());
    }
    Ok(d)
}

fn parse_period(s: &str) -> Result<Duration, String> {
    duration_in(s, Duration::from_millis(100)..=Duration::from_secs(600), "expected 100ms to 10m")
}
