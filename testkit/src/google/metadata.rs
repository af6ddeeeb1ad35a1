//! The GCE / GKE metadata server (`metadata.google.internal`), as reached via
//! `GCE_METADATA_HOST`.
//!
//! Faithful points that clients trip over:
//! * every request must carry `Metadata-Flavor: Google`, else `403` with a
//!   plain-text body; requests carrying `X-Forwarded-For` are refused too (the
//!   server only talks to the local machine);
//! * every response, errors included, carries `Metadata-Flavor: Google`;
//! * access tokens are cached by the server and handed out again, with a
//!   shrinking `expires_in`, until they are close to expiry (Google documents
//!   "until they have 5 minutes of remaining time"; the kit scales that margin
//!   to 1/12 of the configured token lifetime, i.e. exactly 5 min at the default
//!   1 h), so a client polling early gets the *same* token back.

use std::time::SystemTime;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::json;

use super::{secs_until, Shared};

const DEFAULT_SCOPES: &str =
    "https://www.googleapis.com/auth/cloud-platform\nhttps://www.googleapis.com/auth/userinfo.email\n";

fn with_flavor(status: StatusCode, content_type: &str, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("Metadata-Flavor", "Google")
        .header(http::header::SERVER, "GKE Metadata Server")
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .expect("valid response")
}

pub(crate) fn text(status: StatusCode, body: &str) -> Response {
    with_flavor(status, "text/plain; charset=utf-8", body.to_string())
}

fn json(v: serde_json::Value) -> Response {
    with_flavor(StatusCode::OK, "application/json", v.to_string())
}

fn not_found() -> Response {
    with_flavor(
        StatusCode::NOT_FOUND,
        "text/html; charset=UTF-8",
        "<!DOCTYPE html>\n<html lang=en>\n  <title>Error 404 (Not Found)!!1</title>\n  <p><b>404.</b> <ins>That’s an error.</ins>\n  <p>The requested URL was not found on this server.  <ins>That’s all we know.</ins>\n".to_string(),
    )
}

pub(crate) fn handle(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    if headers.get("Metadata-Flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return text(StatusCode::FORBIDDEN, "Missing required header \"Metadata-Flavor\": \"Google\"\n");
    }
    if headers.contains_key("X-Forwarded-For") {
        return text(StatusCode::FORBIDDEN, "Request forwarding is not allowed: X-Forwarded-For header present\n");
    }
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    let query: Vec<(String, String)> = serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let q = |k: &str| query.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str());
    let path = uri.path();
    if path == "/" {
        return with_flavor(StatusCode::OK, "application/text", "computeMetadata/\n".into());
    }
    let Some(rest) = path.strip_prefix("/computeMetadata/v1/") else {
        if path == "/computeMetadata/v1" || path == "/computeMetadata/" || path == "/computeMetadata" {
            return with_flavor(StatusCode::OK, "application/text", "v1/\n".into());
        }
        return not_found();
    };
    // Service-account paths accept "default" or the account's email.
    let sa_rest = rest.strip_prefix("instance/service-accounts/").and_then(|r| {
        let (who, tail) = r.split_once('/').unwrap_or((r, ""));
        (who == "default" || who == shared.email).then_some(tail)
    });
    match (rest, sa_rest) {
        ("", _) => with_flavor(StatusCode::OK, "application/text", "instance/\nproject/\n".into()),
        ("project/project-id", _) => text(StatusCode::OK, &shared.project_id),
        ("project/numeric-project-id", _) => text(StatusCode::OK, &shared.project_number),
        ("universe/universe-domain", _) | ("universe/universe_domain", _) => text(StatusCode::OK, "googleapis.com"),
        ("instance/service-accounts/", _) | ("instance/service-accounts", _) => {
            text(StatusCode::OK, &format!("default/\n{}/\n", shared.email))
        }
        (_, Some("")) => {
            if q("recursive") == Some("true") {
                json(json!({
                    "aliases": ["default"],
                    "email": shared.email,
                    "scopes": DEFAULT_SCOPES.lines().collect::<Vec<_>>(),
                }))
            } else {
                text(StatusCode::OK, "aliases\nemail\nidentity\nscopes\ntoken\n")
            }
        }
        (_, Some("email")) => text(StatusCode::OK, &shared.email),
        (_, Some("aliases")) => text(StatusCode::OK, "default\n"),
        (_, Some("scopes")) => text(StatusCode::OK, DEFAULT_SCOPES),
        (_, Some("token")) => token(shared, q("scopes")),
        (_, Some("identity")) => match q("audience").filter(|a| !a.is_empty()) {
            None => text(StatusCode::BAD_REQUEST, "non-empty audience parameter required\n"),
            Some(aud) => text(StatusCode::OK, &super::oauth::id_token(shared, aud)),
        },
        _ => not_found(),
    }
}

fn token(shared: &Shared, scopes: Option<&str>) -> Response {
    let scope = scopes
        .map(|s| s.split(',').map(str::trim).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| DEFAULT_SCOPES.trim().replace('\n', " "));
    let lifetime = shared.lifetime();
    let margin = lifetime / 12;
    let now = SystemTime::now();
    let cached = shared.state().metadata_cache.get(&scope).filter(|t| t.expires_at > now + margin).cloned();
    let tok = match cached {
        Some(t) => t,
        None => {
            let t = shared.issue("metadata", &shared.email, &scope, lifetime);
            shared.state().metadata_cache.insert(scope, t.clone());
            t
        }
    };
    json(json!({
        "access_token": tok.access_token,
        "expires_in": secs_until(tok.expires_at),
        "token_type": "Bearer",
    }))
}
