//! `POST /token`: Google's OAuth 2.0 token endpoint.
//!
//! Grants:
//! * `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523): the assertion
//!   must be an RS256 JWT signed by the kit's service-account key, with
//!   `iss` = its `client_email`, `aud` = the kit's token URI, `iat`/`exp` present,
//!   `exp - iat` <= 1 h, not expired and not issued in the future (Google allows
//!   a little skew), and a `scope` (access token) or `target_audience` (ID token).
//!   A `sub` other than the account itself is domain-wide delegation, which the
//!   kit's account is not authorized for.
//! * `refresh_token`: the `authorized_user` credentials from
//!   [`Google::authorized_user_json`](super::Google::authorized_user_json).
//!
//! Errors are Google's `{"error": ..., "error_description": ...}` with the
//! descriptions Google is known to send.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::jwt::{self, JwtError};
use super::{json_body, oauth_error, secs_until, Shared};

/// Clock skew Google tolerates on `iat`/`exp`.
const SKEW: u64 = 300;
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TIMEFRAME: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";

/// Parses a token-endpoint body: form-encoded, or JSON (Google accepts both).
pub(crate) fn params(headers: &HeaderMap, body: &[u8]) -> Option<Vec<(String, String)>> {
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/json") {
        let v: Value = serde_json::from_slice(body).ok()?;
        Some(
            v.as_object()?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                .collect(),
        )
    } else {
        serde_urlencoded::from_bytes(body).ok()
    }
}

pub(crate) fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

pub(crate) fn token(shared: &Shared, method: &Method, headers: &HeaderMap, body: &[u8]) -> Response {
    if method != Method::POST {
        return super::google_api_error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed");
    }
    let Some(p) = params(headers, body) else {
        return oauth_error(400, "invalid_request", "Invalid request body.");
    };
    match get(&p, "grant_type").unwrap_or("") {
        JWT_BEARER => jwt_bearer(shared, &p),
        "refresh_token" => refresh(shared, &p),
        other => oauth_error(400, "unsupported_grant_type", &format!("Invalid grant_type: {other}")),
    }
}

fn jwt_bearer(shared: &Shared, p: &[(String, String)]) -> Response {
    let Some(assertion) = get(p, "assertion") else {
        return oauth_error(400, "invalid_request", "Missing required parameter: assertion");
    };
    // Identify the account first (unsigned), as Google must, to find its keys.
    let claims = match jwt::decode_unverified(assertion) {
        Ok((_, c)) => c,
        Err(_) => return oauth_error(400, "invalid_grant", "Invalid JWT Signature."),
    };
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if iss != shared.email {
        return oauth_error(400, "invalid_grant", "Invalid grant: account not found");
    }
    let (header, claims) = match jwt::verify(&shared.public, assertion) {
        Ok(v) => v,
        Err(JwtError::Format | JwtError::Algorithm | JwtError::Signature) => {
            return oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        }
    };
    // A kid naming another (or a deleted) key of the account fails like a bad signature.
    if let Some(kid) = header.get("kid").and_then(Value::as_str) {
        if kid != shared.key_id {
            return oauth_error(400, "invalid_grant", "Invalid JWT Signature.");
        }
    }
    let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
    if aud != shared.token_uri() {
        return oauth_error(400, "invalid_grant", "Invalid JWT: Failed audience check.");
    }
    let (Some(iat), Some(exp)) = (claims.get("iat").and_then(Value::as_u64), claims.get("exp").and_then(Value::as_u64))
    else {
        return oauth_error(400, "invalid_grant", TIMEFRAME);
    };
    let now = now_secs();
    if exp <= iat || exp - iat > 3600 || exp + SKEW < now || iat > now + SKEW {
        return oauth_error(400, "invalid_grant", TIMEFRAME);
    }
    if let Some(sub) = claims.get("sub").and_then(Value::as_str) {
        if sub != shared.email {
            return oauth_error(
                401,
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
            );
        }
    }
    let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
    let target_audience = claims.get("target_audience").and_then(Value::as_str).unwrap_or("");
    if !target_audience.is_empty() {
        let id_token = id_token(shared, target_audience);
        return json_body(StatusCode::OK, &json!({ "id_token": id_token }));
    }
    if scope.trim().is_empty() {
        return oauth_error(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.");
    }
    let tok = shared.issue("jwt-bearer", &shared.email, scope, shared.lifetime());
    json_body(
        StatusCode::OK,
        &json!({
            "access_token": tok.access_token,
            "expires_in": secs_until(tok.expires_at),
            "token_type": "Bearer",
        }),
    )
}

/// A Google-signed ID token for the service account.
pub(crate) fn id_token(shared: &Shared, audience: &str) -> String {
    let now = now_secs();
    let lifetime = shared.lifetime().min(Duration::from_secs(3600)).as_secs();
    super::jwt::sign(
        &shared.key,
        Some(&shared.key_id),
        &json!({
            "aud": audience,
            "azp": shared.client_id,
            "email": shared.email,
            "email_verified": true,
            "exp": now + lifetime,
            "iat": now,
            "iss": "https://accounts.google.com",
            "sub": shared.client_id,
        }),
    )
}

fn refresh(shared: &Shared, p: &[(String, String)]) -> Response {
    let Some(client_id) = get(p, "client_id") else {
        return oauth_error(400, "invalid_request", "Could not determine client ID from request.");
    };
    if client_id != shared.oauth_client_id {
        return oauth_error(401, "invalid_client", "The OAuth client was not found.");
    }
    if get(p, "client_secret") != Some(shared.oauth_client_secret.as_str()) {
        return oauth_error(401, "invalid_client", "Unauthorized");
    }
    let Some(rt) = get(p, "refresh_token") else {
        return oauth_error(400, "invalid_request", "Missing required parameter: refresh_token");
    };
    if rt != shared.refresh_token {
        return oauth_error(400, "invalid_grant", "Bad Request");
    }
    let scope = "https://www.googleapis.com/auth/cloud-platform openid https://www.googleapis.com/auth/userinfo.email";
    let tok = shared.issue("refresh-token", &shared.user_email, scope, shared.lifetime());
    json_body(
        StatusCode::OK,
        &json!({
            "access_token": tok.access_token,
            "expires_in": secs_until(tok.expires_at),
            "scope": scope,
            "token_type": "Bearer",
        }),
    )
}
