//! An Azure Container Registry, `https://NAME.azurecr.io`, as a [`Gate`]
//! for the kit's registry front: the registry's token server and the
//! Docker token protocol on its API.
//!
//! ACR speaks the Docker registry token protocol (Azure/acr
//! `docs/AAD-OAuth.md`, which follows Docker's "Token Authentication
//! Specification"):
//!
//! * `POST /oauth2/exchange` and `GET|POST /oauth2/token` are the registry's
//!   token server, answered by [`super::acr`] exactly as on the emulator's
//!   own URL, so a refresh token from either is good at both;
//! * `/v2/` without a current access token answers `401` with
//!   `WWW-Authenticate: Bearer realm="https://NAME.azurecr.io/oauth2/token",service="NAME.azurecr.io"`
//!   (AAD-OAuth.md, step 3 of "Authenticating to a registry with Azure CLI";
//!   the header as bazelbuild/rules_docker#1193 quotes it);
//! * a repository path without one answers the same `401` with
//!   `scope="repository:REPO:pull"` and the scope as the error's `detail`
//!   (AAD-OAuth.md shows this for `/v2/_catalog` and `registry:catalog:*`);
//! * a current access token that does not grant the request's actions on
//!   that repository answers `401` with the challenge and `DENIED`
//!   "requested access to the resource is denied" before `UNAUTHORIZED`
//!   (argoproj-labs/argocd-image-updater#473, a token without the scope);
//! * `Authorization: Bearer ACCESS_TOKEN` with an unexpired ACR access token
//!   the emulator issued for this login server, whose `access` claim grants
//!   the request's actions (`pull` to read; `pull,push` to write; `delete`),
//!   goes through to the images.
//!
//! The kit's token server grants `pull` only (AcrPull), so pushes stop at
//! the challenge, as they would for an AcrPull identity.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use serde_json::Value;

use super::acr::{self, Scope};
use super::Shared;
use crate::front::{Gate, RegistryPath, Verdict};
use crate::google::jwt;

/// The scope a registry request needs: `None` for the version check, which
/// needs only a current token.
fn scope<'a>(method: &Method, path: RegistryPath<'a>) -> Option<Scope<'a>> {
    match path {
        RegistryPath::Base => None,
        RegistryPath::Repository { name, .. } => {
            let actions: &'static [&'static str] = match *method {
                Method::GET | Method::HEAD => &["pull"],
                Method::DELETE => &["delete"],
                _ => &["pull", "push"],
            };
            Some(Scope { kind: "repository", name, actions })
        }
        RegistryPath::Other => Some(Scope { kind: "registry", name: "catalog", actions: &["*"] }),
    }
}

/// Whether an access token's `access` claim grants every action of `scope`.
fn grants(access: &Value, scope: &Scope<'_>) -> bool {
    access.as_array().is_some_and(|entries| {
        entries.iter().any(|e| {
            let actions: Vec<&str> =
                e["actions"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            e["type"] == scope.kind
                && e["name"] == scope.name
                && scope.actions.iter().all(|wanted| actions.contains(wanted) || actions.contains(&"*"))
        })
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// ACR's rules, over the tokens the emulator issued.
pub(super) struct AcrGate {
    shared: Arc<Shared>,
}

impl AcrGate {
    pub(super) fn new(shared: Arc<Shared>) -> AcrGate {
        AcrGate { shared }
    }

    /// The `access` claim of a current ACR access token for this registry.
    fn access(&self, headers: &HeaderMap) -> Option<Value> {
        let token = bearer(headers)?;
        let issued = self.shared.valid_token(token)?;
        if issued.kind != "acr_access" || issued.audience != self.shared.login_server {
            return None;
        }
        // The token is one the kit signed and recorded, so its claims are
        // the kit's own: no signature to check again.
        let (_, claims) = jwt::decode_unverified(token).ok()?;
        Some(claims["access"].clone())
    }
}

impl Gate for AcrGate {
    fn admit(&self, req: &Request<Bytes>) -> Verdict {
        let shared = &self.shared;
        let (method, uri, headers) = (req.method(), req.uri(), req.headers());
        match uri.path() {
            "/oauth2/exchange" => return Verdict::Answer(acr::exchange(shared, method, headers, req.body())),
            "/oauth2/token" => return Verdict::Answer(acr::token(shared, method, uri, headers, req.body())),
            _ => {}
        }
        let Some(path) = RegistryPath::parse(uri.path()) else {
            return Verdict::Answer(acr::errors(StatusCode::NOT_FOUND, "NOT_FOUND", "not found"));
        };
        let scope = scope(method, path);
        match (self.access(headers), scope) {
            (None, scope) => Verdict::Answer(acr::challenge(shared, scope.as_ref())),
            (Some(_), None) => Verdict::Forward,
            (Some(access), Some(scope)) if grants(&access, &scope) => Verdict::Forward,
            (Some(_), Some(scope)) => Verdict::Answer(acr::insufficient_scope(shared, &scope)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{grants, scope};
    use crate::front::RegistryPath;
    use http::Method;
    use serde_json::json;

    #[test]
    fn requests_need_the_scope_of_their_repository_and_method() {
        let scope_of = |m, p| scope(&m, RegistryPath::parse(p).unwrap()).map(|s| s.to_string());
        assert_eq!(scope_of(Method::GET, "/v2/"), None);
        assert_eq!(scope_of(Method::GET, "/v2/team/app/manifests/1").as_deref(), Some("repository:team/app:pull"));
        assert_eq!(scope_of(Method::HEAD, "/v2/app/blobs/sha256:ab").as_deref(), Some("repository:app:pull"));
        assert_eq!(scope_of(Method::POST, "/v2/app/blobs/uploads/").as_deref(), Some("repository:app:pull,push"));
        assert_eq!(scope_of(Method::DELETE, "/v2/app/manifests/1").as_deref(), Some("repository:app:delete"));
        assert_eq!(scope_of(Method::GET, "/v2/_catalog").as_deref(), Some("registry:catalog:*"));
    }

    #[test]
    fn access_grants_a_scope_only_with_every_action_on_that_repository() {
        let pull = scope(&Method::GET, RegistryPath::parse("/v2/team/app/manifests/1").unwrap()).unwrap();
        let push = scope(&Method::PUT, RegistryPath::parse("/v2/team/app/manifests/1").unwrap()).unwrap();
        let access = json!([{"type": "repository", "name": "team/app", "actions": ["pull"]}]);
        assert!(grants(&access, &pull));
        assert!(!grants(&access, &push));
        assert!(!grants(&json!([{"type": "repository", "name": "team/other", "actions": ["pull"]}]), &pull));
        assert!(!grants(&json!([{"type": "repository", "name": "team/app", "actions": []}]), &pull));
        assert!(grants(&json!([{"type": "repository", "name": "team/app", "actions": ["*"]}]), &push));
        assert!(!grants(&json!(null), &pull));
    }
}
