//! The registry's token exchange: `POST https://NAME.azurecr.io/oauth2/exchange`
//! turns an Azure AD access token into an ACR refresh token, which Docker
//! clients present as the password of the user
//! `00000000-0000-0000-0000-000000000000`.
//!
//! The answer does not say how long the refresh token lives; the token is
//! a JWT and its `exp` claim does (3 hours today). regcred reads the claim
//! without verifying the signature (only the registry can, and the
//! registry is who sent it) and refuses a token without one: refreshing
//! on a guessed schedule would hand out expired passwords.

use std::time::SystemTime;

use base64::Engine as _;
use serde::Deserialize;

use super::azure_error::refusal;
use super::TenantId;
use super::ACR_USERNAME;
use crate::credential::Credential;
use crate::http::{form, HttpClient, Response};
use crate::registry::AcrRegistry;
use crate::secret::Secret;
use crate::source::SourceError;

/// The step named in errors about the exchange.
pub(crate) const EXCHANGE_STEP: &str = "ACR exchange";

#[derive(Deserialize)]
struct ExchangeResponse {
    refresh_token: Option<Secret<String>>,
}

/// Exchanges `aad_token` at `url` (the registry's `/oauth2/exchange`) for a
/// refresh token of `host`.
pub(crate) async fn exchange(
    http: &HttpClient,
    url: &str,
    host: &AcrRegistry,
    tenant: Option<&TenantId>,
    aad_token: &Secret<String>,
) -> Result<Credential, SourceError> {
    let mut pairs = vec![("grant_type", "access_token"), ("service", host.as_str())];
    if let Some(t) = tenant {
        pairs.push(("tenant", t.as_str()));
    }
    pairs.push(("access_token", aad_token.expose()));
    let resp = http
        .post_form(url, form(&pairs), None)
        .await
        .map_err(|source| SourceError::Http { step: EXCHANGE_STEP, source })?;
    credential(url, resp, SystemTime::now())
}

/// The credential of an exchange answer received at `now`.
fn credential(url: &str, resp: Response, now: SystemTime) -> Result<Credential, SourceError> {
    if !resp.status.is_success() {
        return Err(refusal(EXCHANGE_STEP, url, &resp));
    }
    let bad = |problem: &str| SourceError::BadResponse {
        step: EXCHANGE_STEP,
        url: url.to_string(),
        problem: problem.to_string(),
    };
    let parsed: ExchangeResponse = serde_json::from_slice(&resp.body).map_err(|_| bad("not the expected JSON"))?;
    let token = parsed.refresh_token.filter(|t| !t.expose().is_empty()).ok_or_else(|| bad("no refresh_token"))?;
    let exp = expiry(token.expose()).map_err(bad)?;
    // ECR's rule too: clamped to 12 h from now (a shorter assumed life only
    // refreshes sooner), None once expired.
    Credential::expiring_at(ACR_USERNAME, token.expose().clone(), exp, now)
        .ok_or_else(|| bad("the refresh token is already expired (its exp claim is in the past)"))
}

/// The `exp` claim of a JWT (seconds since the epoch), unverified. The
/// error says what is wrong without quoting the token.
fn expiry(token: &str) -> Result<f64, &'static str> {
    const NOT_JWT: &str = "the refresh token is not a JWT (three base64url parts), so its expiry is unknown";
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(NOT_JWT);
    };
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bytes = engine.decode(payload.trim_end_matches('=')).map_err(|_| NOT_JWT)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| NOT_JWT)?;
    const NO_EXP: &str = "the refresh token has no numeric exp claim, so its expiry is unknown";
    claims["exp"].as_f64().filter(|f| f.is_finite() && *f >= 0.0).ok_or(NO_EXP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::MAX_TOKEN_LIFETIME;
    use hyper::StatusCode;
    use std::time::{Duration, UNIX_EPOCH};

    fn jwt(claims: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", e.encode(r#"{"alg":"RS256","typ":"JWT"}"#), e.encode(claims))
    }

    fn resp(status: u16, body: String) -> Response {
        Response { status: StatusCode::from_u16(status).unwrap(), headers: Default::default(), body: body.into() }
    }

    fn secs(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn the_refresh_tokens_exp_claim_is_the_credentials_expiry() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let token = jwt(r#"{"exp":1800010800,"aud":"r.azurecr.io"}"#);
        let cred = credential("u", resp(200, format!(r#"{{"refresh_token":"{token}"}}"#)), now).unwrap();
        assert_eq!(cred.username, "00000000-0000-0000-0000-000000000000");
        assert_eq!(cred.password.expose(), &token);
        assert_eq!(secs(cred.expires_at.unwrap()), 1_800_010_800);
        assert_eq!(format!("{cred:?}").matches(&token).count(), 0, "the token is redacted");
    }

    #[test]
    fn absurd_expiries_are_clamped_to_twelve_hours() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for exp in ["1900000000", "18446744073709551615", "1e300", "1.9e9"] {
            let token = jwt(&format!(r#"{{"exp":{exp}}}"#));
            let cred = credential("u", resp(200, format!(r#"{{"refresh_token":"{token}"}}"#)), now).unwrap();
            let left = cred.expires_at.unwrap().duration_since(now).unwrap();
            assert_eq!(left, MAX_TOKEN_LIFETIME, "{exp}");
        }
    }

    #[test]
    fn tokens_without_a_usable_expiry_are_refused_without_quoting_them() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for (token, problem) in [
            ("opaque-refresh-token".to_string(), "not a JWT"),
            ("a.b".to_string(), "not a JWT"),
            ("a.!!!.c".to_string(), "not a JWT"),
            (jwt(r#"{"aud":"r"}"#), "no numeric exp claim"),
            (jwt(r#"{"exp":"1800010800"}"#), "no numeric exp claim"),
            (jwt(r#"{"exp":-5}"#), "no numeric exp claim"),
            (jwt(r#"{"exp":1799999999}"#), "already expired"),
        ] {
            let err =
                credential("http://r/oauth2/exchange", resp(200, format!(r#"{{"refresh_token":"{token}"}}"#)), now)
                    .unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, SourceError::BadResponse { .. }), "{token}: {text}");
            assert!(
                text.starts_with("ACR exchange: http://r/oauth2/exchange answered with an unusable token response"),
                "{text}"
            );
            assert!(text.contains(problem), "{token}: {text}");
            assert!(!text.contains(&token), "{text}");
        }
        for body in ["{", r#"{"refresh_token":""}"#, r#"{"access_token":"x"}"#] {
            let err = credential("u", resp(200, body.into()), now).unwrap_err();
            assert!(matches!(err, SourceError::BadResponse { .. }) && err.is_retryable(), "{body}: {err}");
        }
    }

    #[test]
    fn refusals_carry_the_registrys_text_and_retry_after() {
        let now = SystemTime::now();
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"the access token is invalid or expired"}]}"#;
        let err = credential("http://r/oauth2/exchange", resp(401, body.into()), now).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ACR exchange: http://r/oauth2/exchange answered 401: UNAUTHORIZED: the access token is invalid or expired"
        );
        assert!(!err.is_retryable());
        let mut throttled = resp(429, "{}".into());
        throttled.headers.insert(hyper::header::RETRY_AFTER, "17".parse().unwrap());
        let err = credential("u", throttled, now).unwrap_err();
        assert!(err.is_retryable());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(17)));
    }
}
