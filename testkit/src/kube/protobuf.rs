//! Request bodies in Kubernetes' protobuf encoding, decoded into the JSON the
//! rest of the emulator works with.
//!
//! kubectl's generators (`kubectl create namespace`, `kubectl create secret`,
//! `kubectl create configmap`, `kubectl create serviceaccount`) send
//! `application/vnd.kubernetes.protobuf`, which the real API server accepts.
//! The emulator decodes those four kinds: the envelope (`k8s\0` and a
//! `runtime.Unknown` carrying the type and the raw message) and the fields of
//! ObjectMeta, Namespace, Secret, ConfigMap and ServiceAccount a client sets
//! on create. A field it does not know is refused with 415 rather than
//! dropped (a documented simplification; responses are always JSON, which
//! such clients also accept).

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// Why a body could not be decoded: 400 for broken bytes, 415 for what the
/// emulator does not decode.
pub(crate) enum DecodeError {
    Malformed(String),
    Unsupported(String),
}

/// One field of a protobuf message: its number and its value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| DecodeError::Malformed("truncated varint".into()))?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(DecodeError::Malformed("varint too long".into()))
}

/// The fields of one message, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, DecodeError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let value = match key & 7 {
            0 => Field::Varint(varint(buf, &mut pos)?),
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len());
                let end = end.ok_or_else(|| DecodeError::Malformed("truncated field".into()))?;
                let bytes = &buf[pos..end];
                pos = end;
                // Go's encoder writes every non-pointer string and struct,
                // empty or not (selfLink, creationTimestamp, an empty spec);
                // empty means unset, so it is skipped here.
                if bytes.is_empty() {
                    continue;
                }
                Field::Bytes(bytes)
            }
            w => return Err(DecodeError::Malformed(format!("unexpected wire type {w}"))),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

fn string(f: &Field<'_>) -> Result<String, DecodeError> {
    match f {
        Field::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Malformed("invalid UTF-8".into())),
        Field::Varint(_) => Err(DecodeError::Malformed("expected a string".into())),
    }
}

fn bytes<'a>(f: &Field<'a>) -> Result<&'a [u8], DecodeError> {
    match f {
        Field::Bytes(b) => Ok(b),
        Field::Varint(_) => Err(DecodeError::Malformed("expected a message".into())),
    }
}

fn unsupported(what: &str, n: u64) -> DecodeError {
    DecodeError::Unsupported(format!("field {n} of {what}"))
}

/// A `map<string, V>` entry: key 1, value 2.
fn map_entry(f: &Field<'_>, value_as_base64: bool) -> Result<(String, Value), DecodeError> {
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    for (n, f) in fields(bytes(f)?)? {
        match n {
            1 => k = string(&f)?,
            2 if value_as_base64 => v = json!(base64::engine::general_purpose::STANDARD.encode(bytes(&f)?)),
            2 => v = json!(string(&f)?),
            _ => return Err(unsupported("a map entry", n)),
        }
    }
    Ok((k, v))
}

fn object_meta(buf: &[u8]) -> Result<Value, DecodeError> {
    let mut m = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Map::new(), Map::new(), Vec::new());
    for (n, f) in fields(buf)? {
        match n {
            1 => _ = m.insert("name".into(), json!(string(&f)?)),
            2 => _ = m.insert("generateName".into(), json!(string(&f)?)),
            3 => _ = m.insert("namespace".into(), json!(string(&f)?)),
            6 => _ = m.insert("resourceVersion".into(), json!(string(&f)?)),
            // generation 0 (always encoded) and creationTimestamp (set by the server).
            7 if matches!(f, Field::Varint(0)) => {}
            8 => {}
            11 => {
                let (k, v) = map_entry(&f, false)?;
                labels.insert(k, v);
            }
            12 => {
                let (k, v) = map_entry(&f, false)?;
                annotations.insert(k, v);
            }
            14 => finalizers.push(json!(string(&f)?)),
            _ => return Err(unsupported("ObjectMeta", n)),
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(m))
}

/// A message every field of which must be absent (an empty spec or status).
fn empty(what: &str, buf: &[u8]) -> Result<(), DecodeError> {
    match fields(buf)?.first() {
        None => Ok(()),
        Some((n, _)) => Err(unsupported(what, *n)),
    }
}

fn object(kind: &str, buf: &[u8]) -> Result<Value, DecodeError> {
    let mut obj = Map::new();
    let mut data = Map::new();
    let mut other = Map::new();
    for (n, f) in fields(buf)? {
        match (kind, n) {
            (_, 1) => _ = obj.insert("metadata".into(), object_meta(bytes(&f)?)?),
            ("Namespace", 2) => empty("NamespaceSpec", bytes(&f)?)?,
            ("Namespace", 3) => empty("NamespaceStatus", bytes(&f)?)?,
            ("Secret", 2) | ("ConfigMap", 3) => {
                let (k, v) = map_entry(&f, true)?;
                let into = if kind == "Secret" { &mut data } else { &mut other };
                into.insert(k, v);
            }
            ("ConfigMap", 2) | ("Secret", 4) => {
                let (k, v) = map_entry(&f, false)?;
                let into = if kind == "ConfigMap" { &mut data } else { &mut other };
                into.insert(k, v);
            }
            ("Secret", 3) => _ = obj.insert("type".into(), json!(string(&f)?)),
            ("Secret", 5) | ("ConfigMap", 4) => {
                _ = obj.insert("immutable".into(), json!(matches!(f, Field::Varint(1))))
            }
            ("ServiceAccount", 3) => {
                let mut name = String::new();
                for (n, f) in fields(bytes(&f)?)? {
                    match n {
                        1 => name = string(&f)?,
                        _ => return Err(unsupported("LocalObjectReference", n)),
                    }
                }
                let list = obj.entry("imagePullSecrets").or_insert_with(|| json!([]));
                list.as_array_mut().expect("an array").push(json!({ "name": name }));
            }
            ("ServiceAccount", 4) => {
                _ = obj.insert("automountServiceAccountToken".into(), json!(matches!(f, Field::Varint(1))))
            }
            _ => return Err(unsupported(kind, n)),
        }
    }
    if !data.is_empty() {
        obj.insert("data".into(), Value::Object(data));
    }
    if !other.is_empty() {
        let key = if kind == "Secret" { "stringData" } else { "binaryData" };
        obj.insert(key.into(), Value::Object(other));
    }
    Ok(Value::Object(obj))
}

/// Decodes a `application/vnd.kubernetes.protobuf` body into the JSON object
/// it stands for.
pub(crate) fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let envelope = body.strip_prefix(b"k8s\0".as_slice()).ok_or_else(|| {
        DecodeError::Malformed(
            "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]".into(),
        )
    })?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(envelope)? {
        match n {
            1 => {
                for (n, f) in fields(bytes(&f)?)? {
                    match n {
                        1 => api_version = string(&f)?,
                        2 => kind = string(&f)?,
                        _ => return Err(unsupported("TypeMeta", n)),
                    }
                }
            }
            2 => raw = bytes(&f)?,
            // contentEncoding and contentType: empty for plain protobuf.
            3 | 4 => {
                if !string(&f)?.is_empty() {
                    return Err(DecodeError::Unsupported("an encoded raw object".into()));
                }
            }
            _ => return Err(unsupported("runtime.Unknown", n)),
        }
    }
    if api_version != "v1" || !["Namespace", "Secret", "ConfigMap", "ServiceAccount"].contains(&kind.as_str()) {
        return Err(DecodeError::Unsupported(format!("{api_version} {kind}")));
    }
    let mut obj = object(&kind, raw)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A length-delimited field (wire type 2).
    fn ld(n: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3) | 2, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [ld(1, b"v1"), ld(2, kind.as_bytes())].concat();
        [b"k8s\0".to_vec(), ld(1, &type_meta), ld(2, raw), ld(3, b""), ld(4, b"")].concat()
    }

    #[test]
    fn decodes_what_kubectl_create_namespace_sends() {
        let label = [ld(1, b"team"), ld(2, b"ci")].concat();
        // Empty strings and messages, and generation 0, as Go writes them.
        let meta = [ld(1, b"x"), ld(4, b""), ld(5, b""), vec![7 << 3, 0], ld(8, b""), ld(11, &label)].concat();
        let raw = [ld(1, &meta), ld(2, b""), ld(3, b"")].concat();
        let obj = decode(&envelope("Namespace", &raw)).ok().expect("decodes");
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "labels": {"team": "ci"}}})
        );
    }

    #[test]
    fn decodes_a_secret_with_data_and_type() {
        let entry = [ld(1, b".dockerconfigjson"), ld(2, b"{}")].concat();
        let raw = [ld(1, &ld(1, b"pull")), ld(2, &entry), ld(3, b"kubernetes.io/dockerconfigjson")].concat();
        let obj = decode(&envelope("Secret", &raw)).ok().expect("decodes");
        assert_eq!(obj["data"][".dockerconfigjson"], "e30=");
        assert_eq!(obj["type"], "kubernetes.io/dockerconfigjson");
    }

    #[test]
    fn refuses_what_it_does_not_decode() {
        let meta = ld(13, &ld(1, b"v1")); // an ownerReference
        assert!(matches!(decode(&envelope("Namespace", &ld(1, &meta))), Err(DecodeError::Unsupported(_))));
        assert!(matches!(decode(&envelope("Pod", b"")), Err(DecodeError::Unsupported(_))));
        assert!(matches!(decode(b"{}"), Err(DecodeError::Malformed(_))));
        assert!(matches!(decode(&[b"k8s\0".as_slice(), &[0x0a, 0x05]].concat()), Err(DecodeError::Malformed(_))));
    }
}
