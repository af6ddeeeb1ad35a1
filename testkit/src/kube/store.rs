//! The object store: what etcd plus the generic registry do for the apiserver.
//!
//! One global, strictly increasing resourceVersion (like etcd's revision) is
//! stamped on every write; every change is appended to a history that watches
//! replay from any resourceVersion still retained. All writes go through
//! [`Store::commit`] / [`Store::remove`] so that HTTP writes and the test's
//! direct seeding ("someone else" writing) produce identical watch events.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::resources::{self, Resource};
use super::status::ApiError;
use super::validate;

/// `(plural, namespace, name)`; namespace is empty for cluster-scoped objects.
pub(crate) type Key = (&'static str, String, String);

/// How many changes watches can replay; older resourceVersions are "too old" (410).
const HISTORY_LIMIT: usize = 50_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One entry of the watch history.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub res: &'static Resource,
    pub ns: String,
    pub kind: ChangeType,
    /// The object after the change (for deletions: its last state, stamped with
    /// the deletion's resourceVersion, as the apiserver sends it).
    pub object: Value,
    /// The object before the change, for selector transitions.
    pub old: Option<Value>,
}

pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Change>,
    /// Changes with `rv <= compacted` are gone from `history`.
    compacted: u64,
    notify: watch::Sender<u64>,
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

pub(crate) fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-4{}-{:x}{}-{}", &h[0..8], &h[8..12], &h[13..16], 8 | (b[8] & 3), &h[17..20], &h[20..32])
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str).unwrap_or("")
}

impl Store {
    pub fn new(notify: watch::Sender<u64>) -> Store {
        let mut s = Store { rv: 0, objects: BTreeMap::new(), history: VecDeque::new(), compacted: 0, notify };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            s.seed("", &resources::NAMESPACES, json!({"metadata": {"name": ns}}));
        }
        s
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Drops the whole watch history, as an etcd compaction would.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    pub fn changes_after(&self, rv: u64) -> impl Iterator<Item = &Change> {
        let start = self.history.partition_point(|c| c.rv <= rv);
        self.history.range(start..)
    }

    pub fn get(&self, res: &'static Resource, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(res.plural, ns.to_string(), name.to_string()))
    }

    /// Objects of a resource, in etcd key order; `ns = None` for all namespaces.
    pub fn list<'a>(&'a self, res: &'static Resource, ns: Option<&'a str>) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .range((res.plural, String::new(), String::new())..)
            .take_while(move |((p, _, _), _)| *p == res.plural)
            .filter(move |((_, n, _), _)| ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
    }

    pub fn namespace_active(&self, ns: &str) -> Result<(), ApiError> {
        match self.get(&resources::NAMESPACES, "", ns) {
            None => Err(ApiError::not_found(&resources::NAMESPACES, ns)),
            Some(n) if n.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") => {
                Err(ApiError::forbidden(format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// Stores `obj` (already complete apart from resourceVersion), records the
    /// change and wakes watchers. Returns the stored object.
    fn commit(&mut self, res: &'static Resource, ns: &str, mut obj: Value) -> Value {
        let key = (res.plural, ns.to_string(), meta_str(&obj, "name").to_string());
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let old = self.objects.insert(key, obj.clone());
        self.push_change(Change {
            rv: self.rv,
            res,
            ns: ns.to_string(),
            kind: if old.is_some() { ChangeType::Modified } else { ChangeType::Added },
            object: obj.clone(),
            old,
        });
        obj
    }

    /// Removes an object, recording a DELETED change.
    fn remove(&mut self, res: &'static Resource, ns: &str, name: &str) -> Option<Value> {
        let key = (res.plural, ns.to_string(), name.to_string());
        let mut obj = self.objects.remove(&key)?;
        self.rv += 1;
        let old = obj.clone();
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.push_change(Change {
            rv: self.rv,
            res,
            ns: ns.to_string(),
            kind: ChangeType::Deleted,
            object: obj,
            old: Some(old.clone()),
        });
        Some(old)
    }

    fn push_change(&mut self, c: Change) {
        self.history.push_back(c);
        while self.history.len() > HISTORY_LIMIT {
            if let Some(c) = self.history.pop_front() {
                self.compacted = c.rv;
            }
        }
        self.notify.send_replace(self.rv);
    }

    // ----- "someone else" writes (test helpers): no validation, no ownership -----

    /// Creates or overwrites an object directly. Server-set fields (uid,
    /// creationTimestamp) are kept from the existing object or generated.
    pub fn seed(&mut self, ns: &str, res: &'static Resource, mut obj: Value) -> Value {
        if !obj.is_object() {
            obj = json!({});
        }
        if validate::normalize(res, &mut obj).is_err() {
            obj["kind"] = json!(res.kind);
            obj["apiVersion"] = json!(res.api_version);
        }
        let ns = if res.namespaced { ns } else { "" };
        if res.namespaced {
            obj["metadata"]["namespace"] = json!(ns);
        }
        let name = meta_str(&obj, "name").to_string();
        match self.get(res, ns, &name) {
            Some(cur) => {
                let uid = meta_str(cur, "uid").to_string();
                let ts = meta_str(cur, "creationTimestamp").to_string();
                obj["metadata"]["uid"] = json!(uid);
                obj["metadata"]["creationTimestamp"] = json!(ts);
            }
            None => {
                if meta_str(&obj, "uid").is_empty() {
                    obj["metadata"]["uid"] = json!(new_uid());
                }
                if meta_str(&obj, "creationTimestamp").is_empty() {
                    obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
                }
            }
        }
        self.commit(res, ns, obj)
    }

    /// Deletes an object directly; deleting a namespace deletes its contents.
    pub fn unseed(&mut self, res: &'static Resource, ns: &str, name: &str) -> Option<Value> {
        if res.plural == "namespaces" {
            return self.delete_namespace(name);
        }
        self.remove(res, ns, name)
    }

    // ----- API writes -----

    /// POST: create.
    pub fn create(&mut self, res: &'static Resource, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        validate::normalize(res, &mut obj).map_err(|e| e.on_create(res))?;
        check_namespace(res, ns, &mut obj)?;
        if !meta_str(&obj, "resourceVersion").is_empty() {
            return Err(ApiError::unclassified("resourceVersion should not be set on objects to be created"));
        }
        self.namespace_active(ns)?;
        let name = meta_str(&obj, "name").to_string();
        let causes = validate::validate_create(res, &obj);
        if !causes.is_empty() {
            return Err(ApiError::invalid_resource(res, &name, causes));
        }
        if self.get(res, ns, &name).is_some() {
            return Err(ApiError::already_exists(res, &name));
        }
        let m = obj["metadata"].as_object_mut().expect("object");
        m.insert("uid".into(), json!(new_uid()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        for server_set in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"] {
            m.remove(server_set);
        }
        Ok(self.commit(res, ns, obj))
    }

    /// PATCH with an RFC 7386 merge patch, with optimistic concurrency when
    /// the patch sets `metadata.resourceVersion`.
    pub fn merge_patch(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let Some(current) = self.get(res, ns, name).cloned() else {
            return Err(ApiError::not_found(res, name));
        };
        let mut obj = current.clone();
        merge(&mut obj, patch);
        // The patched document is decoded like a new body, but a failure is
        // reported as an invalid patch (422), not as a bad request.
        let patched = obj.clone();
        validate::normalize(res, &mut obj).map_err(|e| e.on_patch(&patched))?;
        if meta_str(&obj, "name") != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&obj, "name")
            )));
        }
        check_namespace(res, ns, &mut obj)?;
        let want_rv = meta_str(&obj, "resourceVersion");
        if !want_rv.is_empty() && want_rv.parse::<u64>().is_err() {
            return Err(ApiError::unclassified(format!(
                "strconv.ParseUint: parsing {}: invalid syntax",
                super::status::go_quote(want_rv)
            )));
        }
        if !want_rv.is_empty() && want_rv != meta_str(&current, "resourceVersion") {
            return Err(ApiError::conflict(res, name));
        }
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        // `rest.BeforeUpdate`: the timestamps are the server's and a change
        // to them is ignored; a patch that removes the uid keeps it, one that
        // changes it fails validation (metadata.uid is immutable).
        if meta_str(&obj, "uid").is_empty() {
            obj["metadata"]["uid"] = current["metadata"]["uid"].clone();
        }
        for server_set in ["creationTimestamp", "deletionTimestamp"] {
            match current["metadata"].get(server_set) {
                Some(v) => obj["metadata"][server_set] = v.clone(),
                None => _ = obj["metadata"].as_object_mut().expect("object").remove(server_set),
            }
        }
        let causes = validate::validate_update(res, &obj, &current);
        if !causes.is_empty() {
            return Err(ApiError::invalid_resource(res, name, causes));
        }
        if obj == current {
            // A no-op update is not written: no new resourceVersion, no event.
            return Ok(current);
        }
        Ok(self.commit(res, ns, obj))
    }

    /// DELETE, with optional `preconditions` from DeleteOptions.
    pub fn delete(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        precondition_uid: Option<&str>,
        precondition_rv: Option<&str>,
    ) -> Result<Value, ApiError> {
        let ns = if res.namespaced { ns } else { "" };
        let Some(current) = self.get(res, ns, name).cloned() else {
            return Err(ApiError::not_found(res, name));
        };
        // `rest.BeforeDelete`: UID first, then resourceVersion, each in its own words.
        for (field, label, wanted, why) in [
            ("uid", "UID", precondition_uid, "deleted and then recreated"),
            ("resourceVersion", "ResourceVersion", precondition_rv, "modified"),
        ] {
            let actual = meta_str(&current, field);
            if let Some(wanted) = wanted.filter(|w| *w != actual) {
                return Err(ApiError::precondition_conflict(
                    res,
                    name,
                    &format!(
                        "the {label} in the precondition ({wanted}) does not match the {label} in record ({actual}). The object might have been {why}"
                    ),
                ));
            }
        }
        Ok(self.remove(res, ns, name).unwrap_or(current))
    }

    /// Deletes a namespace the way the namespace controller finishes it, but at
    /// once: it turns Terminating (MODIFIED), its objects are deleted, then it
    /// is removed. Returns the Terminating object (what DELETE answers).
    fn delete_namespace(&mut self, name: &str) -> Option<Value> {
        let mut ns_obj = self.get(&resources::NAMESPACES, "", name)?.clone();
        ns_obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        ns_obj["status"]["phase"] = json!("Terminating");
        let terminating = self.commit(&resources::NAMESPACES, "", ns_obj);
        let doomed: Vec<Key> =
            self.objects.keys().filter(|(p, n, _)| *p != "namespaces" && n == name).cloned().collect();
        for (plural, ns, obj_name) in doomed {
            if let Some(res) = resources::by_plural(plural) {
                self.remove(res, &ns, &obj_name);
            }
        }
        self.remove(&resources::NAMESPACES, "", name);
        Some(terminating)
    }
}

/// The namespace of a write's body must be the URL's (or absent); it is set
/// from the URL.
fn check_namespace(res: &Resource, ns: &str, obj: &mut Value) -> Result<(), ApiError> {
    if res.namespaced {
        let body_ns = meta_str(obj, "namespace");
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        obj["metadata"]["namespace"] = json!(ns);
    }
    Ok(())
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (k, v) in patch {
        if v.is_null() {
            target.remove(k);
        } else {
            merge(target.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}
