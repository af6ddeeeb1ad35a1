//! `POST /v1/token`: Google's Security Token Service (`sts.googleapis.com`),
//! the RFC 8693 token exchange used by workload identity federation.
//!
//! The kit stands in for one workload identity provider: the request's
//! `audience` must name it ([`Google::set_sts_audience`](super::Google::set_sts_audience);
//! a provider of the kit's project by default) and the `subject_token` must be
//! one the test declared acceptable
//! ([`Google::accept_subject_token`](super::Google::accept_subject_token)),
//! which replaces the provider's signature/issuer/attribute-condition checks.

use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::oauth::{get, params};
use super::{json_body, oauth_error, secs_until, Shared};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const SUBJECT_TOKEN_TYPES: &[&str] = &[
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:saml2",
    "urn:ietf:params:aws:token-type:aws4_request",
];

pub(crate) fn token(shared: &Shared, method: &Method, headers: &HeaderMap, body: &[u8]) -> Response {
    if method != Method::POST {
        return super::google_api_error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed");
    }
    let Some(p) = params(headers, body) else {
        return oauth_error(400, "invalid_request", "Invalid request body.");
    };
    if get(&p, "grant_type") != Some(TOKEN_EXCHANGE) {
        return oauth_error(
            400,
            "unsupported_grant_type",
            &format!("The provided grant_type is not supported. Supported grant types are [{TOKEN_EXCHANGE}]."),
        );
    }
    let Some(audience) = get(&p, "audience") else {
        return oauth_error(400, "invalid_request", "Invalid value for \"audience\". This value should be the full resource name of the Identity Provider. See https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token for the list of possible formats.");
    };
    if !audience.starts_with("//iam.googleapis.com/") {
        return oauth_error(400, "invalid_request", "Invalid value for \"audience\". This value should be the full resource name of the Identity Provider. See https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token for the list of possible formats.");
    }
    if get(&p, "requested_token_type") != Some(ACCESS_TOKEN_TYPE) {
        return oauth_error(
            400,
            "invalid_request",
            &format!("Invalid value for \"requested_token_type\". Expected: {ACCESS_TOKEN_TYPE}."),
        );
    }
    let Some(subject_token_type) = get(&p, "subject_token_type") else {
        return oauth_error(400, "invalid_request", "Missing required parameter: subject_token_type");
    };
    if !SUBJECT_TOKEN_TYPES.contains(&subject_token_type) {
        return oauth_error(
            400,
            "invalid_request",
            &format!(
                "Invalid value for \"subject_token_type\". Supported values are [{}].",
                SUBJECT_TOKEN_TYPES.join(", ")
            ),
        );
    }
    let Some(subject_token) = get(&p, "subject_token") else {
        return oauth_error(400, "invalid_request", "Missing required parameter: subject_token");
    };
    let scope = get(&p, "scope").unwrap_or("");
    let (expected, accepted) = {
        let st = shared.state();
        (st.sts_audience.clone(), st.subject_tokens.contains(subject_token))
    };
    if audience != expected {
        return oauth_error(400, "invalid_target", "The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.");
    }
    if !accepted {
        return oauth_error(400, "invalid_grant", "The given credential is rejected by the attribute condition.");
    }
    // The federated principal is named after the subject token's `sub` when it is a JWT.
    let subject = super::jwt::decode_unverified(subject_token)
        .ok()
        .and_then(|(_, c)| c.get("sub").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "external".to_string());
    let tok = shared.issue("sts", &subject, scope, shared.lifetime());
    json_body(
        StatusCode::OK,
        &json!({
            "access_token": tok.access_token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": secs_until(tok.expires_at),
        }),
    )
}
