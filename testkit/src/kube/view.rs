//! What a response shows, as negotiated from `Accept`: the whole object, or
//! only its metadata (`meta.k8s.io/v1` `PartialObjectMetadata[List]`, what
//! kube-rs' `list_metadata`, `watch_metadata` and `metadata_watcher` ask for).
//!
//! The apiserver negotiates before it acts (an unacceptable `Accept` on a
//! PATCH is a 406 and nothing is written) and transforms the result after:
//! asking for the list form of a single object, or the single form of a list,
//! is a 406 as well. The emulator speaks JSON only; YAML, protobuf and `Table`
//! are refused with 406 rather than answered in JSON.

use std::borrow::Cow;

use serde_json::{json, Value};

use super::resources::Resource;
use super::status::ApiError;

/// The representation a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum View {
    Full,
    /// `as=PartialObjectMetadata;g=meta.k8s.io;v=v1`
    Metadata,
    /// `as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`
    MetadataList,
}

const META_API_VERSION: &str = "meta.k8s.io/v1";

impl View {
    /// Picks the first acceptable clause of an `Accept` header, by `q` (highest
    /// first, header order among equals); no header means the whole object.
    pub fn negotiate(accept: Option<&str>) -> Result<View, ApiError> {
        let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
            return Ok(View::Full);
        };
        let mut clauses: Vec<(f32, Option<View>)> = accept
            .split(',')
            .map(|clause| {
                let mut parts = clause.split(';').map(str::trim);
                let media_type = parts.next().unwrap_or("").to_ascii_lowercase();
                let (mut q, mut target) = (1.0, (None, None, None));
                for p in parts {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    match k {
                        "q" => q = v.parse().unwrap_or(0.0),
                        "as" => target.0 = Some(v),
                        "g" => target.1 = Some(v),
                        "v" => target.2 = Some(v),
                        _ => {}
                    }
                }
                let json = matches!(media_type.as_str(), "application/json" | "application/*" | "*/*");
                let view = match target {
                    _ if !json => None,
                    (None, None, None) => Some(View::Full),
                    (Some("PartialObjectMetadata"), Some("meta.k8s.io"), Some("v1")) => Some(View::Metadata),
                    (Some("PartialObjectMetadataList"), Some("meta.k8s.io"), Some("v1")) => Some(View::MetadataList),
                    _ => None,
                };
                (q, view)
            })
            .filter(|(q, _)| *q > 0.0)
            .collect();
        clauses.sort_by(|a, b| b.0.total_cmp(&a.0));
        clauses.into_iter().find_map(|(_, v)| v).ok_or_else(|| {
            ApiError::new(406, "NotAcceptable", "only the following media types are accepted: application/json")
        })
    }

    /// A single object (GET, or the result of a write) as this view shows it.
    pub fn object(self, res: &Resource, obj: Value) -> Result<Value, ApiError> {
        match self {
            View::Full => Ok(obj),
            View::Metadata => Ok(partial(&obj)),
            View::MetadataList => Err(ApiError::new(
                406,
                "NotAcceptable",
                format!(
                    "you requested PartialObjectMetadataList, but the requested object is not a list (*core.{})",
                    res.kind
                ),
            )),
        }
    }

    /// A LIST body (`items` already without kind and apiVersion) as this view shows it.
    pub fn list(self, res: &Resource, metadata: Value, items: Vec<Value>) -> Result<Value, ApiError> {
        match self {
            View::Full => Ok(json!({
                "kind": res.list_kind,
                "apiVersion": res.api_version,
                "metadata": metadata,
                "items": items,
            })),
            View::Metadata => Err(ApiError::new(
                406,
                "NotAcceptable",
                format!(
                    "you requested PartialObjectMetadata, but the requested object is a list (*core.{})",
                    res.list_kind
                ),
            )),
            // An empty one says `"items": null` there (a nil Go slice, not
            // `omitempty`), where a full list says `[]`.
            View::MetadataList => Ok(json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": META_API_VERSION,
                "metadata": metadata,
                "items": (!items.is_empty()).then(|| items.iter().map(partial).collect::<Vec<_>>()),
            })),
        }
    }

    /// The object of a watch event; `None` when this view cannot show it (a
    /// watch asked for lists: the apiserver fails to encode the first event and
    /// ends the stream without writing it).
    pub fn event_object(self, obj: &Value) -> Option<Cow<'_, Value>> {
        match self {
            View::Full => Some(Cow::Borrowed(obj)),
            View::Metadata => Some(Cow::Owned(partial(obj))),
            View::MetadataList => None,
        }
    }

    /// The `kind` and `apiVersion` of a BOOKMARK event's object.
    pub fn bookmark_type(self, res: &Resource) -> (&'static str, &'static str) {
        match self {
            View::Full => (res.kind, res.api_version),
            View::Metadata | View::MetadataList => ("PartialObjectMetadata", META_API_VERSION),
        }
    }
}

fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": META_API_VERSION, "metadata": obj["metadata"]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_like_the_api_server() {
        let meta_list = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(View::negotiate(None).unwrap(), View::Full);
        assert_eq!(View::negotiate(Some("*/*")).unwrap(), View::Full);
        assert_eq!(View::negotiate(Some(meta_list)).unwrap(), View::MetadataList);
        assert_eq!(View::negotiate(Some(&format!("{meta_list}, application/json"))).unwrap(), View::MetadataList);
        assert_eq!(View::negotiate(Some(&format!("{meta_list};q=0.5, application/json"))).unwrap(), View::Full);
        assert_eq!(
            View::negotiate(Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")).unwrap(),
            View::Metadata
        );
        assert_eq!(
            View::negotiate(Some("application/json;as=Foo;g=meta.k8s.io;v=v1, application/json")).unwrap(),
            View::Full
        );
        for refused in [
            "application/json;as=PartialObjectMetadataList",
            "application/json;as=PartialObjectMetadataList;g=other;v=v1",
            "application/json;as=Table;g=meta.k8s.io;v=v1",
            "application/json;g=meta.k8s.io;v=v1",
            "application/vnd.kubernetes.protobuf",
            "text/plain",
            "application/json;q=0",
        ] {
            let e = View::negotiate(Some(refused)).unwrap_err();
            assert_eq!((e.code, e.reason), (406, "NotAcceptable"), "{refused}");
        }
    }
}
