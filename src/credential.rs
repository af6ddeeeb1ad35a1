//! The registry credential: what every source produces and the renderer
//! and sinks consume.

use std::time::{Duration, SystemTime};

use crate::secret::Secret;

/// The longest an access token lives: IAM Credentials' maximum lifetime
/// (metadata-server and OAuth tokens live 1 h).
pub(crate) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The Docker username registries expect with an OAuth access token.
pub(crate) const OAUTH_USERNAME: &str = "oauth2accesstoken";

/// A registry credential: a Docker username and password, and when it stops
/// working (`None` for keys that do not expire).
#[derive(Clone, Debug)]
pub(crate) struct Credential {
    pub username: String,
    pub password: Secret<String>,
    pub expires_at: Option<SystemTime>,
}

impl Credential {
    /// An OAuth access token that Google says is valid for `lifetime` from `now`.
    ///
    /// Lifetimes above [`MAX_TOKEN_LIFETIME`] (12 h, the most Google issues:
    /// IAM Credentials' ceiling; metadata-server and OAuth tokens live 1 h) are
    /// clamped to it. A shorter assumed life only makes regcred refresh sooner,
    /// never too late, and it keeps every later time computation (the refresh
    /// schedule, the RFC 3339 expiry annotation) far from the limits of the
    /// clock types, whatever a token endpoint answers.
    pub(crate) fn access_token(token: String, lifetime: Duration, now: SystemTime) -> Credential {
        if lifetime > MAX_TOKEN_LIFETIME {
            tracing::warn!(
                claimed_secs = lifetime.as_secs(),
                assumed_secs = MAX_TOKEN_LIFETIME.as_secs(),
                "the token endpoint claims a lifetime beyond what Google issues; refreshing as if it were 12h"
            );
        }
        let expires_at = now.checked_add(lifetime.min(MAX_TOKEN_LIFETIME));
        Credential { username: OAUTH_USERNAME.to_string(), password: Secret::new(token), expires_at }
    }

    /// A registry token the cloud says expires at `expires_at` (seconds
    /// since the epoch, as ECR answers it), for `username`.
    ///
    /// Clamped to [`MAX_TOKEN_LIFETIME`] from `now` (ECR's tokens live 12 h)
    /// for the reasons [`Credential::access_token`] gives; `None` when the
    /// token is already expired or the time is not a number.
    pub(crate) fn expiring_at(username: &str, token: String, expires_at: f64, now: SystemTime) -> Option<Credential> {
        let now_secs = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs_f64();
        let left = expires_at - now_secs;
        if !left.is_finite() || left <= 0.0 {
            return None;
        }
        let max = MAX_TOKEN_LIFETIME.as_secs_f64();
        if left > max {
            tracing::warn!(
                claimed_secs = left as u64,
                assumed_secs = MAX_TOKEN_LIFETIME.as_secs(),
                "the registry claims a token lifetime beyond 12h; refreshing as if it were 12h"
            );
        }
        let expires_at = now.checked_add(Duration::from_secs_f64(left.min(max)));
        Some(Credential { username: username.to_string(), password: Secret::new(token), expires_at })
    }
}
