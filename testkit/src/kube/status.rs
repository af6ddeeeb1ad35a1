//! Kubernetes `Status` error bodies.
//!
//! Every failure the API server reports is a `meta.k8s.io/v1` `Status` object
//! whose `reason`, `code`, `message` and `details` clients switch on (kube-rs
//! turns it into `kube::Error::Api(ErrorResponse)`). The messages below copy the
//! wording of the real apiserver (k8s.io/apimachinery `errors` and
//! `validation/field` packages) so that tests asserting on them stay honest.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{json, Map, Value};

use super::resources::Resource;

/// One entry of `details.causes[]`, i.e. a `field.Error` of the apiserver.
#[derive(Clone, Debug)]
pub(crate) struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueForbidden`, ...
    pub reason: &'static str,
    /// The field path, e.g. `data[.dockerconfigjson]`.
    pub field: String,
    /// The error body without the field, e.g. `Invalid value: "x": field is immutable`.
    pub message: String,
}

impl Cause {
    /// `field.Invalid(path, value, detail)` with a string value.
    pub fn invalid(field: impl Into<String>, value: &str, detail: impl AsRef<str>) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {}", go_quote(value), detail.as_ref()),
        }
    }

    /// `field.Required(path, detail)`.
    pub fn required(field: impl Into<String>, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") },
        }
    }

    /// `field.Forbidden(path, detail)`.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Cause {
        Cause { reason: "FieldValueForbidden", field: field.into(), message: format!("Forbidden: {detail}") }
    }

    /// `field.TooLong(path, "", max)` as rendered for byte-sized values.
    pub fn too_long(field: impl Into<String>, max: usize) -> Cause {
        Cause {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: may not be more than {max} bytes"),
        }
    }

    /// `field: message`, as `field.Error` prints itself.
    pub fn full(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// Go's `%q` for the strings we meet (ASCII-printable mostly).
pub(crate) fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// A failed API call, rendered as a `Status` body.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None }
    }

    pub fn with_details(mut self, d: Value) -> ApiError {
        self.details = Some(d);
        self
    }

    /// `details` for errors about a resource: `{name, group?, kind: <plural>}`.
    fn resource_details(res: &Resource, name: &str) -> Value {
        let mut d = Map::new();
        d.insert("name".into(), json!(name));
        if !res.group.is_empty() {
            d.insert("group".into(), json!(res.group));
        }
        d.insert("kind".into(), json!(res.plural));
        Value::Object(d)
    }

    /// The qualified resource as the apiserver prints it: `secrets`, `events.events.k8s.io`.
    fn qualified(res: &Resource) -> String {
        if res.group.is_empty() {
            res.plural.to_string()
        } else {
            format!("{}.{}", res.plural, res.group)
        }
    }

    pub fn not_found(res: &Resource, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{} \"{}\" not found", Self::qualified(res), name))
            .with_details(Self::resource_details(res, name))
    }

    pub fn already_exists(res: &Resource, name: &str) -> ApiError {
        ApiError::new(409, "AlreadyExists", format!("{} \"{}\" already exists", Self::qualified(res), name))
            .with_details(Self::resource_details(res, name))
    }

    /// The optimistic-concurrency failure of an update with a stale resourceVersion.
    pub fn conflict(res: &Resource, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                Self::qualified(res),
                name
            ),
        )
        .with_details(Self::resource_details(res, name))
    }

    /// A failed `preconditions` check of a DELETE (`rest.BeforeDelete`). Unlike
    /// the update conflict it names the object's kind, not its resource, and
    /// the kind of the apiserver's internal type (see [`Resource::internal_kind`]):
    /// `Operation cannot be fulfilled on Secret "x": the ResourceVersion in the
    /// precondition (1) does not match ...`, `details: {name, kind: "Secret"}`.
    pub fn precondition_conflict(res: &Resource, name: &str, detail: &str) -> ApiError {
        let (group, kind) = res.internal_kind();
        let qualified = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let mut d = Map::new();
        d.insert("name".into(), json!(name));
        if !group.is_empty() {
            d.insert("group".into(), json!(group));
        }
        d.insert("kind".into(), json!(kind));
        ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {qualified} {}: {detail}", go_quote(name)),
        )
        .with_details(Value::Object(d))
    }

    /// `errors.NewInvalid(kind, name, errs)`: 422 with one cause per field error.
    /// Empty `name`, `group` and `kind` are left out of `details`, as Go's
    /// `omitempty` leaves them out (a failed patch: `" \"\" is invalid: ..."`).
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> ApiError {
        let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let joined = if causes.len() == 1 {
            causes[0].full()
        } else {
            format!("[{}]", causes.iter().map(Cause::full).collect::<Vec<_>>().join(", "))
        };
        let mut d = Map::new();
        for (k, v) in [("name", name), ("group", group), ("kind", kind)] {
            if !v.is_empty() {
                d.insert(k.into(), json!(v));
            }
        }
        d.insert(
            "causes".into(),
            Value::Array(
                causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect(),
            ),
        );
        ApiError::new(422, "Invalid", format!("{qualified_kind} {} is invalid: {joined}", go_quote(name)))
            .with_details(Value::Object(d))
    }

    /// A write that failed validation: named by the kind of the apiserver's
    /// internal type (`Event "e1" is invalid`, not `Event.events.k8s.io`).
    pub fn invalid_resource(res: &Resource, name: &str, causes: Vec<Cause>) -> ApiError {
        let (group, kind) = res.internal_kind();
        Self::invalid(group, kind, name, causes)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// An error kube-apiserver does not classify (a Go error, not an API
    /// error, reached the handler): `500` with no reason.
    pub fn unclassified(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            .with_details(json!({}))
    }

    /// A body in a format the handler does not take, naming the ones it does.
    pub fn unsupported_media_type(accepted: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
        )
    }

    pub fn path_not_found() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource").with_details(json!({}))
    }

    /// `410 Gone` for a watch or list from a compacted resourceVersion.
    pub fn expired(requested: u64, oldest: u64) -> ApiError {
        ApiError::new(410, "Expired", format!("too old resource version: {requested} ({oldest})"))
    }

    /// A generic error for an HTTP code (used for injected faults).
    pub fn for_code(code: u16) -> ApiError {
        let (reason, message) = match code {
            400 => ("BadRequest", "the server rejected our request for an unknown reason"),
            401 => ("Unauthorized", "Unauthorized"),
            403 => ("Forbidden", "forbidden: the server does not allow access to the requested resource"),
            404 => ("NotFound", "the server could not find the requested resource"),
            405 => ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
            409 => ("Conflict", "the server reported a conflict"),
            410 => ("Expired", "the resource version is too old"),
            422 => ("Invalid", "the server rejected our request due to an error in our request"),
            429 => ("TooManyRequests", "Too many requests, please try again later."),
            500 => ("InternalError", "Internal error occurred: injected fault"),
            503 => ("ServiceUnavailable", "the server is currently unable to handle the request"),
            504 => ("Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request"),
            _ => ("", "the server responded with an unexpected status"),
        };
        ApiError::new(code, reason, message)
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.reason.is_empty() {
            v.as_object_mut().unwrap().remove("reason");
        }
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &self.to_json())
    }
}

/// An `application/json` response.
pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(v).expect("serializable")))
        .expect("valid response")
}

/// The `Status` body of a successful delete.
pub(crate) fn success_status(res: &Resource, name: &str, uid: &str) -> Value {
    let mut d = ApiError::resource_details(res, name);
    d["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": d,
    })
}
