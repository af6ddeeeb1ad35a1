//! `POST /v1/token`: Google's Security Token Service (`sts.googleapis.com`),
//! the RFC 8693 token exchange used by workload identity federation.
//!
//! The kit stands in for one workload identity provider: the request's
//! `audience` must name it ([`Google::set_sts_audience`](super::Google::set_sts_audience);
//! a provider of the kit's project by default) and the `subject_token` must be
//! one the test declared acceptable
//! ([`Google::accept_subject_token`](super::Google::accept_subject_token)),
//! which replaces the provider's signature/issuer/attribute-condition checks,
//! or, once the test made the provider an OIDC provider
//! ([`Google::trust_oidc_issuer`](super::Google::trust_oidc_issuer)), a JWT
//! that passes the checks Google makes: signature by a key of the issuer's
//! JWKS, issuer, audience and expiry.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use rsa::{BoxedUint, PublicKey};
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
    let Some(audience) = get(&p, "audience").filter(|a| a.starts_with("//iam.googleapis.com/")) else {
        return oauth_error(400, "invalid_request", "Invalid value for \"audience\". This value should be the full resource name of the Identity Provider. See https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token for the list of possible formats.");
    };
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
    let (expected, accepted, oidc) = {
        let st = shared.state();
        (st.sts_audience.clone(), st.subject_tokens.contains(subject_token), st.oidc.clone())
    };
    if audience != expected {
        return oauth_error(400, "invalid_target", "The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.");
    }
    if !accepted {
        let Some(oidc) = oidc else {
            return oauth_error(400, "invalid_grant", "The given credential is rejected by the attribute condition.");
        };
        if let Err(description) = oidc.verify(subject_token) {
            return oauth_error(400, "invalid_grant", &description);
        }
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

/// Why a token's signature was not accepted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SignatureError {
    /// Not a compact JWS with JSON header and claims.
    Format,
    /// No key of the issuer's JWKS (with the header's `kid`, if any) verifies it.
    NoKey,
}

/// An OIDC workload identity provider: the issuer, its signing keys (by
/// `kid`) and the audiences it accepts.
#[derive(Clone)]
pub(crate) struct OidcProvider {
    issuer: String,
    keys: Vec<(Option<String>, PublicKey)>,
    allowed_audiences: Vec<String>,
}

impl OidcProvider {
    /// Takes the RSA keys of a JWKS document (`{"keys": [{"kty": "RSA", "n", "e", "kid"}]}`).
    pub(crate) fn new(issuer: &str, jwks: &Value, allowed_audiences: Vec<String>) -> Self {
        let keys = jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|k| k["kty"] == "RSA")
            .filter_map(|k| {
                let n = super::jwt::b64url_decode(k["n"].as_str()?)?;
                let e = super::jwt::b64url_decode(k["e"].as_str()?)?;
                let key =
                    PublicKey::new(BoxedUint::from_be_slice_vartime(&n), BoxedUint::from_be_slice_vartime(&e)).ok()?;
                Some((k["kid"].as_str().map(str::to_string), key))
            })
            .collect();
        Self { issuer: issuer.to_string(), keys, allowed_audiences }
    }

    /// The issuer this provider trusts.
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The token's claims if a key of the JWKS (the one its `kid` names,
    /// when it names one) signed it; the claims are not checked.
    pub(crate) fn verify_signature(&self, token: &str) -> Result<Value, SignatureError> {
        let (header, _) = super::jwt::decode_unverified(token).map_err(|_| SignatureError::Format)?;
        let kid = header.get("kid").and_then(Value::as_str);
        self.keys
            .iter()
            .filter(|(k, _)| kid.is_none() || k.as_deref() == kid)
            .find_map(|(_, key)| super::jwt::verify(key, token).ok())
            .map(|(_, claims)| claims)
            .ok_or(SignatureError::NoKey)
    }

    /// Google's checks of an OIDC subject token; the error is the
    /// `error_description` of an `invalid_grant` answer.
    pub(crate) fn verify(&self, token: &str) -> Result<Value, String> {
        let claims = self.verify_signature(token).map_err(|e| match e {
            SignatureError::Format => "Unable to parse the ID Token.".to_string(),
            SignatureError::NoKey => {
                "Invalid ID Token: the signature cannot be verified with the provider's keys.".to_string()
            }
        })?;
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if iss != self.issuer {
            return Err(format!("The issuer in ID Token {iss} does not match the expected issuer {}.", self.issuer));
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !audiences.iter().any(|a| self.allowed_audiences.iter().any(|allowed| allowed == a)) {
            return Err(format!(
                "The audience in ID Token [{}] does not match the expected audience {}.",
                audiences.join(", "),
                self.allowed_audiences.join(", ")
            ));
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        match claims.get("exp").and_then(Value::as_i64) {
            Some(exp) if exp > now => Ok(claims),
            _ => Err("The ID Token has expired.".to_string()),
        }
    }
}
