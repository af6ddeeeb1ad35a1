//! `POST /{tenant}/oauth2/v2.0/token`: Microsoft Entra ID's v2 token
//! endpoint (`login.microsoftonline.com`), client credentials grant.
//!
//! The client authenticates with either
//! * a client assertion (`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`):
//!   for workload identity federation, a token of an external issuer that
//!   must match one of the app's federated identity credentials (issuer,
//!   subject, audience), be signed by a key of that issuer and be within
//!   its validity; or
//! * a client secret of the app.
//!
//! `scope` must be one resource's `/.default`. Errors are Entra ID's JSON:
//! `error`, an `error_description` starting `AADSTSnnn:` followed by trace
//! lines, `error_codes`, `timestamp`, `trace_id`, `correlation_id`,
//! `error_uri`.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::Response;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::{guid, json_body, now_secs, Shared, ACR_RESOURCE};
use crate::google::jwt;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Resources the tenant knows (its service principals).
const RESOURCES: &[&str] = &[ACR_RESOURCE, "https://management.azure.com", "https://graph.microsoft.com"];

/// Entra ID's error answer.
pub(crate) fn error(status: u16, error: &str, number: u32, description: &str) -> Response {
    let trace = guid();
    let correlation = guid();
    let timestamp = rfc3339_now();
    json_body(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{number}: {description}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {timestamp}"
            ),
            "error_codes": [number],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={number}"),
        }),
    )
}

/// `YYYY-MM-DD HH:MM:SSZ`, as Entra ID writes its timestamps.
fn rfc3339_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn form(body: &[u8]) -> Option<Vec<(String, String)>> {
    serde_urlencoded::from_bytes(body).ok()
}

fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

pub(crate) fn token(shared: &Shared, tenant: &str, method: &Method, headers: &HeaderMap, body: &[u8]) -> Response {
    if method != Method::POST {
        return error(
            405,
            "invalid_request",
            900_561,
            "The endpoint only accepts POST, OPTIONS requests. Received a GET request.",
        );
    }
    if tenant != shared.tenant_id {
        return error(
            400,
            "invalid_request",
            90_002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        );
    }
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(p) = form(body).filter(|_| ct.starts_with("application/x-www-form-urlencoded")) else {
        return error(
            400,
            "invalid_request",
            900_144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    };
    match get(&p, "grant_type") {
        None => {
            return error(
                400,
                "invalid_request",
                900_144,
                "The request body must contain the following parameter: 'grant_type'.",
            )
        }
        Some("client_credentials") => {}
        Some(other) => {
            return error(
                400,
                "unsupported_grant_type",
                70_003,
                &format!("The app requested an unsupported grant type '{other}'."),
            )
        }
    }
    let Some(client_id) = get(&p, "client_id") else {
        return error(
            400,
            "invalid_request",
            900_144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let Some(scope) = get(&p, "scope") else {
        return error(
            400,
            "invalid_request",
            900_144,
            "The request body must contain the following parameter: 'scope'.",
        );
    };
    let Some(resource) = scope.strip_suffix("/.default").filter(|r| !r.contains(' ')) else {
        return error(
            400,
            "invalid_scope",
            1_002_012,
            &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
        );
    };
    let resource = resource.trim_end_matches('/');
    let app = shared.state().apps.get(client_id).cloned();
    let Some(app) = app else {
        return error(
            400,
            "unauthorized_client",
            700_016,
            &format!("Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", shared.tenant_id),
        );
    };
    let kind = match (get(&p, "client_assertion"), get(&p, "client_secret")) {
        (Some(assertion), None) => {
            if get(&p, "client_assertion_type") != Some(ASSERTION_TYPE) {
                return error(
                    400,
                    "invalid_request",
                    700_028,
                    "The client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
                );
            }
            if let Some(response) = check_assertion(shared, client_id, &app.federated, assertion) {
                return response;
            }
            "client_assertion"
        }
        (None, Some(secret)) => {
            if !app.secrets.iter().any(|s| s == secret) {
                return error(
                    401,
                    "invalid_client",
                    7_000_215,
                    &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."),
                );
            }
            "client_secret"
        }
        (Some(_), Some(_)) => {
            return error(
                400,
                "invalid_request",
                700_025,
                "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
            )
        }
        (None, None) => {
            return error(
                401,
                "invalid_client",
                7_000_218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        }
    };
    if !RESOURCES.contains(&resource) {
        return error(
            400,
            "invalid_resource",
            500_011,
            &format!("The resource principal named {resource} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", shared.tenant_id),
        );
    }
    let lifetime = shared.state().token_lifetime;
    let tok = shared.issue_aad(kind, client_id, resource, lifetime);
    json_body(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
            "ext_expires_in": lifetime.as_secs(),
            "access_token": tok.token,
        }),
    )
}

/// Entra ID's checks of a federated client assertion, in its order: a
/// parseable JWT, a federated credential matching issuer, subject and
/// audience, the issuer's signature, the validity window. `Some` is the refusal.
fn check_assertion(
    shared: &Shared,
    client_id: &str,
    federated: &[(String, String, String)],
    assertion: &str,
) -> Option<Response> {
    let Ok((_, claims)) = jwt::decode_unverified(assertion) else {
        return Some(error(400, "invalid_request", 50_027, "JWT token is invalid or malformed."));
    };
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let matched = federated.iter().any(|(i, s, a)| i == iss && s == sub && audiences.iter().any(|aud| aud == a));
    if !matched {
        return Some(error(
            400,
            "invalid_request",
            70_021,
            &format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'. https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
                audiences.join(",")
            ),
        ));
    }
    let verified = {
        let st = shared.state();
        st.issuers.iter().filter(|p| p.issuer() == iss).any(|p| p.verify_signature(assertion).is_ok())
    };
    if !verified {
        return Some(error(
            401,
            "invalid_client",
            50_013,
            &format!("Assertion failed signature validation. [Reason - The key was not found., Issuer: '{iss}', client: '{client_id}']"),
        ));
    }
    let now = now_secs();
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    let nbf = claims.get("nbf").or_else(|| claims.get("iat")).and_then(Value::as_u64).unwrap_or(0);
    // Entra ID allows five minutes of clock skew.
    if exp + 300 <= now || nbf > now + 300 {
        return Some(error(
            400,
            "invalid_client",
            700_024,
            &format!("Client assertion is not within its valid time range. Current time: {now}, assertion valid from {nbf}, expiry time of assertion {exp}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."),
        ));
    }
    None
}
