//! The object store: what etcd plus the generic registry do for the apiserver.
//!
//! One global, strictly increasing resourceVersion (like etcd's revision) is
//! stamped on every write; every change is appended to a history that watches
//! replay from any resourceVersion still retained. All writes go through
//! [`Store::commit`] / [`Store::remove`] so that HTTP writes and the test's
//! direct seeding ("someone else" writing) produce identical watch events.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::patch::{self, ManagerEntry};
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

/// Options common to writes.
#[derive(Clone, Debug, Default)]
pub(crate) struct WriteOpts {
    pub field_manager: String,
    pub dry_run: bool,
    /// Server-side apply's `force=true`: take ownership of conflicting fields.
    pub force: bool,
}

pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    managers: HashMap<Key, Vec<ManagerEntry>>,
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

/// What `generateName` appends: 5 characters of the apiserver's alphabet.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str).unwrap_or("")
}

/// Whether two objects are equal apart from server-maintained fields
/// (`metadata.resourceVersion` and `metadata.managedFields`): no-op detection.
/// Compares in place, without copying either object.
fn same_content(a: &Value, b: &Value) -> bool {
    const SERVER_FIELDS: &[&str] = &["resourceVersion", "managedFields"];
    fn eq_except(a: &Map<String, Value>, b: &Map<String, Value>, skip: &[&str]) -> bool {
        let kept = |m: &Map<String, Value>| m.keys().filter(|k| !skip.contains(&k.as_str())).count();
        kept(a) == kept(b) && a.iter().filter(|(k, _)| !skip.contains(&k.as_str())).all(|(k, v)| b.get(k) == Some(v))
    }
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    let Some(w) = y.get(k) else { return false };
                    match (k.as_str(), v.as_object(), w.as_object()) {
                        ("metadata", Some(vm), Some(wm)) => eq_except(vm, wm, SERVER_FIELDS),
                        // An object never equals a non-object, stripped or not.
                        _ => v == w,
                    }
                })
        }
        _ => a == b,
    }
}

impl Store {
    pub fn new(notify: watch::Sender<u64>) -> Store {
        let mut s = Store {
            rv: 0,
            objects: BTreeMap::new(),
            managers: HashMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            notify,
        };
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
    fn commit(&mut self, res: &'static Resource, ns: &str, obj: Value) -> Value {
        let name = meta_str(&obj, "name").to_string();
        let key = (res.plural, ns.to_string(), name);
        self.commit_key(res, key, obj)
    }

    /// The end of every create and update: a dry run only shows the object
    /// with its field managers; a real write records them and commits.
    fn finish_write(
        &mut self,
        res: &'static Resource,
        key: Key,
        mut obj: Value,
        entries: Vec<ManagerEntry>,
        dry_run: bool,
    ) -> Value {
        if dry_run {
            obj["metadata"]["managedFields"] = patch::render_managed_fields(&entries, res.api_version);
            return obj;
        }
        self.managers.insert(key.clone(), entries);
        self.commit_key(res, key, obj)
    }

    fn commit_key(&mut self, res: &'static Resource, key: Key, mut obj: Value) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        match self.managers.get(&key).filter(|e| !e.is_empty()) {
            None => {
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove("managedFields");
                }
            }
            Some(entries) => {
                obj["metadata"]["managedFields"] = patch::render_managed_fields(entries, res.api_version);
            }
        }
        let old = self.objects.insert(key.clone(), obj.clone());
        self.push_change(Change {
            rv: self.rv,
            res,
            ns: key.1,
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
        self.managers.remove(&key);
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
    pub fn create(
        &mut self,
        res: &'static Resource,
        ns: &str,
        mut obj: Value,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        validate::normalize(res, &mut obj)?;
        if res.namespaced {
            let body_ns = meta_str(&obj, "namespace");
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            obj["metadata"]["namespace"] = json!(ns);
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        if meta_str(&obj, "name").is_empty() && !meta_str(&obj, "generateName").is_empty() {
            let name = format!("{}{}", meta_str(&obj, "generateName"), random_suffix());
            obj["metadata"]["name"] = json!(name);
            if res.plural == "namespaces" {
                validate::normalize(res, &mut obj)?;
            }
        }
        if !meta_str(&obj, "resourceVersion").is_empty() {
            return Err(ApiError::bad_request("resourceVersion should not be set on objects to be created"));
        }
        if obj["metadata"].get("managedFields").is_some_and(|m| !m.is_null()) {
            // Clients may not claim ownership on create; the server records its own.
            obj["metadata"].as_object_mut().expect("object").remove("managedFields");
        }
        if res.namespaced {
            self.namespace_active(ns)?;
        }
        let name = meta_str(&obj, "name").to_string();
        let causes = validate::validate_create(res, &obj);
        if !causes.is_empty() {
            return Err(ApiError::invalid_resource(res, &name, causes));
        }
        let ns = if res.namespaced { ns } else { "" };
        if self.get(res, ns, &name).is_some() {
            return Err(ApiError::already_exists(res, &name));
        }
        let now = now_rfc3339();
        let m = obj["metadata"].as_object_mut().expect("object");
        m.insert("uid".into(), json!(new_uid()));
        m.insert("creationTimestamp".into(), json!(now));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("selfLink");
        if res.plural == "namespaces" {
            obj["status"] = json!({"phase": "Active"});
        }
        let key: Key = (res.plural, ns.to_string(), name);
        let mut entries = Vec::new();
        patch::record_update(None, &obj, &mut entries, &opts.field_manager, &now);
        Ok(self.finish_write(res, key, obj, entries, opts.dry_run))
    }

    /// PUT: replace, with optimistic concurrency when `metadata.resourceVersion`
    /// is set (secrets, like most core types, allow unconditional updates).
    pub fn replace(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        mut obj: Value,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        validate::normalize(res, &mut obj)?;
        let body_name = meta_str(&obj, "name");
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        self.check_namespace(res, ns, &mut obj)?;
        self.update(res, ns, name, obj, opts, None)
    }

    fn check_namespace(&self, res: &Resource, ns: &str, obj: &mut Value) -> Result<(), ApiError> {
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

    /// The common tail of PUT and PATCH: precondition, validation, no-op
    /// detection, ownership, commit. `entries` carries ownership already computed
    /// by server-side apply.
    fn update(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        mut obj: Value,
        opts: &WriteOpts,
        entries: Option<Vec<ManagerEntry>>,
    ) -> Result<Value, ApiError> {
        let ns = if res.namespaced { ns } else { "" };
        let Some(current) = self.get(res, ns, name).cloned() else {
            return Err(ApiError::not_found(res, name));
        };
        let want_rv = meta_str(&obj, "resourceVersion");
        if !want_rv.is_empty() {
            if want_rv.parse::<u64>().is_err() {
                return Err(ApiError::bad_request(format!(
                    "invalid resource version: {}",
                    super::status::go_quote(want_rv)
                )));
            }
            if want_rv != meta_str(&current, "resourceVersion") {
                return Err(ApiError::conflict(res, name));
            }
        }
        let m = obj["metadata"].as_object_mut().expect("object");
        if m.get("uid").and_then(Value::as_str).unwrap_or("").is_empty() {
            m.insert("uid".into(), current["metadata"]["uid"].clone());
        }
        m.insert("creationTimestamp".into(), current["metadata"]["creationTimestamp"].clone());
        m.remove("managedFields");
        if let Some(ts) = current["metadata"].get("deletionTimestamp") {
            m.insert("deletionTimestamp".into(), ts.clone());
        }
        if res.plural == "namespaces" {
            // Status is not writable through the main resource.
            obj["status"] = current["status"].clone();
        }
        let causes = validate::validate_update(res, &obj, &current);
        if !causes.is_empty() {
            return Err(ApiError::invalid_resource(res, name, causes));
        }
        obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        if same_content(&obj, &current) && entries.is_none() {
            // A no-op update is not written: no new resourceVersion, no event.
            return Ok(current);
        }
        let key: Key = (res.plural, ns.to_string(), name.to_string());
        let now = now_rfc3339();
        let entries = match entries {
            Some(e) => e,
            None => {
                let mut e = self.managers.get(&key).cloned().unwrap_or_default();
                patch::record_update(Some(&current), &obj, &mut e, &opts.field_manager, &now);
                e
            }
        };
        if same_content(&obj, &current) {
            // An apply that changes nothing: written only if ownership moved.
            let same_owners = |a: &[ManagerEntry], b: &[ManagerEntry]| {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x.manager == y.manager && x.operation == y.operation && x.fields == y.fields)
            };
            let existing = self.managers.get(&key).cloned().unwrap_or_default();
            if opts.dry_run || same_owners(&existing, &entries) {
                return Ok(current);
            }
        }
        Ok(self.finish_write(res, key, obj, entries, opts.dry_run))
    }

    /// PATCH in any of the supported flavours.
    pub fn patch(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        opts: &WriteOpts,
    ) -> Result<(Value, bool), ApiError> {
        let ns = if res.namespaced { ns } else { "" };
        let current = self.get(res, ns, name).cloned();
        if kind == PatchKind::Apply {
            return self.apply(res, ns, name, current, body, opts);
        }
        let Some(current) = current else {
            return Err(ApiError::not_found(res, name));
        };
        let mut patched = current.clone();
        match kind {
            PatchKind::Merge => {
                json_patch::merge(&mut patched, body);
            }
            PatchKind::Strategic => patch::strategic_merge(&mut patched, body),
            PatchKind::Json => {
                let ops: json_patch::Patch =
                    serde_json::from_value(body.clone()).map_err(|e| ApiError::bad_request(e.to_string()))?;
                json_patch::patch(&mut patched, &ops).map_err(|e| ApiError::unprocessable(e.to_string()))?;
            }
            PatchKind::Apply => unreachable!(),
        }
        validate::normalize(res, &mut patched)?;
        if meta_str(&patched, "name") != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&patched, "name")
            )));
        }
        self.check_namespace(res, ns, &mut patched)?;
        Ok((self.update(res, ns, name, patched, opts, None)?, false))
    }

    fn apply(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        current: Option<Value>,
        body: &Value,
        opts: &WriteOpts,
    ) -> Result<(Value, bool), ApiError> {
        if body.get("kind").and_then(Value::as_str).unwrap_or("").is_empty() {
            return Err(ApiError::bad_request(format!("Object 'Kind' is missing in '{body}'")));
        }
        if body.get("apiVersion").and_then(Value::as_str).unwrap_or("").is_empty() {
            return Err(ApiError::bad_request(format!("Object 'apiVersion' is missing in '{body}'")));
        }
        if body.pointer("/metadata/managedFields").is_some_and(|m| !m.is_null()) {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        let mut applied = body.clone();
        validate::normalize(res, &mut applied)?;
        let applied_name = meta_str(&applied, "name");
        if applied_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({applied_name}) does not match the name on the URL ({name})"
            )));
        }
        self.check_namespace(res, ns, &mut applied)?;
        let key: Key = (res.plural, ns.to_string(), name.to_string());
        let now = now_rfc3339();
        let mut entries = self.managers.get(&key).cloned().unwrap_or_default();
        let new = patch::apply(current.as_ref(), &applied, &mut entries, &opts.field_manager, opts.force, &now)
            .map_err(|c| ApiError::apply_conflict(res, name, &c))?;
        match current {
            None => {
                // Apply creates the object when it does not exist.
                if !meta_str(&new, "resourceVersion").is_empty() {
                    return Err(ApiError::not_found(res, name));
                }
                let created = self.create(res, ns, new, opts)?;
                // Ownership of an applied creation belongs to the Apply entry.
                if !opts.dry_run {
                    let mut obj = created;
                    self.managers.insert(key.clone(), entries.clone());
                    obj["metadata"]["managedFields"] = patch::render_managed_fields(&entries, res.api_version);
                    self.objects.insert(key, obj.clone());
                    if let Some(last) = self.history.back_mut() {
                        last.object = obj.clone();
                    }
                    return Ok((obj, true));
                }
                Ok((created, true))
            }
            Some(_) => Ok((self.update(res, ns, name, new, opts, Some(entries))?, false)),
        }
    }

    /// DELETE, with optional `preconditions` from DeleteOptions.
    pub fn delete(
        &mut self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        precondition_uid: Option<&str>,
        precondition_rv: Option<&str>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let ns = if res.namespaced { ns } else { "" };
        let Some(current) = self.get(res, ns, name).cloned() else {
            return Err(ApiError::not_found(res, name));
        };
        if let Some(uid) = precondition_uid {
            let actual = meta_str(&current, "uid");
            if uid != actual {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}",
                        res.plural
                    ),
                ));
            }
        }
        if let Some(rv) = precondition_rv {
            let actual = meta_str(&current, "resourceVersion");
            if rv != actual {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}",
                        res.plural
                    ),
                ));
            }
        }
        if dry_run {
            return Ok(current);
        }
        if res.plural == "namespaces" {
            return Ok(self.delete_namespace(name).unwrap_or(current));
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

/// The PATCH content types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copy-and-strip comparison `same_content` replaced.
    fn stripped(obj: &Value) -> Value {
        let mut o = obj.clone();
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        o
    }

    #[test]
    fn same_content_ignores_only_server_maintained_fields() {
        let base = json!({"kind": "Secret", "metadata": {"name": "a", "resourceVersion": "1", "managedFields": []}, "data": {"k": "dg=="}});
        let cases = [
            json!({"kind": "Secret", "metadata": {"name": "a", "resourceVersion": "7"}, "data": {"k": "dg=="}}),
            json!({"kind": "Secret", "metadata": {"name": "a"}, "data": {"k": "dg=="}}),
            json!({"kind": "Secret", "metadata": {"name": "a", "resourceVersion": "1"}, "data": {"k": "eA=="}}),
            json!({"kind": "Secret", "metadata": {"name": "a", "labels": {}}, "data": {"k": "dg=="}}),
            json!({"kind": "Secret", "metadata": {"name": "a"}, "data": {"k": "dg=="}, "type": "Opaque"}),
            json!({"kind": "Secret", "metadata": null, "data": {"k": "dg=="}}),
            json!({"kind": "Secret", "data": {"k": "dg=="}}),
            json!("not an object"),
        ];
        for c in &cases {
            assert_eq!(same_content(&base, c), stripped(&base) == stripped(c), "{c}");
            assert_eq!(same_content(c, &base), stripped(c) == stripped(&base), "{c}");
            assert!(same_content(c, c));
        }
        assert!(same_content(&base, &cases[0]) && !same_content(&base, &cases[2]));
    }
}
