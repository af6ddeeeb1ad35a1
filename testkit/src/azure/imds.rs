//! `GET /metadata/identity/oauth2/token`: the Azure Instance Metadata
//! Service's managed identity endpoint (`169.254.169.254`).
//!
//! As documented: the request must carry `Metadata: true` and no
//! `X-Forwarded-For`, name `api-version` and `resource`, and may pick a
//! user-assigned identity with `client_id` (or `object_id`, `msi_res_id`);
//! without one the VM's system-assigned identity answers. Errors are OAuth
//! JSON (`{"error": "invalid_request", "error_description": "..."}`); the
//! success body carries its numbers as strings (`"expires_in": "86399"`).

use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::json;

use super::{json_body, Shared};

pub(crate) const PATH: &str = "/metadata/identity/oauth2/token";

fn bad(status: StatusCode, description: &str) -> Response {
    json_body(status, &json!({"error": "invalid_request", "error_description": description}))
}

pub(crate) fn token(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    if headers.get("Metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return bad(StatusCode::BAD_REQUEST, "Required metadata header not specified");
    }
    if headers.contains_key("X-Forwarded-For") {
        return bad(StatusCode::BAD_REQUEST, "Request forwarding is not supported");
    }
    if method != Method::GET {
        return bad(StatusCode::METHOD_NOT_ALLOWED, "The request method is not supported");
    }
    let query: Vec<(String, String)> = serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let q = |k: &str| query.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    if q("api-version").is_none() {
        return bad(StatusCode::BAD_REQUEST, "Required query variable 'api-version' is missing");
    }
    let Some(resource) = q("resource") else {
        return bad(StatusCode::BAD_REQUEST, "Required audience parameter not specified");
    };
    let resource = resource.trim_end_matches('/');
    if q("object_id").is_some() || q("msi_res_id").is_some() {
        return bad(StatusCode::BAD_REQUEST, "Identity not found");
    }
    let (identity, lifetime) = {
        let st = shared.state();
        let identity = match q("client_id") {
            Some(id) => st.vm_identities.iter().find(|v| v.as_str() == id).cloned(),
            None => st.system_identity.clone(),
        };
        (identity, st.imds_token_lifetime)
    };
    let Some(client_id) = identity else {
        return bad(StatusCode::BAD_REQUEST, "Identity not found");
    };
    let tok = shared.issue_aad("managed_identity", &client_id, resource, lifetime);
    let now = super::now_secs();
    json_body(
        StatusCode::OK,
        &json!({
            "access_token": tok.token,
            "client_id": client_id,
            "expires_in": lifetime.as_secs().to_string(),
            "expires_on": (now + lifetime.as_secs()).to_string(),
            "ext_expires_in": lifetime.as_secs().to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    )
}
