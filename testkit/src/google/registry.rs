//! `GET /v2/token`: the token endpoint of Google's container registries
//! (Container Registry and Artifact Registry), in the Docker registry token
//! protocol they speak.
//!
//! A registry answers an unauthenticated request with
//! `401 WWW-Authenticate: Bearer realm=".../v2/token",service="HOST",scope="repository:NAME:pull"`;
//! the client then asks this endpoint for a registry token, sending the
//! Docker credential as HTTP Basic. Google accepts, at the moment of the
//! request:
//! * `oauth2accesstoken:<access token>`: an OAuth access token it issued that
//!   has not expired; the identity is the token's subject;
//! * `_json_key:<key JSON>` and `_json_key_base64:<base64 of the key JSON>`:
//!   a service-account key it issued; the identity is the key's account.
//!
//! What the identity may read is a per-repository reader list (IAM's
//! `artifactregistry.repositories.downloadArtifacts`), set with
//! [`Google::allow_pull`](super::Google::allow_pull); `allUsers` makes a
//! repository public. A repository is a path prefix of the image name:
//! `PROJECT/REPOSITORY` in Artifact Registry.
//!
//! Answers:
//! * a token the registry (Docker's distribution, `auth: token`) verifies: an
//!   RS256 JWT with the signing certificate in `x5c`, `iss` the configured
//!   issuer, `aud` the requested `service`, and `access` listing exactly the
//!   requested pulls the identity may make;
//! * `401 UNAUTHORIZED` ("authentication failed") for credentials Google does
//!   not accept (an unknown or expired access token, a key it did not issue);
//! * `403 DENIED` when an accepted identity, or an anonymous request, may not
//!   read a requested repository (Artifact Registry's words);
//! * `404` to `POST` (the OAuth2 form of the protocol), as Google's registries
//!   answer it; Docker clients then fall back to `GET`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, Method, StatusCode, Uri};
use rsa::PrivateKey;
use serde_json::{json, Value};

use super::{jwt, random_hex, Shared};

/// The IAM principal that stands for anyone, signed in or not: a repository
/// readable by `allUsers` is public.
pub(crate) const ALL_USERS: &str = "allUsers";

/// How long a registry token lasts: Google's registries issue them for an
/// hour, but never past the credential they were issued for.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// What the registry trusts: the key that signs registry tokens, its
/// certificate (in the registry's `rootcertbundle`) and the issuer name.
pub(crate) struct Signer {
    pub(crate) key: PrivateKey,
    /// DER of the certificate for `key`.
    pub(crate) cert_der: Vec<u8>,
    pub(crate) issuer: String,
}

/// One requested scope: `repository:NAME:ACTION[,ACTION]`.
struct Scope {
    name: String,
    actions: Vec<String>,
}

fn parse_scope(s: &str) -> Option<Scope> {
    let (kind, rest) = s.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    (kind == "repository" && !name.is_empty())
        .then(|| Scope { name: name.to_string(), actions: actions.split(',').map(str::to_string).collect() })
}

/// The Docker registry's error document.
fn registry_error(status: StatusCode, code: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(json!({"errors": [{"code": code, "message": message}]}).to_string()))
        .expect("valid response")
}

/// A credential Google does not accept.
struct Rejected;

/// Who a Basic credential proves, if Google accepts it now, and until when
/// (an access token's expiry; a key does not expire).
/// `Err` when Google would not accept the credential.
fn identity(shared: &Shared, headers: &HeaderMap) -> Result<Option<(String, Option<SystemTime>)>, Rejected> {
    let Some(auth) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let basic = auth.to_str().ok().and_then(|v| v.strip_prefix("Basic ")).ok_or(Rejected)?;
    let decoded = STANDARD.decode(basic.trim()).ok().and_then(|b| String::from_utf8(b).ok()).ok_or(Rejected)?;
    let (user, password) = decoded.split_once(':').ok_or(Rejected)?;
    let key_json = match user {
        "oauth2accesstoken" => {
            return shared.valid_token(password).map(|t| Some((t.subject, Some(t.expires_at)))).ok_or(Rejected);
        }
        "_json_key" => password.to_string(),
        "_json_key_base64" => STANDARD.decode(password).ok().and_then(|b| String::from_utf8(b).ok()).ok_or(Rejected)?,
        _ => return Err(Rejected),
    };
    key_identity(shared, &key_json).map(|who| Some((who, None))).ok_or(Rejected)
}

/// The account of a service-account key the kit issued.
fn key_identity(shared: &Shared, key_json: &str) -> Option<String> {
    let key: Value = serde_json::from_str(key_json).ok()?;
    let field = |k: &str| key.get(k).and_then(Value::as_str);
    (field("type") == Some("service_account")
        && field("client_email") == Some(shared.email.as_str())
        && field("private_key_id") == Some(shared.key_id.as_str())
        && field("private_key") == Some(shared.key_pem().as_str()))
    .then(|| shared.email.clone())
}

pub(crate) fn token(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    if method == Method::POST {
        return registry_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not Found");
    }
    if method != Method::GET {
        return registry_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "Method Not Allowed");
    }
    if shared.state().registry_signer.is_none() {
        return registry_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not Found");
    }
    let query: Vec<(String, String)> = serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let service = query.iter().find(|(k, _)| k == "service").map(|(_, v)| v.clone()).unwrap_or_default();
    // `scope` may repeat, and each may hold several space-separated scopes.
    let scopes: Vec<Scope> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter_map(|s| parse_scope(&s))
        .collect();
    let (who, credential_expiry) = match identity(shared, headers) {
        Ok(Some((who, expiry))) => (Some(who), expiry),
        Ok(None) => (None, None),
        Err(Rejected) => return registry_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "authentication failed"),
    };
    let state = shared.state();
    let signer = state.registry_signer.as_ref().expect("checked above");
    let mut access = Vec::new();
    for scope in &scopes {
        let readable = state.registry_readers.iter().any(|(repo, reader)| {
            (scope.name == *repo || scope.name.starts_with(&format!("{repo}/")))
                && (reader == ALL_USERS || who.as_deref() == Some(reader.as_str()))
        });
        if !readable {
            let message = match who {
                None => format!(
                    "Unauthenticated request. Unauthenticated requests do not have permission \
                     \"artifactregistry.repositories.downloadArtifacts\" on resource \"{}\" (or it may not exist)",
                    scope.name
                ),
                Some(_) => format!(
                    "Permission \"artifactregistry.repositories.downloadArtifacts\" denied on resource \"{}\" \
                     (or it may not exist)",
                    scope.name
                ),
            };
            return registry_error(StatusCode::FORBIDDEN, "DENIED", &message);
        }
        // Pulls only: the kit's registries are filled by the test set-up, not
        // through this endpoint.
        let actions: Vec<&String> = scope.actions.iter().filter(|a| *a == "pull").collect();
        access.push(json!({"type": "repository", "name": scope.name, "actions": actions}));
    }
    let now = SystemTime::now();
    let expires = credential_expiry.map_or(now + TOKEN_LIFETIME, |e| e.min(now + TOKEN_LIFETIME));
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let claims = json!({
        "iss": signer.issuer,
        "sub": who.clone().unwrap_or_default(),
        "aud": service,
        "exp": secs(expires),
        "nbf": secs(now),
        "iat": secs(now),
        "jti": random_hex(32),
        "access": access,
    });
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [STANDARD.encode(&signer.cert_der)]});
    let token = jwt::sign_with_header(&signer.key, header, &claims);
    let expires_in = expires.duration_since(now).unwrap_or_default().as_secs();
    super::json_body(
        StatusCode::OK,
        &json!({"token": token, "access_token": token, "expires_in": expires_in, "issued_at": humantime::format_rfc3339_seconds(now).to_string()}),
    )
}

#[cfg(test)]
mod tests {
    use super::parse_scope;

    #[test]
    fn scopes_parse_as_the_docker_token_protocol_writes_them() {
        let s = parse_scope("repository:proj/repo/app:pull,push").expect("scope");
        assert_eq!(s.name, "proj/repo/app");
        assert_eq!(s.actions, ["pull", "push"]);
        // A registry host with a port in the name is not a scope of Google's.
        assert!(parse_scope("registry:catalog:*").is_none());
        assert!(parse_scope("repository::pull").is_none());
    }
}
