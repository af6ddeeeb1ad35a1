//! Decoding and validation of written objects: the rules regcred's writes
//! can break, with the error shapes kube-apiserver gives them.
//!
//! The apiserver rejects a write at two stages:
//! * decoding: the body is not the resource's JSON shape (a `data` value that
//!   is not base64, a number where a string belongs, an `eventTime` without
//!   six fractional digits, another kind). A create answers `400 BadRequest`,
//!   a merge patch `422 Invalid` on the field `patch` ([`DecodeError`]);
//! * validation: `422 Invalid` with a cause per broken rule
//!   ([`validate_create`], [`validate_update`]).
//!
//! What is checked is what regcred writes or could write wrong: object
//! names, label and annotation keys and values, Secret data keys and size,
//! what a `dockerconfigjson` Secret must hold, the immutable type and uid,
//! and the events.k8s.io/v1 fields regcred sets. The rules on fields regcred
//! never sets (an Event's series and deprecated fields, other Secret types)
//! are not emulated, nor are Events without an `eventTime`; messages are
//! apimachinery's for validation and the emulator's own for decoding.
//! `tests/requests/` holds the emulator's answers to kube-apiserver's.
//!
//! [`normalize`] also does what decoding, defaulting and the strategies do
//! to a written object (`stringData` folded into `data`, `type: Opaque`, the
//! namespace name label, `omitempty` fields dropped) where regcred or its
//! tests read the result back.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::resources::Resource;
use super::status::{ApiError, Cause};

/// `core.MaxSecretSize`: 1 MiB.
const MAX_SECRET_SIZE: usize = 1024 * 1024;
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// `validation.IsDNS1123Subdomain`: dot-separated lowercase labels, 253 at most.
fn is_dns1123_subdomain(s: &str) -> bool {
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    };
    s.len() <= 253 && s.split('.').all(label)
}

/// The name part of a qualified name (and a non-empty label value):
/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`.
fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Why `s` is not a qualified name (`[dns-subdomain-prefix/]name`, a label
/// or annotation key): the first of apimachinery's reasons.
pub(crate) fn qualified_name_error(s: &str) -> Option<String> {
    let name = match s.split_once('/') {
        Some(("", _)) => return Some("prefix part must be non-empty".into()),
        Some((prefix, _)) if !is_dns1123_subdomain(prefix) => {
            return Some(format!("prefix part {DNS1123_SUBDOMAIN_MSG}"))
        }
        Some((_, name)) => name,
        None => s,
    };
    if name.is_empty() {
        Some("name part must be non-empty".into())
    } else if name.len() > 63 {
        Some("name part must be no more than 63 characters".into())
    } else if !is_name_part(name) {
        Some(QUALIFIED_NAME_MSG.into())
    } else {
        None
    }
}

/// Why `v` is not a label value, if it is not.
pub(crate) fn label_value_error(v: &str) -> Option<&'static str> {
    if v.len() > 63 {
        Some("must be no more than 63 characters")
    } else if !v.is_empty() && !is_name_part(v) {
        Some(LABEL_VALUE_MSG)
    } else {
        None
    }
}

/// `validation.IsConfigMapKey`, a Secret's data key: the first reason.
fn config_key_error(key: &str) -> Option<&'static str> {
    if key.len() > 253 {
        Some("must be no more than 253 characters")
    } else if key.is_empty() || !key.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')) {
        Some(CONFIG_KEY_MSG)
    } else if key == "." {
        Some("must not be '.'")
    } else if key == ".." {
        Some("must not be '..'")
    } else if key.starts_with("..") {
        Some("must not start with '..'")
    } else {
        None
    }
}

/// Why a written body could not be decoded into the resource's Go type, in
/// the emulator's words (kube-apiserver's are Go's decoder's).
#[derive(Debug)]
pub(crate) struct DecodeError(String);

impl DecodeError {
    /// The answer to a create (`POST`): `400 BadRequest`,
    /// `Secret in version "v1" cannot be handled as a Secret: <why>`.
    pub fn on_create(self, res: &Resource) -> ApiError {
        let version = res.api_version.rsplit('/').next().unwrap_or("v1");
        ApiError::bad_request(format!(
            "{} in version \"{version}\" cannot be handled as a {}: {}",
            res.kind, res.kind, self.0
        ))
    }

    /// The answer to a merge patch whose result cannot be decoded
    /// (`jsonPatcher.applyPatchToCurrentObject`): `422 Invalid` with no kind
    /// or name, one cause on the field `patch` whose value is the patched
    /// document (kube-apiserver's also holds `managedFields`, which the
    /// emulator does not keep).
    pub fn on_patch(self, patched: &Value) -> ApiError {
        let doc = serde_json::to_string(patched).expect("json");
        ApiError::invalid("", "", "", vec![Cause::invalid("patch", &doc, self.0)])
    }
}

/// A value of the wrong JSON type at `field`.
fn wrong_type(field: &str, v: &Value, want: &str) -> DecodeError {
    let found = match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    DecodeError(format!("{field}: {found}, not {want}"))
}

/// Go's `encoding/json` decoding of `[]byte`: standard base64, padded, with
/// `\r` and `\n` ignored.
fn decode_base64(s: &str) -> Result<Vec<u8>, DecodeError> {
    let cleaned: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned)
        .map_err(|e| DecodeError(format!("illegal base64 data: {e}")))
}

/// A `map[string]string` (labels, annotations, stringData) or, with
/// `bytes`, a `map[string][]byte` (data): `null` values are allowed (and
/// dropped by the caller).
fn check_map(v: Option<&Value>, field: &str, bytes: bool) -> Result<(), DecodeError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) => m.iter().try_for_each(|(k, v)| match v {
            Value::Null => Ok(()),
            Value::String(s) if bytes => decode_base64(s).map(drop),
            Value::String(_) => Ok(()),
            other => Err(wrong_type(&format!("{field}[{k}]"), other, "a string")),
        }),
        Some(other) => Err(wrong_type(field, other, "an object")),
    }
}

/// A `metav1.MicroTime` as Go's `time.Parse(RFC3339Micro, text)` takes it
/// (exactly six fractional digits, `Z` or `±hh:mm`), in UTC as it is stored.
fn parse_micro_time(text: &str) -> Option<String> {
    let (date_time, rest) = text.split_at_checked(19)?;
    let micros = rest.strip_prefix('.')?.get(..6).filter(|m| m.bytes().all(|b| b.is_ascii_digit()))?;
    let zone = &rest[7..];
    let local = humantime::parse_rfc3339(&format!("{date_time}.{micros}Z")).ok()?;
    let utc = match zone.as_bytes() {
        b"Z" => local,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] if [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) => {
            let number = |a: &u8, b: &u8| u64::from((a - b'0') * 10 + (b - b'0'));
            let offset = std::time::Duration::from_secs(number(h1, h2) * 3600 + number(m1, m2) * 60);
            if *sign == b'+' {
                local - offset
            } else {
                local + offset
            }
        }
        _ => return None,
    };
    Some(humantime::format_rfc3339_micros(utc).to_string())
}

/// Decoding checks and write-time defaulting.
pub(crate) fn normalize(res: &Resource, obj: &mut Value) -> Result<(), DecodeError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(wrong_type("the body", obj, "an object"));
    };
    for (field, want) in [("kind", res.kind), ("apiVersion", res.api_version)] {
        match map.get(field).and_then(Value::as_str) {
            Some(v) if !v.is_empty() && v != want => return Err(DecodeError(format!("{field} is {v}, not {want}"))),
            _ => _ = map.insert(field.into(), json!(want)),
        }
    }
    match map.get("metadata") {
        None | Some(Value::Null) => _ = map.insert("metadata".into(), json!({})),
        Some(Value::Object(_)) => {}
        Some(other) => return Err(wrong_type("metadata", other, "an object")),
    }
    let meta = map["metadata"].as_object_mut().expect("an object");
    // Null-valued entries are dropped by Go's decoder, and an empty map is
    // not stored or returned (`json:",omitempty"`).
    for field in ["labels", "annotations"] {
        check_map(meta.get(field), &format!("metadata.{field}"), false)?;
        if let Some(Value::Object(m)) = meta.get_mut(field) {
            m.retain(|_, v| !v.is_null());
        }
        if meta.get(field).is_some_and(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty)) {
            meta.remove(field);
        }
    }

    match res.plural {
        "secrets" => {
            check_map(map.get("data"), "data", true)?;
            check_map(map.get("stringData"), "stringData", false)?;
            if let Some(t) = map.get("type").filter(|t| !t.is_string() && !t.is_null()) {
                return Err(wrong_type("type", t, "a string"));
            }
            // stringData is write-only: merged into data, never stored or returned.
            let mut data = match map.remove("data") {
                Some(Value::Object(d)) => d,
                _ => Map::new(),
            };
            if let Some(Value::Object(sd)) = map.remove("stringData") {
                for (k, v) in sd {
                    if let Value::String(s) = v {
                        data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(s)));
                    }
                }
            }
            data.retain(|_, v| !v.is_null());
            if !data.is_empty() {
                map.insert("data".into(), Value::Object(data));
            }
            if map.get("type").and_then(Value::as_str).unwrap_or("").is_empty() {
                map.insert("type".into(), json!("Opaque"));
            }
        }
        "events" => {
            // metav1.MicroTime: decoded with Go's RFC3339Micro layout, stored in UTC.
            if let Some(text) = map.get("eventTime").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                let utc = parse_micro_time(text).ok_or_else(|| {
                    DecodeError(format!("eventTime: {text:?} is not a time with six fractional digits (RFC 3339)"))
                })?;
                map.insert("eventTime".into(), json!(utc));
            }
        }
        "leases" => {
            // spec.acquireTime and spec.renewTime are metav1.MicroTime too.
            if let Some(Value::Object(spec)) = map.get_mut("spec") {
                for field in ["acquireTime", "renewTime"] {
                    if let Some(text) = spec.get(field).and_then(Value::as_str).filter(|t| !t.is_empty()) {
                        let utc = parse_micro_time(text).ok_or_else(|| {
                            DecodeError(format!(
                                "spec.{field}: {text:?} is not a time with six fractional digits (RFC 3339)"
                            ))
                        })?;
                        spec.insert(field.into(), json!(utc));
                    }
                }
            }
        }
        "serviceaccounts" => {
            // `secrets` ([]ObjectReference, reduced to the name by the
            // strategy's cleanSecretReferences) and `imagePullSecrets`
            // ([]LocalObjectReference): `name` is `omitempty`, so `{"name": ""}`
            // is stored as `{}`; other keys are dropped; an empty list is not kept.
            for field in ["secrets", "imagePullSecrets"] {
                let items = match map.remove(field) {
                    None | Some(Value::Null) => continue,
                    Some(Value::Array(items)) => items,
                    Some(other) => return Err(wrong_type(field, &other, "an array")),
                };
                let mut kept = Vec::with_capacity(items.len());
                for item in &items {
                    let name = match item {
                        Value::Null => None,
                        Value::Object(m) => match m.get("name") {
                            None | Some(Value::Null) => None,
                            Some(Value::String(n)) => Some(n.as_str()),
                            Some(other) => return Err(wrong_type(&format!("{field}[].name"), other, "a string")),
                        },
                        other => return Err(wrong_type(&format!("{field}[]"), other, "an object")),
                    };
                    kept.push(name.filter(|n| !n.is_empty()).map_or_else(|| json!({}), |n| json!({"name": n})));
                }
                if !kept.is_empty() {
                    map.insert(field.into(), Value::Array(kept));
                }
            }
        }
        "namespaces" => {
            let name = meta_str(obj, "name").to_string();
            let labels = obj["metadata"].as_object_mut().expect("an object").entry("labels").or_insert(json!({}));
            if !name.is_empty() {
                labels["kubernetes.io/metadata.name"] = json!(name);
            }
            let spec = obj.as_object_mut().expect("an object").entry("spec").or_insert_with(|| json!({}));
            if spec.get("finalizers").is_none() {
                spec["finalizers"] = json!(["kubernetes"]);
            }
            let status = obj.as_object_mut().expect("an object").entry("status").or_insert_with(|| json!({}));
            if status.get("phase").is_none() {
                status["phase"] = json!("Active");
            }
        }
        _ => {}
    }
    Ok(())
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    str_at(obj, &format!("/metadata/{field}"))
}

/// `ValidateObjectMeta`: the name, label and annotation rules.
fn meta_errors(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let name = meta_str(obj, "name");
    if name.is_empty() {
        out.push(Cause::required("metadata.name", "name or generateName is required"));
    } else if name.len() > 253 {
        out.push(Cause::invalid("metadata.name", name, "must be no more than 253 characters"));
    } else if !is_dns1123_subdomain(name) {
        out.push(Cause::invalid("metadata.name", name, DNS1123_SUBDOMAIN_MSG));
    }
    let map = |field: &str| obj.pointer(&format!("/metadata/{field}")).and_then(Value::as_object).into_iter().flatten();
    for (k, v) in map("labels") {
        let v = v.as_str().unwrap_or("");
        out.extend(qualified_name_error(k).map(|e| Cause::invalid("metadata.labels", k, e)));
        out.extend(label_value_error(v).map(|e| Cause::invalid("metadata.labels", v, e)));
    }
    let mut total = 0;
    for (k, v) in map("annotations") {
        out.extend(qualified_name_error(&k.to_lowercase()).map(|e| Cause::invalid("metadata.annotations", k, e)));
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        out.push(Cause {
            reason: "FieldValueTooLong",
            field: "metadata.annotations".into(),
            message: format!("Too long: must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
        });
    }
    out
}

/// `ValidateSecret` for the types regcred writes: data keys and size, and
/// the key a `dockerconfigjson` Secret must hold, a JSON object.
fn secret_errors(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let data: Vec<(&String, Vec<u8>)> = obj
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, decode_base64(v.as_str().unwrap_or("")).unwrap_or_default()))
        .collect();
    for (k, _) in &data {
        out.extend(config_key_error(k).map(|e| Cause::invalid(format!("data[{k}]"), k, e)));
    }
    if data.iter().map(|(_, v)| v.len()).sum::<usize>() > MAX_SECRET_SIZE {
        out.push(Cause::too_long("data", MAX_SECRET_SIZE));
    }
    if str_at(obj, "/type") == "kubernetes.io/dockerconfigjson" {
        let field = "data[.dockerconfigjson]";
        match data.iter().find(|(k, _)| *k == ".dockerconfigjson") {
            None => out.push(Cause::required(field, "")),
            // Go's json.Unmarshal into map[string]interface{} takes an object or null.
            Some((_, bytes)) => match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(_) | Value::Null) => {}
                Ok(_) => out.push(Cause::invalid(field, "<secret contents redacted>", "not a JSON object")),
                Err(e) => out.push(Cause::invalid(field, "<secret contents redacted>", format!("not JSON: {e}"))),
            },
        }
    }
    out
}

/// `ValidateEventCreate` for events.k8s.io/v1, on the fields regcred sets.
/// Field paths are those of the internal core Event the apiserver
/// validates: `note` is `message`, `regarding` is `involvedObject`.
fn event_errors(obj: &Value) -> Vec<Cause> {
    let mut out = meta_errors(obj);
    if str_at(obj, "/eventTime").is_empty() {
        // An old-style Event, which regcred never writes.
        out.push(Cause::required("eventTime", ""));
        return out;
    }
    let ns = meta_str(obj, "namespace");
    if str_at(obj, "/regarding/namespace").is_empty() && ns != "default" && ns != "kube-system" {
        out.push(Cause::invalid("involvedObject.namespace", "", "does not match event.namespace"));
    }
    let controller = str_at(obj, "/reportingController");
    if controller.is_empty() {
        out.push(Cause::required("reportingController", ""));
    }
    out.extend(qualified_name_error(controller).map(|e| Cause::invalid("reportingController", controller, e)));
    for field in ["reportingInstance", "action", "reason"] {
        let v = str_at(obj, &format!("/{field}"));
        if v.is_empty() {
            out.push(Cause::required(field, ""));
        } else if v.len() > 128 {
            out.push(Cause::invalid(field, "", "can have at most 128 characters"));
        }
    }
    if str_at(obj, "/note").len() > 1024 {
        out.push(Cause::invalid("message", "", "can have at most 1024 characters"));
    }
    let ty = str_at(obj, "/type");
    if ty != "Normal" && ty != "Warning" {
        out.push(Cause::invalid("type", "", format!("has invalid value: {ty}")));
    }
    out
}

/// `ValidateLeaseSpec`: durations and counts must not be negative, and a
/// preferred holder needs a strategy.
fn lease_errors(obj: &Value) -> Vec<Cause> {
    let mut out = meta_errors(obj);
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(d) = spec.get("leaseDurationSeconds").and_then(Value::as_i64).filter(|d| *d <= 0) {
        out.push(Cause::invalid("spec.leaseDurationSeconds", &d.to_string(), "must be greater than 0"));
    }
    if let Some(t) = spec.get("leaseTransitions").and_then(Value::as_i64).filter(|t| *t < 0) {
        out.push(Cause::invalid("spec.leaseTransitions", &t.to_string(), "must be greater than or equal to 0"));
    }
    if !str_at(&spec, "/preferredHolder").is_empty() && str_at(&spec, "/strategy").is_empty() {
        out.push(Cause::forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"));
    }
    out
}

/// Validation of a new object (`strategy.Validate`).
pub(crate) fn validate_create(res: &Resource, obj: &Value) -> Vec<Cause> {
    match res.plural {
        "secrets" => meta_errors(obj).into_iter().chain(secret_errors(obj)).collect(),
        "events" => event_errors(obj),
        "leases" => lease_errors(obj),
        _ => meta_errors(obj),
    }
}

/// Validation of an update (`strategy.ValidateUpdate`): the create rules
/// plus the immutable uid and Secret type.
pub(crate) fn validate_update(res: &Resource, new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = validate_create(res, new);
    let new_uid = meta_str(new, "uid");
    if new_uid != meta_str(old, "uid") {
        out.push(Cause::invalid("metadata.uid", new_uid, "field is immutable"));
    }
    let new_type = str_at(new, "/type");
    if res.plural == "secrets" && new_type != str_at(old, "/type") {
        out.push(Cause::invalid("type", new_type, "field is immutable"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What kube-apiserver v1.34 took as an Event's eventTime, and refused.
    #[test]
    fn event_times_decode_as_the_api_server_decodes_them() {
        assert_eq!(parse_micro_time("2026-11-27T11:00:00.123456Z").unwrap(), "2026-11-27T11:00:00.123456Z");
        assert_eq!(parse_micro_time("2026-11-27T11:00:00.123456+01:00").unwrap(), "2026-11-27T10:00:00.123456Z");
        assert_eq!(parse_micro_time("2026-11-27T11:00:00.123456-00:30").unwrap(), "2026-11-27T11:30:00.123456Z");
        for refused in [
            "2026-11-27T11:00:00Z",
            "2026-11-27T11:00:00.123Z",
            "2026-11-27T11:00:00.123456789Z",
            "2026-11-27T11:00:00.123456",
            "2026-11-27T11:00:00.123456+0100",
            "2026-13-27T11:00:00.123456Z",
            "2026-11-27",
        ] {
            assert_eq!(parse_micro_time(refused), None, "{refused}");
        }
    }

    #[test]
    fn names_and_keys() {
        assert!(is_dns1123_subdomain("gcr-pull.example"));
        assert!(!is_dns1123_subdomain("Gcr") && !is_dns1123_subdomain("-a") && !is_dns1123_subdomain("a..b"));
        assert_eq!(qualified_name_error("regcred.dev/managed"), None);
        assert_eq!(qualified_name_error("/x").as_deref(), Some("prefix part must be non-empty"));
        assert!(qualified_name_error("a/b/c").is_some() && qualified_name_error("x/").is_some());
        assert!(qualified_name_error(&"n".repeat(64)).is_some());
        assert_eq!(label_value_error(""), None);
        assert!(label_value_error("a b").is_some());
        assert_eq!(config_key_error(".dockerconfigjson"), None);
        assert!(
            config_key_error("a/b").is_some() && config_key_error("..x").is_some() && config_key_error(".").is_some()
        );
    }
}
