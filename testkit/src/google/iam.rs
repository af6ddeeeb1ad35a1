//! IAM Service Account Credentials (`iamcredentials.googleapis.com`):
//! `POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken`.
//!
//! The caller authenticates with a Bearer access token the kit issued (and that
//! has not expired); it needs `iam.serviceAccounts.getAccessToken` on the target
//! (and on every delegate), granted with
//! [`Google::allow_impersonation`](super::Google::allow_impersonation).
//! `lifetime` may not exceed 3600 s. The new token's lifetime is the requested
//! one, capped by the kit's configured token lifetime so short-lived test
//! setups stay short-lived.

use std::time::Duration;

use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::{google_api_error, google_api_error_details, json_body, Shared};

const METHOD: &str = "google.iam.credentials.v1.IAMCredentials.GenerateAccessToken";

fn error_info(reason: &str, extra: Value) -> Value {
    let mut metadata = json!({"service": "iamcredentials.googleapis.com", "method": METHOD});
    if let (Some(m), Some(e)) = (metadata.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    json!([{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": if reason == "IAM_PERMISSION_DENIED" { "iam.googleapis.com" } else { "googleapis.com" },
        "metadata": metadata,
    }])
}

fn permission_denied(resource: &str) -> Response {
    google_api_error_details(
        403,
        "PERMISSION_DENIED",
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        Some(error_info(
            "IAM_PERMISSION_DENIED",
            json!({"permission": "iam.serviceAccounts.getAccessToken", "resource": resource}),
        )),
    )
}

/// Parses a protobuf JSON `Duration` ("3600s", "1.5s").
fn parse_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.strip_suffix('s')?.parse().ok()?;
    (secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

pub(crate) fn handle(shared: &Shared, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some(email) =
        path.strip_prefix("/v1/projects/-/serviceAccounts/").and_then(|r| r.strip_suffix(":generateAccessToken"))
    else {
        return google_api_error(404, "NOT_FOUND", "The requested URL was not found on this server.");
    };
    if method != Method::POST {
        return google_api_error(405, "METHOD_NOT_ALLOWED", "Method Not Allowed");
    }
    let email = email.replace("%40", "@");
    let bearer =
        headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let unauthenticated = |what: &str, reason: &str| {
        google_api_error_details(
            401,
            "UNAUTHENTICATED",
            &format!("Request {what}. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."),
            Some(error_info(reason, json!({}))),
        )
    };
    let caller = match bearer.map(|t| shared.valid_token(t.trim())) {
        None => return unauthenticated("is missing required authentication credential", "CREDENTIALS_MISSING"),
        Some(None) => {
            return unauthenticated("had invalid authentication credentials", "ACCESS_TOKEN_TYPE_UNSUPPORTED")
        }
        Some(Some(c)) => c,
    };
    let req: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return google_api_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unexpected token."),
    };
    for k in req.as_object().expect("object").keys() {
        if !matches!(k.as_str(), "scope" | "lifetime" | "delegates") {
            return google_api_error(
                400,
                "INVALID_ARGUMENT",
                &format!("Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."),
            );
        }
    }
    let scopes: Vec<String> = req
        .get("scope")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    if scopes.is_empty() {
        return google_api_error(400, "INVALID_ARGUMENT", "Scope required.");
    }
    let lifetime = match req.get("lifetime").and_then(Value::as_str) {
        None => Duration::from_secs(3600),
        Some(l) => match parse_duration(l) {
            Some(d) => d,
            None => {
                return google_api_error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration), Field 'lifetime', Illegal duration format; duration must end with 's': \"{l}\""),
                )
            }
        },
    };
    if lifetime > Duration::from_secs(3600) {
        return google_api_error(
            400,
            "INVALID_ARGUMENT",
            "The lifetime of the requested token is greater than the maximum allowed of 3600 seconds.",
        );
    }
    let delegates: Vec<String> = req
        .get("delegates")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    {
        let st = shared.state();
        for d in &delegates {
            let Some(d_email) = d.strip_prefix("projects/-/serviceAccounts/") else {
                return google_api_error(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Invalid form of account ID {d}. Should be [Gaia ID |Email |Unique ID |] of the account"),
                );
            };
            if !st.impersonation_targets.contains(d_email) {
                return permission_denied(d);
            }
        }
        if !st.impersonation_targets.contains(&email) {
            return permission_denied(&format!("projects/-/serviceAccounts/{email}"));
        }
    }
    let _ = caller;
    let tok = shared.issue("impersonation", &email, &scopes.join(" "), lifetime.min(shared.lifetime()));
    json_body(
        StatusCode::OK,
        &json!({
            "accessToken": tok.access_token,
            "expireTime": humantime::format_rfc3339_seconds(tok.expires_at).to_string(),
        }),
    )
}
