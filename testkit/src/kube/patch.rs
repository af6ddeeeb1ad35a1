//! PATCH flavours and field ownership (`metadata.managedFields`).
//!
//! * `application/merge-patch+json`: RFC 7386, exactly (via `json_patch::merge`).
//! * `application/json-patch+json`: RFC 6902, exactly (via `json_patch::patch`).
//! * `application/strategic-merge-patch+json`: a merge patch, except for the
//!   lists that the built-in types declare as merged by key
//!   (`ServiceAccount.secrets` / `imagePullSecrets` by `name`,
//!   `metadata.ownerReferences` by `uid`, `metadata.finalizers` as a set), and the
//!   `$patch: replace|delete`, `$deleteFromPrimitiveList/<field>` and
//!   `$setElementOrder/<field>` (ignored) directives. *Simplification*: other
//!   lists are replaced, and `$retainKeys` is ignored.
//! * `application/apply-patch+yaml` (server-side apply): *simplified*. Field
//!   ownership is tracked per manager at the granularity of leaf fields (map
//!   entries such as `data[k]`, labels, annotations, scalars; lists are atomic).
//!   An apply conflicts (409) when it sets a field owned by another manager to a
//!   different value, unless `force=true`, which takes ownership. Fields the
//!   applier owned before and omits now are removed unless another manager owns
//!   them. Non-apply writes give the writer ownership of the fields they change.
//!   Only JSON bodies are accepted (YAML that is not JSON is a 400).

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

/// A path to a leaf field: object keys from the root.
pub(crate) type FieldPath = Vec<String>;

/// One entry of `metadata.managedFields`.
#[derive(Clone, Debug)]
pub(crate) struct ManagerEntry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: &'static str,
    pub time: String,
    pub fields: BTreeSet<FieldPath>,
}

/// The leaf fields of an object that take part in ownership.
pub(crate) fn leaf_paths(obj: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for sub in ["labels", "annotations"] {
                    if let Some(Value::Object(m)) = v.get(sub) {
                        for lk in m.keys() {
                            out.insert(vec!["metadata".into(), sub.into(), lk.clone()]);
                        }
                    }
                }
                for sub in ["finalizers", "ownerReferences"] {
                    if v.get(sub).is_some_and(|x| !x.is_null()) {
                        out.insert(vec!["metadata".into(), sub.into()]);
                    }
                }
            }
            _ => collect(v, vec![k.clone()], &mut out),
        }
    }
    out
}

fn collect(v: &Value, path: FieldPath, out: &mut BTreeSet<FieldPath>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(k.clone());
                collect(child, p, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

pub(crate) fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

fn set_path(v: &mut Value, path: &[String], value: Value) {
    let mut cur = v;
    for (i, k) in path.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let m = cur.as_object_mut().expect("object");
        if i == path.len() - 1 {
            // An empty object leaf only ensures the parent exists.
            if value.as_object().is_some_and(Map::is_empty) && m.get(k).is_some_and(Value::is_object) {
                return;
            }
            m.insert(k.clone(), value);
            return;
        }
        cur = m.entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
}

fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        match cur.get_mut(k) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// How the apiserver prints a field path in conflict messages: `.data.key`.
pub(crate) fn render_path(p: &FieldPath) -> String {
    p.iter().map(|k| format!(".{k}")).collect()
}

/// `managedFields` as the API returns them (`fieldsType: FieldsV1`).
pub(crate) fn render_managed_fields(entries: &[ManagerEntry], api_version: &str) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                let mut tree = Value::Object(Map::new());
                for p in &e.fields {
                    let mut cur = &mut tree;
                    for k in p {
                        cur = cur
                            .as_object_mut()
                            .expect("object")
                            .entry(format!("f:{k}"))
                            .or_insert_with(|| Value::Object(Map::new()));
                    }
                }
                json!({
                    "manager": e.manager,
                    "operation": e.operation,
                    "apiVersion": api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": tree,
                })
            })
            .collect(),
    )
}

/// Updates ownership after a non-apply write by `manager`.
pub(crate) fn record_update(
    old: Option<&Value>,
    new: &Value,
    entries: &mut Vec<ManagerEntry>,
    manager: &str,
    now: &str,
) {
    let new_paths = leaf_paths(new);
    let changed: BTreeSet<FieldPath> =
        new_paths.iter().filter(|p| old.and_then(|o| get_path(o, p)) != get_path(new, p)).cloned().collect();
    for e in entries.iter_mut() {
        e.fields.retain(|p| new_paths.contains(p));
        if !(e.manager == manager && e.operation == "Update") {
            e.fields.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| e.manager == manager && e.operation == "Update") {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_string();
            }
            None => entries.push(ManagerEntry {
                manager: manager.to_string(),
                operation: "Update",
                time: now.to_string(),
                fields: changed,
            }),
        }
    }
    entries.retain(|e| !e.fields.is_empty());
}

/// Server-side apply of `applied` by `manager` onto `current` (None = create).
/// Returns the new object, or the conflicts as `(manager, rendered path)`.
pub(crate) fn apply(
    current: Option<&Value>,
    applied: &Value,
    entries: &mut Vec<ManagerEntry>,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, Vec<(String, String)>> {
    let applied_paths = leaf_paths(applied);
    let mut conflicts = Vec::new();
    if let Some(cur) = current {
        for p in &applied_paths {
            if get_path(cur, p) == get_path(applied, p) {
                continue;
            }
            for e in entries.iter() {
                if e.manager != manager && e.fields.contains(p) {
                    conflicts.push((e.manager.clone(), render_path(p)));
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let mut new = current.cloned().unwrap_or_else(|| {
        json!({
            "apiVersion": applied.get("apiVersion").cloned().unwrap_or(Value::Null),
            "kind": applied.get("kind").cloned().unwrap_or(Value::Null),
            "metadata": {}
        })
    });
    // Fields this manager applied before and no longer mentions are released,
    // and removed unless someone else still owns them.
    let previously: BTreeSet<FieldPath> = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for p in previously.difference(&applied_paths) {
        let owned_elsewhere =
            entries.iter().any(|e| !(e.manager == manager && e.operation == "Apply") && e.fields.contains(p));
        if !owned_elsewhere {
            remove_path(&mut new, p);
        }
    }
    for p in &applied_paths {
        if let Some(v) = get_path(applied, p) {
            set_path(&mut new, p, v.clone());
        }
    }
    // Metadata that identifies the object comes from the applied config.
    for k in ["name", "namespace", "resourceVersion", "generateName"] {
        if let Some(v) = applied.pointer(&format!("/metadata/{k}")) {
            new["metadata"][k] = v.clone();
        }
    }
    if force {
        for e in entries.iter_mut() {
            if e.manager != manager {
                e.fields.retain(|p| !applied_paths.contains(p));
            }
        }
    }
    match entries.iter_mut().find(|e| e.manager == manager && e.operation == "Apply") {
        Some(e) => {
            e.fields = applied_paths;
            e.time = now.to_string();
        }
        None => entries.push(ManagerEntry {
            manager: manager.to_string(),
            operation: "Apply",
            time: now.to_string(),
            fields: applied_paths,
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
    Ok(new)
}

/// The merge key of the lists that built-in types patch by key.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "secrets" | "imagePullSecrets" => Some("name"),
        "ownerReferences" => Some("uid"),
        _ => None,
    }
}

/// Strategic merge patch (see the module docs for what is simplified).
pub(crate) fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(pm) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if pm.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = patch.clone();
        p.as_object_mut().expect("object").remove("$patch");
        *target = p;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    for (k, v) in pm {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (target.get_mut(field), v.as_array()) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue; // $setElementOrder/..., $retainKeys, $patch: ignored here
        }
        let tm = target.as_object_mut().expect("object");
        if v.is_null() {
            tm.remove(k);
            continue;
        }
        match (tm.get_mut(k), v) {
            (Some(t @ Value::Object(_)), Value::Object(_)) => {
                if v.get("$patch").and_then(Value::as_str) == Some("delete") {
                    tm.remove(k);
                } else {
                    strategic_merge(t, v);
                }
            }
            (Some(Value::Array(tl)), Value::Array(pl)) if merge_key(k).is_some() => {
                let key = merge_key(k).expect("checked");
                for item in pl {
                    let id = item.get(key);
                    let pos = tl.iter().position(|x| x.get(key) == id && id.is_some());
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (pos, delete) {
                        (Some(i), true) => {
                            tl.remove(i);
                        }
                        (Some(i), false) => strategic_merge(&mut tl[i], item),
                        (None, true) => {}
                        (None, false) => {
                            let mut fresh = Value::Object(Map::new());
                            strategic_merge(&mut fresh, item);
                            tl.push(fresh);
                        }
                    }
                }
            }
            (Some(Value::Array(tl)), Value::Array(pl)) if k == "finalizers" => {
                for item in pl {
                    if !tl.contains(item) {
                        tl.push(item.clone());
                    }
                }
            }
            _ => {
                let mut fresh = if v.is_object() { Value::Object(Map::new()) } else { Value::Null };
                if v.is_object() {
                    strategic_merge(&mut fresh, v);
                } else {
                    fresh = strip_directives(v);
                }
                tm.insert(k.clone(), fresh);
            }
        }
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategic_merge_by_key() {
        let mut sa = json!({"secrets": [{"name": "a"}, {"name": "b"}], "metadata": {"finalizers": ["x"]}});
        strategic_merge(
            &mut sa,
            &json!({"secrets": [{"name": "c"}, {"name": "a", "$patch": "delete"}],
                    "metadata": {"finalizers": ["y"]}, "imagePullSecrets": [{"name": "p"}]}),
        );
        assert_eq!(sa["secrets"], json!([{"name": "b"}, {"name": "c"}]));
        assert_eq!(sa["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(sa["imagePullSecrets"], json!([{"name": "p"}]));
    }

    #[test]
    fn apply_conflicts_and_force() {
        let mut entries = Vec::new();
        let cur = json!({"metadata": {"name": "s"}, "data": {"a": "MQ=="}, "type": "Opaque"});
        record_update(None, &cur, &mut entries, "kubectl", "t0");
        let applied = json!({"metadata": {"name": "s"}, "data": {"a": "Mg=="}});
        let err = apply(Some(&cur), &applied, &mut entries, "regcred", false, "t1").unwrap_err();
        assert_eq!(err, vec![("kubectl".to_string(), ".data.a".to_string())]);
        let new = apply(Some(&cur), &applied, &mut entries, "regcred", true, "t1").unwrap();
        assert_eq!(new["data"]["a"], "Mg==");
        // Dropping the field from the next apply removes it (nobody else owns it).
        let applied2 = json!({"metadata": {"name": "s"}, "data": {"b": "Mw=="}});
        let new2 = apply(Some(&new), &applied2, &mut entries, "regcred", false, "t2").unwrap();
        assert_eq!(new2["data"], json!({"b": "Mw=="}));
        assert_eq!(new2["type"], "Opaque");
    }
}
