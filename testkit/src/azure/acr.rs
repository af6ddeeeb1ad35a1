//! The registry's token server (`https://NAME.azurecr.io/oauth2/...`), as
//! ACR documents it (Azure/acr `docs/AAD-OAuth.md`):
//!
//! * `POST /oauth2/exchange`, form `grant_type=access_token&service=NAME.azurecr.io&tenant=TENANT&access_token=AAD_TOKEN`
//!   answers `{"refresh_token": "<JWT>"}`: an ACR refresh token whose `exp`
//!   says when it stops working (3 hours). The Azure AD token must be one
//!   the kit issued, unexpired, for `https://containerregistry.azure.net`,
//!   in the named tenant;
//! * `POST /oauth2/token`, form `grant_type=refresh_token&service=...&scope=repository:REPO:pull&refresh_token=...`,
//!   and `GET /oauth2/token?service=...&scope=...` with HTTP basic
//!   authentication `00000000-0000-0000-0000-000000000000:REFRESH_TOKEN`
//!   (how a Docker client uses the refresh token as a password) answer
//!   `{"access_token": "<JWT>"}` whose `access` grants `pull` to identities
//!   holding AcrPull;
//! * `GET /v2/` answers the `401` challenge naming the realm and service;
//!   the registry's own paths ([`super::front`]) answer it with the `scope`
//!   they need.
//!
//! Errors use the registry's shape, `{"errors": [{"code", "message"}]}`.

use axum::response::Response;
use base64::Engine as _;
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{json, Value};

use super::{guid, json_body, now_secs, Shared, ACR_RESOURCE, ACR_USERNAME};

/// The registry's error answer.
pub(crate) fn errors(status: StatusCode, code: &str, message: &str) -> Response {
    json_body(status, &json!({"errors": [{"code": code, "message": message}]}))
}

fn unauthorized(message: &str) -> Response {
    errors(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
}

fn form(headers: &HeaderMap, body: &[u8]) -> Option<Vec<(String, String)>> {
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    ct.starts_with("application/x-www-form-urlencoded").then(|| serde_urlencoded::from_bytes(body).ok()).flatten()
}

fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

const AUTHENTICATION_REQUIRED: &str =
    "authentication required, visit https://aka.ms/acr/authorization for more information.";

/// What a registry request needs, as the challenge's `scope` names it:
/// `TYPE:NAME:ACTION[,ACTION]` (`repository:team/app:pull`, `registry:catalog:*`).
pub(crate) struct Scope<'a> {
    pub kind: &'static str,
    pub name: &'a str,
    pub actions: &'static [&'static str],
}

impl std::fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// The `401` that sends a client to the token server: `WWW-Authenticate:
/// Bearer realm=...,service=...`, with the `scope` the request needs when it
/// needs one, and the registry's error body (with the scope's actions as
/// `detail`, as AAD-OAuth.md shows for `/v2/_catalog`).
pub(crate) fn challenge(shared: &Shared, scope: Option<&Scope<'_>>) -> Response {
    let mut error = json!({"code": "UNAUTHORIZED", "message": AUTHENTICATION_REQUIRED});
    if let Some(s) = scope {
        let detail: Vec<Value> =
            s.actions.iter().map(|a| json!({"Type": s.kind, "Name": s.name, "Action": a})).collect();
        error["detail"] = detail.into();
    }
    challenged(shared, scope, json!({"errors": [error]}))
}

/// A current access token that does not grant what the request needs: the
/// same challenge, with `DENIED` before `UNAUTHORIZED` (what ACR answers a
/// token without the scope, argoproj-labs/argocd-image-updater#473).
pub(crate) fn insufficient_scope(shared: &Shared, scope: &Scope<'_>) -> Response {
    let body = json!({"errors": [
        {"code": "DENIED", "message": "requested access to the resource is denied"},
        {"code": "UNAUTHORIZED", "message": AUTHENTICATION_REQUIRED},
    ]});
    challenged(shared, Some(scope), body)
}

fn challenged(shared: &Shared, scope: Option<&Scope<'_>>, body: Value) -> Response {
    let mut resp = json_body(StatusCode::UNAUTHORIZED, &body);
    let mut value = format!("Bearer realm=\"https://{0}/oauth2/token\",service=\"{0}\"", shared.login_server);
    if let Some(scope) = scope {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, value.parse().expect("header value"));
    resp
}

pub(crate) fn exchange(shared: &Shared, method: &Method, headers: &HeaderMap, body: &[u8]) -> Response {
    if method != Method::POST {
        // ACR answers other methods on its auth endpoints with 404 (Azure/acr#166).
        return errors(StatusCode::NOT_FOUND, "NOT_FOUND", "not found");
    }
    let Some(p) = form(headers, body) else {
        return errors(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "the request body must be application/x-www-form-urlencoded",
        );
    };
    match get(&p, "grant_type") {
        Some("access_token" | "access_token_refresh_token") => {}
        Some(other) => {
            return errors(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED_GRANT_TYPE",
                &format!("grant_type {other} is not supported"),
            )
        }
        None => return errors(StatusCode::BAD_REQUEST, "BAD_REQUEST", "grant_type is required"),
    }
    if get(&p, "service") != Some(shared.login_server.as_str()) {
        return errors(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!(
                "the service {:?} does not match the registry {}",
                get(&p, "service").unwrap_or(""),
                shared.login_server
            ),
        );
    }
    let Some(access_token) = get(&p, "access_token") else {
        return errors(StatusCode::BAD_REQUEST, "BAD_REQUEST", "access_token is required");
    };
    let Some(aad) = shared.valid_token(access_token).filter(|t| t.kind != "acr_refresh" && t.kind != "acr_access")
    else {
        return unauthorized("the access token is invalid or expired");
    };
    if aad.audience != ACR_RESOURCE {
        return unauthorized(&format!(
            "the access token was issued for the audience {}, not {ACR_RESOURCE}",
            aad.audience
        ));
    }
    if let Some(tenant) = get(&p, "tenant") {
        if tenant != shared.tenant_id {
            return unauthorized(&format!("the access token is not valid for the tenant {tenant}"));
        }
    }
    let lifetime = shared.state().refresh_token_lifetime;
    let now = now_secs();
    let exp = now + lifetime.as_secs();
    let token = shared.sign(&json!({
        "jti": guid(),
        "sub": aad.client_id,
        "nbf": now,
        "exp": exp,
        "iat": now,
        "iss": "Azure Container Registry",
        "aud": shared.login_server,
        "version": "1.0",
        "grant_type": "refresh_token",
        "tenant": shared.tenant_id,
        "permissions": {"actions": ["read"], "notActions": []},
        "roles": [],
    }));
    let login_server = shared.login_server.clone();
    shared.record(token.clone(), "acr_refresh", &aad.client_id, &login_server, exp);
    json_body(StatusCode::OK, &json!({ "refresh_token": token }))
}

pub(crate) fn token(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
    let (service, scopes, refresh_token) = if method == Method::GET {
        let query: Vec<(String, String)> = serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
        let Some((user, password)) = basic_auth(headers) else {
            return unauthorized(AUTHENTICATION_REQUIRED);
        };
        if user != ACR_USERNAME {
            // Admin users and tokens (other usernames) are not emulated.
            return unauthorized(AUTHENTICATION_REQUIRED);
        }
        let scopes: Vec<String> = query.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect();
        (get(&query, "service").map(str::to_string), scopes, password)
    } else if method == Method::POST {
        let Some(p) = form(headers, body) else {
            return errors(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "the request body must be application/x-www-form-urlencoded",
            );
        };
        if get(&p, "grant_type") != Some("refresh_token") {
            return errors(StatusCode::BAD_REQUEST, "UNSUPPORTED_GRANT_TYPE", "grant_type must be refresh_token");
        }
        let Some(rt) = get(&p, "refresh_token") else {
            return errors(StatusCode::BAD_REQUEST, "BAD_REQUEST", "refresh_token is required");
        };
        let scopes: Vec<String> = p.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect();
        (get(&p, "service").map(str::to_string), scopes, rt.to_string())
    } else {
        return errors(StatusCode::NOT_FOUND, "NOT_FOUND", "not found");
    };
    if service.as_deref() != Some(shared.login_server.as_str()) {
        return errors(StatusCode::BAD_REQUEST, "BAD_REQUEST", "the service does not match the registry");
    }
    let Some(refresh) = shared.valid_token(&refresh_token).filter(|t| t.kind == "acr_refresh") else {
        return unauthorized("the refresh token is invalid or expired");
    };
    let may_pull = shared.state().pullers.contains(&refresh.client_id);
    // Each `repository:NAME:ACTIONS` scope is granted the actions the
    // identity's roles allow (AcrPull: pull); the rest are left out, as a
    // Docker token server does.
    let access: Vec<Value> = scopes
        .iter()
        .flat_map(|s| s.split(' '))
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            let granted: Vec<&str> = actions.split(',').filter(|a| *a == "pull" && may_pull).collect();
            Some(json!({"type": kind, "name": name, "actions": granted}))
        })
        .collect();
    let now = now_secs();
    let exp = now + 75 * 60;
    let token = shared.sign(&json!({
        "jti": guid(),
        "sub": refresh.client_id,
        "nbf": now,
        "exp": exp,
        "iat": now,
        "iss": "Azure Container Registry",
        "aud": shared.login_server,
        "version": "1.0",
        "access": access,
        "roles": [],
        "grant_type": "refresh_token",
    }));
    let login_server = shared.login_server.clone();
    shared.record(token.clone(), "acr_access", &refresh.client_id, &login_server, exp);
    json_body(StatusCode::OK, &json!({ "access_token": token }))
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}
