//! Decoding and validation of written objects, mirroring the apiserver.
//!
//! The apiserver rejects a write at two stages, with different errors:
//! * decoding: the body is not the right JSON shape, e.g. a `data` value that
//!   is not base64. A create answers `400 BadRequest` ("... cannot be handled
//!   as a Secret: ..."), a merge patch `422 Invalid` on the field `patch`
//!   ([`DecodeError`]);
//! * validation (`422 Invalid` with `details.causes[]`): the object is well
//!   formed but breaks a rule of `pkg/apis/core/validation` (names, keys, secret
//!   types, sizes, immutability) or `pkg/apis/events/validation`.
//!
//! [`normalize`] performs the decoding checks plus what decoding, defaulting
//! and the strategies do to a written object (`stringData` folded into
//! `data`, `type: Opaque`, the namespace name label, `omitempty` fields
//! dropped), and the `validate_*` functions return the causes.

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::resources::Resource;
use super::status::{ApiError, Cause};

/// `core.MaxSecretSize` (and the ConfigMap limit): 1 MiB.
pub(crate) const MAX_SECRET_SIZE: usize = 1024 * 1024;
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn is_dns1123_label_any_len(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn subdomain_errors(field: &str, s: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push(Cause::invalid(field, s, "must be no more than 253 characters"));
    }
    if !s.split('.').all(is_dns1123_label_any_len) || s.is_empty() {
        out.push(Cause::invalid(field, s, DNS1123_SUBDOMAIN_MSG));
    }
    out
}

/// `qualifiedNameRegexp` (and the label value regexp, which also allows ""):
/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, with no length limit of its own.
fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `validation.IsValidLabelValue`: the length and the pattern are separate
/// checks, so a long value with a bad character gets both messages.
pub(crate) fn label_value_errors(field: &str, v: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    if v.len() > 63 {
        out.push(Cause::invalid(field, v, "must be no more than 63 characters"));
    }
    if !v.is_empty() && !matches_qualified_name_part(v) {
        out.push(Cause::invalid(field, v, LABEL_VALUE_MSG));
    }
    out
}

/// `validation.IsQualifiedName`: `[dns-subdomain-prefix/]name`, each check
/// reported on its own as apimachinery does (an empty name part is both
/// "must be non-empty" and a pattern failure).
pub(crate) fn qualified_name_errors(field: &str, s: &str) -> Vec<Cause> {
    let parts: Vec<&str> = s.split('/').collect();
    let mut out = Vec::new();
    let name = match parts[..] {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                out.push(Cause::invalid(field, s, "prefix part must be non-empty"));
            } else {
                if prefix.len() > 253 {
                    out.push(Cause::invalid(field, s, "prefix part must be no more than 253 characters"));
                }
                if !prefix.split('.').all(is_dns1123_label_any_len) {
                    out.push(Cause::invalid(field, s, format!("prefix part {DNS1123_SUBDOMAIN_MSG}")));
                }
            }
            name
        }
        _ => {
            out.push(Cause::invalid(
                field,
                s,
                format!(
                    "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                    QUALIFIED_NAME_MSG.trim_start_matches("name part ")
                ),
            ));
            return out;
        }
    };
    if name.is_empty() {
        out.push(Cause::invalid(field, s, "name part must be non-empty"));
    } else if name.len() > 63 {
        out.push(Cause::invalid(field, s, "name part must be no more than 63 characters"));
    }
    if !matches_qualified_name_part(name) {
        out.push(Cause::invalid(field, s, QUALIFIED_NAME_MSG));
    }
    out
}

/// `validation.IsConfigMapKey`.
fn config_key_errors(field: &str, key: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    if key.len() > 253 {
        out.push(Cause::invalid(field, key, "must be no more than 253 characters"));
    }
    if key.is_empty() || !key.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')) {
        out.push(Cause::invalid(field, key, CONFIG_KEY_MSG));
    }
    if key == "." {
        out.push(Cause::invalid(field, key, "must not be '.'"));
    } else if key == ".." {
        out.push(Cause::invalid(field, key, "must not be '..'"));
    } else if key.starts_with("..") {
        out.push(Cause::invalid(field, key, "must not start with '..'"));
    }
    out
}

/// The message Go's `encoding/json` gives when `bytes` is not a JSON object
/// (the apiserver unmarshals `.dockerconfigjson` into `map[string]interface{}`
/// and reports that error). `None` when Go would accept it (an object or `null`).
pub(crate) fn go_json_object_error(bytes: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(_)) | Ok(Value::Null) => None,
        Ok(v) => {
            let t = match v {
                Value::Bool(_) => "bool",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                _ => "array",
            };
            Some(format!("json: cannot unmarshal {t} into Go value of type map[string]interface {{}}"))
        }
        Err(e) => Some(go_json_syntax_error(bytes, &e)),
    }
}

/// Renders a serde_json syntax error in the words of Go's `encoding/json` scanner.
pub(crate) fn go_json_syntax_error(bytes: &[u8], e: &serde_json::Error) -> String {
    if e.is_eof() || bytes.iter().all(u8::is_ascii_whitespace) {
        return "unexpected end of JSON input".to_string();
    }
    // Locate the offending byte from serde's 1-based line/column.
    let mut line = 1;
    let mut offset = 0;
    for (i, b) in bytes.iter().enumerate() {
        if line == e.line() {
            offset = i;
            break;
        }
        if *b == b'\n' {
            line += 1;
        }
    }
    let idx = (offset + e.column().saturating_sub(1)).min(bytes.len().saturating_sub(1));
    let c = String::from_utf8_lossy(&bytes[idx..]).chars().next().unwrap_or(' ');
    let quoted = match c {
        '\'' => "'\\''".to_string(),
        '"' => "'\"'".to_string(),
        '\n' => "'\\n'".to_string(),
        '\t' => "'\\t'".to_string(),
        '\r' => "'\\r'".to_string(),
        c => format!("'{c}'"),
    };
    let msg = e.to_string();
    let context = if msg.starts_with("trailing characters") {
        "after top-level value"
    } else if msg.starts_with("expected `:`") {
        "after object key"
    } else if msg.starts_with("expected `,` or `}`") {
        "after object key:value pair"
    } else if msg.starts_with("expected `,` or `]`") {
        "after array element"
    } else if msg.starts_with("key must be a string") {
        "looking for beginning of object key string"
    } else if msg.starts_with("control character") {
        "in string literal"
    } else if msg.starts_with("expected ident") {
        // Inside `null`, `true` or `false`: Go names the literal and the byte it wanted.
        let start = bytes[..idx].iter().rposition(|b| !b.is_ascii_alphabetic()).map_or(0, |p| p + 1);
        let lit = match bytes.get(start) {
            Some(b't') => "true",
            Some(b'f') => "false",
            _ => "null",
        };
        let want = lit.as_bytes().get(idx - start).map_or('?', |b| *b as char);
        return format!("invalid character {quoted} in literal {lit} (expecting '{want}')");
    } else {
        "looking for beginning of value"
    };
    format!("invalid character {quoted} {context}")
}

/// Go's layout for `metav1.MicroTime`.
const RFC3339_MICRO: &str = "2006-01-02T15:04:05.000000Z07:00";

fn obj_pointer_mut<'a>(map: &'a mut Map<String, Value>, pointer: &str) -> Option<&'a mut Value> {
    let mut parts = pointer.trim_start_matches('/').split('/');
    let mut cur = map.get_mut(parts.next()?)?;
    for p in parts {
        cur = cur.get_mut(p)?;
    }
    Some(cur)
}

/// Parses `text` as Go's `time.Parse(RFC3339Micro, text)` does and returns
/// it in UTC with six fractional digits, or Go's error detail
/// (`cannot parse "REST" as "ELEMENT"`).
fn parse_micro_time(text: &str) -> Result<String, String> {
    let cannot = |rest: &str, elem: &str| format!("cannot parse \"{rest}\" as \"{elem}\"");
    let (date_time, rest) = text.split_at(text.len().min(19));
    if date_time.len() < 19 || humantime::parse_rfc3339(&format!("{date_time}Z")).is_err() {
        return Err(cannot(text, "2006"));
    }
    let digits = rest.strip_prefix('.').filter(|r| r.len() >= 6 && r.as_bytes()[..6].iter().all(u8::is_ascii_digit));
    let Some(digits) = digits else { return Err(cannot(rest, ".000000")) };
    let (micros, zone) = digits.split_at(6);
    let offset_secs: i64 = if zone == "Z" {
        0
    } else {
        let b = zone.as_bytes();
        let valid = b.len() == 6
            && (b[0] == b'+' || b[0] == b'-')
            && b[3] == b':'
            && [1, 2, 4, 5].iter().all(|&i| b[i].is_ascii_digit());
        if !valid {
            return Err(cannot(zone, "Z07:00"));
        }
        let hours: i64 = zone[1..3].parse().expect("digits");
        let minutes: i64 = zone[4..6].parse().expect("digits");
        let sign = if b[0] == b'-' { -1 } else { 1 };
        sign * (hours * 3600 + minutes * 60)
    };
    let local = humantime::parse_rfc3339(&format!("{date_time}.{micros}Z")).map_err(|_| cannot(text, "2006"))?;
    let utc = if offset_secs >= 0 {
        local - std::time::Duration::from_secs(offset_secs as u64)
    } else {
        local + std::time::Duration::from_secs((-offset_secs) as u64)
    };
    Ok(humantime::format_rfc3339_micros(utc).to_string())
}

/// Why a written body could not be decoded into the resource's Go type.
#[derive(Debug)]
pub(crate) enum DecodeError {
    /// Go's decoder failed on a value of the wrong shape (not base64, a number
    /// where a string belongs, a bad time); the text is its error message.
    Shape(String),
    /// Refused before decoding (not an object, a kind or apiVersion of another
    /// resource): its own answer to a create, an invalid patch to a patch.
    Refused(ApiError),
}

impl DecodeError {
    /// The answer to a create (`POST`): `400 BadRequest`,
    /// `Secret in version "v1" cannot be handled as a Secret: <detail>`.
    pub fn on_create(self, res: &Resource) -> ApiError {
        match self {
            DecodeError::Shape(detail) => {
                let version = res.api_version.rsplit('/').next().unwrap_or("v1");
                ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: {}",
                    res.kind, version, res.kind, detail
                ))
            }
            DecodeError::Refused(e) => e,
        }
    }

    /// The answer to a merge patch whose result cannot be decoded
    /// (`jsonPatcher.applyPatchToCurrentObject`): `422 Invalid` with no kind
    /// or name, one cause on the field `patch` whose value is the patched
    /// document. kube-apiserver prints that document as evanphx/json-patch
    /// re-encodes it, with `managedFields`; here it is the emulator's own
    /// object with sorted keys and without them.
    pub fn on_patch(self, patched: &Value) -> ApiError {
        let detail = match self {
            DecodeError::Shape(detail) => detail,
            DecodeError::Refused(e) => e.message,
        };
        let doc = serde_json::to_string(patched).expect("json");
        ApiError::invalid("", "", "", vec![Cause::invalid("patch", &doc, detail)])
    }
}

/// Go's `encoding/json` error for a value of the wrong type.
fn unmarshal_error(v: &Value, go_field: &str, go_type: &str) -> DecodeError {
    DecodeError::Shape(format!(
        "json: cannot unmarshal {} into Go struct field {go_field} of type {go_type}",
        json_type(v)
    ))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's `encoding/json` decoding of `[]byte`: standard base64, padded, with
/// `\r` and `\n` ignored.
fn decode_go_base64(s: &str) -> Result<Vec<u8>, String> {
    // Line breaks are rare: copy the input only when there are some.
    let cleaned: std::borrow::Cow<'_, str> = if s.contains(['\r', '\n']) {
        s.chars().filter(|c| *c != '\r' && *c != '\n').collect::<String>().into()
    } else {
        s.into()
    };
    base64::engine::general_purpose::STANDARD.decode(cleaned.as_bytes()).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(i, _) => i,
            base64::DecodeError::InvalidLastSymbol(i, _) => i,
            base64::DecodeError::InvalidLength(n) => n,
            base64::DecodeError::InvalidPadding => cleaned.len().saturating_sub(1),
        };
        format!("illegal base64 data at input byte {at}")
    })
}

/// Checks a `map[string]string` field (labels, annotations, stringData, ConfigMap data).
fn check_string_map(v: Option<&Value>, go_field: &str) -> Result<(), DecodeError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) => {
            for val in m.values() {
                if !val.is_string() && !val.is_null() {
                    return Err(unmarshal_error(val, go_field, "string"));
                }
            }
            Ok(())
        }
        Some(other) => Err(unmarshal_error(other, go_field, "map[string]string")),
    }
}

/// Checks a `map[string][]byte` field: every value a base64 string.
fn check_bytes_map(v: Option<&Value>, go_field: &str) -> Result<(), DecodeError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) => {
            for val in m.values() {
                match val {
                    Value::String(s) => {
                        decode_go_base64(s).map_err(DecodeError::Shape)?;
                    }
                    Value::Null => {}
                    other => return Err(unmarshal_error(other, go_field, "[]uint8")),
                }
            }
            Ok(())
        }
        Some(other) => Err(unmarshal_error(other, go_field, "map[string][]uint8")),
    }
}

/// Decoding checks and write-time defaulting. `obj` must already be a JSON object.
pub(crate) fn normalize(res: &Resource, obj: &mut Value) -> Result<(), DecodeError> {
    let Some(map) = obj.as_object_mut() else {
        return Err(DecodeError::Refused(ApiError::bad_request(format!(
            "json: cannot unmarshal {} into Go value of type struct",
            json_type(obj)
        ))));
    };
    if let Some(k) = map.get("kind").and_then(Value::as_str) {
        if !k.is_empty() && k != res.kind {
            return Err(DecodeError::Refused(ApiError::bad_request(format!(
                "the kind in the body ({k}) does not match the kind on the URL ({})",
                res.kind
            ))));
        }
    }
    if let Some(v) = map.get("apiVersion").and_then(Value::as_str) {
        if !v.is_empty() && v != res.api_version {
            return Err(DecodeError::Refused(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                res.api_version
            ))));
        }
    }
    map.insert("kind".into(), json!(res.kind));
    map.insert("apiVersion".into(), json!(res.api_version));
    match map.get("metadata") {
        None | Some(Value::Null) => {
            map.insert("metadata".into(), json!({}));
        }
        Some(Value::Object(_)) => {}
        Some(other) => return Err(unmarshal_error(other, &format!("{}.metadata", res.kind), "v1.ObjectMeta")),
    }
    check_string_map(map.get("metadata").and_then(|m| m.get("labels")), "ObjectMeta.metadata.labels")?;
    check_string_map(map.get("metadata").and_then(|m| m.get("annotations")), "ObjectMeta.metadata.annotations")?;
    // Null-valued map entries are dropped by Go's decoder for map[string]string,
    // and an empty map is not stored or returned (`json:",omitempty"`).
    for field in ["labels", "annotations"] {
        let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) else { continue };
        if let Some(Value::Object(m)) = meta.get_mut(field) {
            m.retain(|_, v| !v.is_null());
        }
        if meta.get(field).is_some_and(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty)) {
            meta.remove(field);
        }
    }

    match res.plural {
        "secrets" => {
            check_bytes_map(map.get("data"), "Secret.data")?;
            check_string_map(map.get("stringData"), "Secret.stringData")?;
            if let Some(t) = map.get("type") {
                if !t.is_string() && !t.is_null() {
                    return Err(unmarshal_error(t, "Secret.type", "v1.SecretType"));
                }
            }
            // stringData is write-only: merged into data, never stored or returned.
            if let Some(Value::Object(sd)) = map.remove("stringData") {
                let data = map.entry("data").or_insert_with(|| Value::Object(Map::new()));
                if data.is_null() {
                    *data = Value::Object(Map::new());
                }
                let data = data.as_object_mut().expect("checked above");
                for (k, v) in sd {
                    if let Value::String(s) = v {
                        data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(s)));
                    }
                }
            }
            if let Some(Value::Object(d)) = map.get_mut("data") {
                d.retain(|_, v| !v.is_null());
            }
            if map.get("data").is_some_and(|d| d.as_object().is_some_and(|m| m.is_empty()) || d.is_null()) {
                map.remove("data");
            }
            if map.get("type").and_then(Value::as_str).unwrap_or("").is_empty() {
                map.insert("type".into(), json!("Opaque"));
            }
        }
        "events" => {
            // metav1.MicroTime fields: decoded with Go's RFC3339Micro layout,
            // so exactly six fractional digits; stored in UTC.
            for pointer in ["/eventTime", "/series/lastObservedTime"] {
                let Some(field) = obj_pointer_mut(map, pointer) else { continue };
                let Some(text) = field.as_str() else { continue };
                if text.is_empty() {
                    continue;
                }
                let utc = parse_micro_time(text).map_err(|detail| {
                    DecodeError::Shape(format!("parsing time \"{text}\" as \"{RFC3339_MICRO}\": {detail}"))
                })?;
                *field = json!(utc);
            }
            // What Go's encoder writes back for an events.k8s.io/v1 Event:
            // `omitempty` strings and counts are left out, the struct-typed
            // `regarding` and `deprecatedSource` are always there (`{}` when
            // empty), and the two `metav1.Time` fields are `null` when unset.
            for field in ["reportingController", "reportingInstance", "action", "reason", "note", "type"] {
                if map.get(field).is_some_and(|v| v.as_str() == Some("") || v.is_null()) {
                    map.remove(field);
                }
            }
            if map.get("deprecatedCount").is_some_and(|v| v.as_i64() == Some(0) || v.is_null()) {
                map.remove("deprecatedCount");
            }
            for field in ["series", "related"] {
                if map.get(field).is_some_and(Value::is_null) {
                    map.remove(field);
                }
            }
            for field in ["regarding", "deprecatedSource"] {
                let value = map.entry(field).or_insert_with(|| json!({}));
                if value.is_null() {
                    *value = json!({});
                }
            }
            // `related` is a pointer: absent stays absent.
            for field in ["regarding", "deprecatedSource", "related"] {
                if let Some(Value::Object(m)) = map.get_mut(field) {
                    m.retain(|_, v| !(v.is_null() || v.as_str() == Some("")));
                }
            }
            for field in ["deprecatedFirstTimestamp", "deprecatedLastTimestamp"] {
                map.entry(field).or_insert(Value::Null);
            }
        }
        "serviceaccounts" => {
            // `secrets` ([]ObjectReference, reduced to the name by the
            // strategy's cleanSecretReferences) and `imagePullSecrets`
            // ([]LocalObjectReference): `name` is `omitempty`, so `{"name": ""}`
            // is stored as `{}`; other keys are dropped; an empty list is not kept.
            for (field, item_type) in [("secrets", "ObjectReference"), ("imagePullSecrets", "LocalObjectReference")] {
                let items = match map.get(field) {
                    None | Some(Value::Null) => None,
                    Some(Value::Array(items)) => Some(items),
                    Some(other) => {
                        return Err(unmarshal_error(
                            other,
                            &format!("ServiceAccount.{field}"),
                            &format!("[]v1.{item_type}"),
                        ))
                    }
                };
                let Some(items) = items else {
                    map.remove(field);
                    continue;
                };
                let mut kept = Vec::with_capacity(items.len());
                for item in items {
                    let name = match item {
                        Value::Null => None,
                        Value::Object(m) => match m.get("name") {
                            None | Some(Value::Null) => None,
                            Some(Value::String(n)) => Some(n.clone()),
                            Some(other) => {
                                return Err(unmarshal_error(other, &format!("{item_type}.{field}.name"), "string"))
                            }
                        },
                        other => {
                            return Err(unmarshal_error(
                                other,
                                &format!("ServiceAccount.{field}"),
                                &format!("v1.{item_type}"),
                            ))
                        }
                    };
                    kept.push(match name.filter(|n| !n.is_empty()) {
                        Some(n) => json!({"name": n}),
                        None => json!({}),
                    });
                }
                if kept.is_empty() {
                    map.remove(field);
                } else {
                    map.insert(field.into(), Value::Array(kept));
                }
            }
        }
        "namespaces" => {
            let name =
                map.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("").to_string();
            let meta = map.get_mut("metadata").and_then(Value::as_object_mut).expect("object");
            let labels = meta.entry("labels").or_insert_with(|| Value::Object(Map::new()));
            if !labels.is_object() {
                *labels = Value::Object(Map::new());
            }
            if !name.is_empty() {
                labels["kubernetes.io/metadata.name"] = json!(name);
            }
            let spec = map.entry("spec").or_insert_with(|| json!({}));
            if spec.get("finalizers").is_none() {
                spec["finalizers"] = json!(["kubernetes"]);
            }
            let status = map.entry("status").or_insert_with(|| json!({}));
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

fn meta_errors(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let name = str_at(obj, "/metadata/name");
    if name.is_empty() {
        out.push(Cause::required("metadata.name", "name or generateName is required"));
    } else {
        out.extend(subdomain_errors("metadata.name", name));
    }
    if let Some(Value::Object(labels)) = obj.pointer("/metadata/labels") {
        for (k, v) in labels {
            out.extend(qualified_name_errors("metadata.labels", k));
            out.extend(label_value_errors("metadata.labels", v.as_str().unwrap_or("")));
        }
    }
    if let Some(Value::Object(ann)) = obj.pointer("/metadata/annotations") {
        let mut total = 0;
        for (k, v) in ann {
            out.extend(qualified_name_errors("metadata.annotations", &k.to_lowercase()));
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > TOTAL_ANNOTATION_SIZE_LIMIT {
            out.push(Cause {
                reason: "FieldValueTooLong",
                field: "metadata.annotations".into(),
                message: format!("Too long: must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"),
            });
        }
    }
    out
}

fn decoded_data(obj: &Value, field: &str) -> Vec<(String, Vec<u8>)> {
    obj.get(field)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter().map(|(k, v)| (k.clone(), decode_go_base64(v.as_str().unwrap_or("")).unwrap_or_default())).collect()
        })
        .unwrap_or_default()
}

fn secret_errors(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let data = decoded_data(obj, "data");
    let mut total = 0;
    for (k, v) in &data {
        out.extend(config_key_errors(&format!("data[{k}]"), k));
        total += v.len();
    }
    if total > MAX_SECRET_SIZE {
        out.push(Cause::too_long("data", MAX_SECRET_SIZE));
    }
    // The docker config types must hold their key, and it must be a JSON object.
    let docker_key = match str_at(obj, "/type") {
        "kubernetes.io/dockerconfigjson" => Some(".dockerconfigjson"),
        "kubernetes.io/dockercfg" => Some(".dockercfg"),
        _ => None,
    };
    if let Some(key) = docker_key {
        let field = format!("data[{key}]");
        match data.iter().find(|(k, _)| k == key) {
            None => out.push(Cause::required(field, "")),
            Some((_, bytes)) => {
                if let Some(e) = go_json_object_error(bytes) {
                    out.push(Cause::invalid(field, "<secret contents redacted>", e));
                }
            }
        }
    }
    out
}

/// `ValidateEventCreate` for `events.k8s.io/v1` (pkg/apis/core/validation/events.go),
/// in its order: the legacy checks every Event passes, then the strict ones.
/// Field paths are those of the internal core Event the apiserver validates:
/// `note` is reported as `message`, `regarding` as `involvedObject`,
/// `deprecatedSource` as `source`, `deprecatedFirstTimestamp` as `firstTimestamp`.
fn event_errors(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let ns = str_at(obj, "/metadata/namespace");
    let regarding_ns = str_at(obj, "/regarding/namespace");
    let mismatch = |value: &str| Cause::invalid("involvedObject.namespace", value, "does not match event.namespace");
    // legacyValidateEvent: without an eventTime the Event is taken for an
    // old-style one and only its namespace is checked; the reporting fields
    // are checked only when eventTime is set.
    if str_at(obj, "/eventTime").is_empty() {
        if regarding_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                out.push(mismatch(regarding_ns));
            }
        } else if ns != regarding_ns {
            out.push(mismatch(regarding_ns));
        }
    } else {
        if regarding_ns.is_empty() && ns != "default" && ns != "kube-system" {
            out.push(mismatch(regarding_ns));
        }
        let controller = str_at(obj, "/reportingController");
        if controller.is_empty() {
            out.push(Cause::required("reportingController", ""));
        }
        out.extend(qualified_name_errors("reportingController", controller));
        for (field, path, max) in
            [("reportingInstance", "/reportingInstance", 128), ("action", "/action", 128), ("reason", "/reason", 128)]
        {
            let v = str_at(obj, path);
            if v.is_empty() {
                out.push(Cause::required(field, ""));
            }
            if v.len() > max {
                out.push(Cause::invalid(field, "", format!("can have at most {max} characters")));
            }
        }
        if str_at(obj, "/note").len() > 1024 {
            out.push(Cause::invalid("message", "", "can have at most 1024 characters"));
        }
    }
    out.extend(subdomain_errors("namespace", ns));
    // The strict checks of events.k8s.io/v1.
    out.extend(meta_errors(obj));
    if let Some(series) = obj.get("series").filter(|s| !s.is_null()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            out.push(Cause::invalid("series.count", "", "should be at least 2"));
        }
        if str_at(series, "/lastObservedTime").is_empty() {
            out.push(Cause::required("series.lastObservedTime", ""));
        }
    }
    if str_at(obj, "/eventTime").is_empty() {
        out.push(Cause::required("eventTime", ""));
    }
    let ty = str_at(obj, "/type");
    if ty != "Normal" && ty != "Warning" {
        out.push(Cause::invalid("type", "", format!("has invalid value: {ty}")));
    }
    for (field, path) in
        [("firstTimestamp", "/deprecatedFirstTimestamp"), ("lastTimestamp", "/deprecatedLastTimestamp")]
    {
        if !str_at(obj, path).is_empty() {
            out.push(Cause::invalid(field, "", "needs to be unset"));
        }
    }
    if obj.get("deprecatedCount").and_then(Value::as_i64).unwrap_or(0) != 0 {
        out.push(Cause::invalid("count", "", "needs to be unset"));
    }
    if !str_at(obj, "/deprecatedSource/component").is_empty() || !str_at(obj, "/deprecatedSource/host").is_empty() {
        out.push(Cause::invalid("source", "", "needs to be unset"));
    }
    out
}

/// Validation of a new object (`strategy.Validate`).
pub(crate) fn validate_create(res: &Resource, obj: &Value) -> Vec<Cause> {
    match res.plural {
        "secrets" => meta_errors(obj).into_iter().chain(secret_errors(obj)).collect(),
        // The Event checks place the metadata's among their own.
        "events" => event_errors(obj),
        _ => meta_errors(obj),
    }
}

/// Validation of an update (`strategy.ValidateUpdate`): the create rules plus
/// immutability.
pub(crate) fn validate_update(res: &Resource, new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = validate_create(res, new);
    let old_uid = str_at(old, "/metadata/uid");
    let new_uid = str_at(new, "/metadata/uid");
    if new_uid != old_uid {
        out.push(Cause::invalid("metadata.uid", new_uid, "field is immutable"));
    }
    match res.plural {
        "secrets" => {
            let (nt, ot) = (str_at(new, "/type"), str_at(old, "/type"));
            if nt != ot {
                out.push(Cause::invalid("type", nt, "field is immutable"));
            }
        }
        "events" => {
            for field in [
                "action",
                "reason",
                "regarding",
                "related",
                "reportingController",
                "reportingInstance",
                "type",
                "eventTime",
            ] {
                if new.get(field) != old.get(field) {
                    out.push(Cause::invalid(field, "", "field is immutable"));
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod micro_time_tests {
    use super::parse_micro_time;

    /// What kube-apiserver v1.34.4 answered for an Event's eventTime.
    #[test]
    fn event_times_decode_as_the_api_server_decodes_them() {
        assert_eq!(parse_micro_time("2026-11-27T11:00:00.123456Z").unwrap(), "2026-11-27T11:00:00.123456Z");
        assert_eq!(parse_micro_time("2026-11-27T11:00:00.123456+01:00").unwrap(), "2026-11-27T10:00:00.123456Z");
        assert_eq!(parse_micro_time("2026-11-27T11:00:00Z").unwrap_err(), r#"cannot parse "Z" as ".000000""#);
        assert_eq!(parse_micro_time("2026-11-27T11:00:00.123Z").unwrap_err(), r#"cannot parse ".123Z" as ".000000""#);
        assert_eq!(
            parse_micro_time("2026-11-27T11:00:00.123456789Z").unwrap_err(),
            r#"cannot parse "789Z" as "Z07:00""#
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_json_messages() {
        assert_eq!(go_json_object_error(b"{}"), None);
        assert_eq!(go_json_object_error(b"null"), None);
        assert_eq!(
            go_json_object_error(b"not json"),
            Some("invalid character 'o' in literal null (expecting 'u')".into())
        );
        assert_eq!(go_json_object_error(b"hello"), Some("invalid character 'h' looking for beginning of value".into()));
        assert_eq!(go_json_object_error(b"{\"a\":1"), Some("unexpected end of JSON input".into()));
        assert_eq!(
            go_json_object_error(b"[1]"),
            Some("json: cannot unmarshal array into Go value of type map[string]interface {}".into())
        );
        assert_eq!(go_json_object_error(b"{} x"), Some("invalid character 'x' after top-level value".into()));
    }

    #[test]
    fn names() {
        assert!(subdomain_errors("n", "gcr-pull.example").is_empty());
        assert!(!subdomain_errors("n", "Gcr").is_empty());
        assert!(!subdomain_errors("n", "-a").is_empty());
        assert!(config_key_errors("k", ".dockerconfigjson").is_empty());
        assert!(!config_key_errors("k", "a/b").is_empty());
        assert!(!config_key_errors("k", "..x").is_empty());
    }
}
