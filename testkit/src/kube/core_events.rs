//! `/api/v1` events: the core/v1 view of the events regcred writes through
//! `events.k8s.io/v1`.
//!
//! The real API server keeps one store of events and converts between the two
//! versions; `kubectl events` and `kubectl get events` read the core/v1 one.
//! The emulator serves that view read-only (get, list, watch, with core/v1's
//! field selectors): a write through `/api/v1/.../events` is answered
//! `405 MethodNotAllowed`, a documented simplification (nothing in regcred
//! writes core/v1 events).

use serde_json::{Map, Value};

/// The fields core/v1 events expose to field selectors.
pub(crate) const FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

/// Converts a stored `events.k8s.io/v1` Event into its core/v1 form, as the
/// API server's conversion does (regarding → involvedObject, note → message,
/// reportingController → reportingComponent, deprecated* → the old fields).
pub(crate) fn to_core(event: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), "Event".into());
    out.insert("apiVersion".into(), "v1".into());
    let renames = [
        ("metadata", "metadata"),
        ("regarding", "involvedObject"),
        ("related", "related"),
        ("reason", "reason"),
        ("note", "message"),
        ("type", "type"),
        ("action", "action"),
        ("eventTime", "eventTime"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
    ];
    for (from, to) in renames {
        if let Some(v) = event.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    }
    if let Some(series) = event.get("series").and_then(Value::as_object) {
        let mut s = Map::new();
        for key in ["count", "lastObservedTime"] {
            if let Some(v) = series.get(key) {
                s.insert(key.into(), v.clone());
            }
        }
        out.insert("series".into(), Value::Object(s));
    }
    // core/v1 always carries these, empty when unset.
    out.entry("source").or_insert_with(|| Value::Object(Map::new()));
    out.entry("firstTimestamp").or_insert(Value::Null);
    out.entry("lastTimestamp").or_insert(Value::Null);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_the_fields_kubectl_events_shows() {
        let ev = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "gcr-pull.1", "namespace": "ci"},
            "eventTime": "2026-11-27T12:00:00.000000Z",
            "regarding": {"kind": "Secret", "namespace": "ci", "name": "gcr-pull"},
            "reason": "WriteFailed", "type": "Warning", "action": "Write",
            "note": "forbidden", "reportingController": "regcred", "reportingInstance": "regcred-abc",
            "series": {"count": 3, "lastObservedTime": "2026-11-27T12:05:00.000000Z"},
        });
        let core = to_core(&ev);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "gcr-pull");
        assert_eq!(core["message"], "forbidden");
        assert_eq!(core["reportingComponent"], "regcred");
        assert_eq!(core["series"]["count"], 3);
        assert_eq!(core["source"], json!({}));
        assert!(core.get("note").is_none() && core.get("regarding").is_none());
    }
}
