//! One table of requests with the answers kube-apiserver v1.34 gives them:
//! the HTTP status, the `Status` reason and, for `422 Invalid`, the set of
//! `(field, reason)` of its causes; for a few successes, what the returned
//! object holds. `kube_http.rs` holds the emulator to the table;
//! `kube_conformance.rs` sends the same requests to a real kube-apiserver
//! and holds both to it, so the table records what the real server says,
//! not the emulator's idea of it.
//!
//! Messages are not compared: regcred shows them to its user and never reads
//! them. Each backend works in namespaces of its own (`$(ns)`, `$(ns2)`;
//! `$(missing)` never exists), so the table runs on a control plane used
//! before.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use http_body_util::BodyExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use regcred_testkit::KubeApi;
use serde_json::{json, Value};

use crate::common::b64;

/// One request and the answer kube-apiserver gives it.
pub struct Step {
    method: &'static str,
    /// The path and query, with `$(name)` for the backend's values.
    path: String,
    content_type: Option<&'static str>,
    accept: Option<&'static str>,
    body: Option<String>,
    expect: Expect,
    /// Saves the answer's `resourceVersion` and `uid` as `$(rv:NAME)` and `$(uid:NAME)`.
    save: Option<&'static str>,
}

struct Expect {
    code: u16,
    /// The `Status` reason; empty for a success.
    reason: &'static str,
    /// `(field, reason)` of each cause of a `422 Invalid`.
    causes: BTreeSet<(String, String)>,
    /// A part of the answer: each key given must hold this value; `null`
    /// stands for absent (Go leaves out an empty `omitempty` field).
    returns: Option<Value>,
}

fn step(method: &'static str, path: &str, content_type: Option<&'static str>, body: Option<String>) -> Step {
    Step {
        method,
        path: path.to_string(),
        content_type,
        accept: None,
        body,
        expect: Expect { code: 200, reason: "", causes: BTreeSet::new(), returns: None },
        save: None,
    }
}

fn get(path: &str) -> Step {
    step("GET", path, None, None)
}

fn post(path: &str, body: Value) -> Step {
    step("POST", path, Some("application/json"), Some(body.to_string()))
}

fn merge_patch(path: &str, body: Value) -> Step {
    step("PATCH", path, Some("application/merge-patch+json"), Some(body.to_string()))
}

fn delete(path: &str, options: Option<Value>) -> Step {
    let content_type = options.is_some().then_some("application/json");
    step("DELETE", path, content_type, options.map(|o| o.to_string()))
}

impl Step {
    /// Succeeds with `code`.
    fn is(mut self, code: u16) -> Step {
        self.expect.code = code;
        self
    }

    /// Fails with `code` and `reason`.
    fn fails(mut self, code: u16, reason: &'static str) -> Step {
        self.expect.code = code;
        self.expect.reason = reason;
        self
    }

    /// Fails validation (`422 Invalid`) with these causes.
    fn invalid(mut self, causes: &[(&str, &str)]) -> Step {
        self.expect.code = 422;
        self.expect.reason = "Invalid";
        self.expect.causes = causes.iter().map(|(f, r)| (f.to_string(), r.to_string())).collect();
        self
    }

    fn returns(mut self, part: Value) -> Step {
        self.expect.returns = Some(part);
        self
    }

    fn saving(mut self, name: &'static str) -> Step {
        self.save = Some(name);
        self
    }

    fn content_type(mut self, content_type: &'static str) -> Step {
        self.content_type = Some(content_type);
        self
    }

    fn accept(mut self, accept: &'static str) -> Step {
        self.accept = Some(accept);
        self
    }

    fn raw_body(mut self, body: &str) -> Step {
        self.body = Some(body.to_string());
        self
    }

    /// `METHOD path`, for messages.
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What a backend answered.
#[derive(Debug)]
pub struct Answer {
    pub code: u16,
    pub body: Value,
}

impl Answer {
    fn reason(&self) -> &str {
        if self.body["kind"] == "Status" {
            self.body["reason"].as_str().unwrap_or("")
        } else {
            ""
        }
    }

    fn causes(&self) -> BTreeSet<(String, String)> {
        let causes = self.body.pointer("/details/causes").and_then(Value::as_array);
        causes
            .into_iter()
            .flatten()
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
                (s("field"), s("reason"))
            })
            .collect()
    }

    /// How this answer differs from what kube-apiserver answers; empty if it does not.
    fn differences(&self, expect: &Expect, vars: &Vars) -> Vec<String> {
        let mut out = Vec::new();
        let (reason, causes) = (self.reason(), self.causes());
        if self.code != expect.code || reason != expect.reason {
            out.push(format!("{} {reason}, not {} {}", self.code, expect.code, expect.reason));
        }
        if causes != expect.causes {
            out.push(format!("causes {causes:?}, not {:?}", expect.causes));
        }
        if let Some(part) = &expect.returns {
            let part: Value = serde_json::from_str(&vars.fill(&part.to_string())).expect("JSON");
            holds(&self.body, &part, "", &mut out);
        }
        out
    }
}

/// An answer's body, cut short (a failed patch's message holds the patched object).
pub fn short(body: &Value) -> String {
    let text = body.to_string();
    match text.char_indices().nth(800) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// Whether `v` holds `part` (see [`Expect::returns`]), each difference in `out`.
fn holds(v: &Value, part: &Value, at: &str, out: &mut Vec<String>) {
    match part {
        Value::Object(m) => {
            for (k, p) in m {
                let at = format!("{at}/{k}");
                match v.get(k) {
                    None | Some(Value::Null) if p.is_null() => {}
                    Some(inner) if p.is_object() => holds(inner, p, &at, out),
                    Some(inner) if inner == p => {}
                    other => out.push(format!("{at} is {other:?}, not {p}")),
                }
            }
        }
        _ => {
            if v != part {
                out.push(format!("{at} is {v}, not {part}"));
            }
        }
    }
}

/// The values a backend fills into the table's `$(name)`s.
#[derive(Default)]
pub struct Vars(BTreeMap<String, String>);

impl Vars {
    fn fill(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (k, v) in &self.0 {
            text = text.replace(&format!("$({k})"), v);
        }
        assert!(!text.contains("$("), "a name the table never set: {text:.200}");
        text
    }
}

/// A Kubernetes API server the table's requests go to, through the client
/// regcred uses (kube-rs, which adds the credentials of its kubeconfig and
/// nothing else to a raw request).
pub struct Backend {
    pub name: &'static str,
    client: kube::Client,
    vars: Vars,
}

impl Backend {
    /// The emulator, with the table's namespaces.
    pub async fn emulator(k: &KubeApi) -> Backend {
        let dir = tempfile::tempdir().unwrap();
        k.write_kubeconfig(&dir.path().join("kubeconfig"), "default");
        let backend = Backend::from_kubeconfig("emulator", &dir.path().join("kubeconfig"), "kit").await;
        for ns in ["ns", "ns2"] {
            k.create_namespace(&backend.vars.0[ns], &[]);
        }
        backend
    }

    /// The real API server whose admin kubeconfig is `kubeconfig`, with new
    /// namespaces of the table's (a control plane without controllers never
    /// finishes deleting a namespace, so each run makes its own).
    pub async fn real(kubeconfig: &Path) -> Backend {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let prefix = format!("kit-{}-{:x}", std::process::id(), nanos % 0x10_0000);
        let backend = Backend::from_kubeconfig("kube-apiserver", kubeconfig, &prefix).await;
        for ns in ["ns", "ns2"] {
            let created = backend
                .send(
                    "POST",
                    "/api/v1/namespaces",
                    Some("application/json"),
                    None,
                    Some(json!({"metadata": {"name": backend.vars.0[ns]}}).to_string()),
                )
                .await;
            assert_eq!(created.code, 201, "creating namespace {}: {}", backend.vars.0[ns], created.body);
        }
        backend
    }

    async fn from_kubeconfig(name: &'static str, path: &Path, prefix: &str) -> Backend {
        let kubeconfig = Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let vars = [("ns", "a"), ("ns2", "b"), ("missing", "missing")]
            .map(|(k, suffix)| (k.to_string(), format!("{prefix}-{suffix}")))
            .into_iter()
            .collect();
        Backend { name, client, vars: Vars(vars) }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Option<String>,
    ) -> Answer {
        let mut request = http::Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        if let Some(a) = accept {
            request = request.header("accept", a);
        }
        let request = request.body(kube::client::Body::from(body.unwrap_or_default().into_bytes())).unwrap();
        let response =
            self.client.send(request).await.unwrap_or_else(|e| panic!("{}: {method} {path}: {e}", self.name));
        let code = response.status().as_u16();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Answer { code, body }
    }

    /// What an answer's `details` say of the object (`kind`, `name`,
    /// `group`), with the backend's namespace names as the table's
    /// `$(name)`s: compared between the two backends, not in the table.
    pub fn about(&self, answer: &Answer) -> Value {
        let Some(d) = answer.body.get("details").filter(|_| answer.body["kind"] == "Status") else {
            return Value::Null;
        };
        let mut about = json!({"kind": d["kind"], "name": d["name"], "group": d["group"]}).to_string();
        for ns in ["missing", "ns2", "ns"] {
            about = about.replace(&self.vars.0[ns], &format!("$({ns})"));
        }
        serde_json::from_str(&about).expect("JSON")
    }

    /// Sends one step; returns the answer and how it differs from the table's.
    pub async fn run(&mut self, step: &Step) -> (Answer, Vec<String>) {
        let path = self.vars.fill(&step.path);
        let body = step.body.as_deref().map(|b| self.vars.fill(b));
        let answer = self.send(step.method, &path, step.content_type, step.accept, body).await;
        let differences = answer.differences(&step.expect, &self.vars);
        if (200..300).contains(&answer.code) {
            for (var, pointer) in [("rv", "/metadata/resourceVersion"), ("uid", "/metadata/uid")] {
                if let Some(v) = answer.body.pointer(pointer).and_then(Value::as_str) {
                    self.vars.0.insert(var.to_string(), v.to_string());
                    if let Some(name) = step.save {
                        self.vars.0.insert(format!("{var}:{name}"), v.to_string());
                    }
                }
            }
        }
        (answer, differences)
    }
}

/// A `kubernetes.io/dockerconfigjson` Secret holding `doc`.
pub fn dockerconfig_secret(name: &str, doc: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(doc)},
    })
}

const SECRETS: &str = "/api/v1/namespaces/$(ns)/secrets";
const ACCOUNTS: &str = "/api/v1/namespaces/$(ns)/serviceaccounts";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/$(ns)/events";
const METADATA: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

/// An events.k8s.io/v1 Event as regcred publishes one, about a Secret in `namespace`.
pub fn event(name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": name},
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "reportingController": "regcred",
        "reportingInstance": "regcred-abc",
        "action": "Update", "reason": "Rotated", "type": "Normal",
        "note": "wrote a freshly minted credential",
        "regarding": {"kind": "Secret", "namespace": namespace, "name": "gcr-pull", "apiVersion": "v1"},
    })
}

const INVALID: &str = "FieldValueInvalid";
const REQUIRED: &str = "FieldValueRequired";
const TOO_LONG: &str = "FieldValueTooLong";

fn secret(name: &str) -> String {
    format!("{SECRETS}/{name}")
}

/// The table, in order: later steps read what earlier ones wrote.
pub fn steps() -> Vec<Step> {
    [secrets(), secret_validation(), service_accounts(), events(), paths()].into_iter().flatten().collect()
}

/// What regcred does to a Secret (create, read, patch conditionally, prune
/// with preconditions), and what goes wrong around it.
fn secrets() -> Vec<Step> {
    let patch = |body: Value| merge_patch(&secret("gcr-pull"), body);
    let doc = |text: &str| json!({".dockerconfigjson": b64(text)});
    vec![
        post(SECRETS, dockerconfig_secret("gcr-pull", r#"{"auths":{}}"#))
            .is(201)
            .saving("created")
            .returns(json!({"type": "kubernetes.io/dockerconfigjson", "metadata": {"namespace": "$(ns)"}})),
        post(SECRETS, dockerconfig_secret("gcr-pull", "{}")).fails(409, "AlreadyExists"),
        get(&secret("gcr-pull")).returns(json!({"metadata": {"resourceVersion": "$(rv:created)"}})),
        patch(json!({"metadata": {"resourceVersion": "$(rv:created)"}, "data": doc(r#"{"auths":{"gcr.io":{}}}"#)}))
            .returns(json!({"metadata": {"uid": "$(uid:created)"}})),
        // The same patch again carries a stale resourceVersion.
        patch(json!({"metadata": {"resourceVersion": "$(rv:created)"}, "data": doc("{}")})).fails(409, "Conflict"),
        // Without one the patch is unconditional; null removes; a no-op writes nothing.
        patch(json!({"metadata": {"labels": {"x": "y"}}})).returns(json!({"metadata": {"labels": {"x": "y"}}})),
        patch(json!({"metadata": {"labels": {"x": null}}})).returns(json!({"metadata": {"labels": null}})),
        patch(json!({"metadata": {"labels": null}})).returns(json!({"metadata": {"resourceVersion": "$(rv)"}})),
        merge_patch(&secret("nope"), json!({})).fails(404, "NotFound"),
        // Not an API error there: 500 with no reason.
        patch(json!({"metadata": {"resourceVersion": "abc"}})).fails(500, ""),
        patch(json!([])).fails(400, "BadRequest"),
        patch(json!("x")).fails(400, "BadRequest"),
        patch(json!({})).raw_body("{").fails(400, "BadRequest"),
        // A patch type kube-apiserver does not know.
        patch(json!({})).content_type("application/json").fails(415, "UnsupportedMediaType"),
        // A patched object that is not a Secret is an invalid patch.
        patch(json!({"kind": "ConfigMap"})).invalid(&[("patch", INVALID)]),
        patch(json!({"apiVersion": "v2"})).invalid(&[("patch", INVALID)]),
        patch(json!({"metadata": {"name": "other"}})).fails(400, "BadRequest"),
        // The uid cannot change; the timestamps are the server's.
        patch(json!({"metadata": {"uid": "forged"}})).invalid(&[("metadata.uid", INVALID)]),
        patch(json!({"metadata": {"uid": null, "creationTimestamp": "2001-01-01T00:00:00Z"}}))
            .returns(json!({"metadata": {"uid": "$(uid:created)", "resourceVersion": "$(rv)"}})),
        delete(&secret("gcr-pull"), None).returns(json!({"kind": "Status", "status": "Success"})),
        delete(&secret("gcr-pull"), None).fails(404, "NotFound"),
        get(&secret("gcr-pull")).fails(404, "NotFound"),
        // Where it is created.
        post("/api/v1/namespaces/$(missing)/secrets", dockerconfig_secret("a", "{}")).fails(404, "NotFound"),
        post(SECRETS, json!({"metadata": {"name": "a", "namespace": "kube-system"}})).fails(400, "BadRequest"),
        // Delete preconditions: regcred prunes with the resourceVersion it saw.
        post(SECRETS, json!({"metadata": {"name": "pre"}})).is(201).saving("pre"),
        delete(&secret("pre"), Some(json!({"preconditions": {"resourceVersion": "1"}}))).fails(409, "Conflict"),
        delete(&secret("pre"), Some(json!({"preconditions": {"uid": "abc", "resourceVersion": "1"}})))
            .fails(409, "Conflict"),
        delete(&secret("pre"), Some(json!({"preconditions": {"uid": "$(uid:pre)", "resourceVersion": "$(rv:pre)"}}))),
        delete(&secret("nope"), Some(json!({"preconditions": {"resourceVersion": "1"}}))).fails(404, "NotFound"),
        delete(&secret("nope"), None).raw_body("{").content_type("application/json").fails(500, ""),
    ]
}

/// A Secret's decoding and validation.
fn secret_validation() -> Vec<Step> {
    let k254 = "k".repeat(254);
    vec![
        // Bodies that do not decode: 400.
        post(SECRETS, json!({})).raw_body("{").fails(400, "BadRequest"),
        post(SECRETS, json!([])).fails(400, "BadRequest"),
        post(SECRETS, json!({"kind": "ConfigMap", "metadata": {"name": "a"}})).fails(400, "BadRequest"),
        post(SECRETS, json!({"apiVersion": "v2", "metadata": {"name": "a"}})).fails(400, "BadRequest"),
        post(SECRETS, json!({"metadata": "x"})).fails(400, "BadRequest"),
        post(SECRETS, json!({"metadata": {"name": "a", "labels": "x"}})).fails(400, "BadRequest"),
        post(SECRETS, json!({"metadata": {"name": "a"}, "type": 5})).fails(400, "BadRequest"),
        post(SECRETS, json!({"metadata": {"name": "a"}, "data": {"k": "!!!"}})).fails(400, "BadRequest"),
        post(SECRETS, json!({"metadata": {"name": "a", "resourceVersion": "5"}})).fails(500, ""),
        // Names, keys, labels, annotations, sizes.
        post(SECRETS, json!({"metadata": {}})).invalid(&[("metadata.name", REQUIRED)]),
        post(SECRETS, json!({"metadata": {"name": "Bad_Name"}, "data": {"a/b": b64("x")}}))
            .invalid(&[("metadata.name", INVALID), ("data[a/b]", INVALID)]),
        post(SECRETS, json!({"metadata": {"name": "n".repeat(254)}})).invalid(&[("metadata.name", INVALID)]),
        post(SECRETS, json!({"metadata": {"name": "keys"}, "data": {"..x": "", ".": "", k254.clone(): ""}}))
            .invalid(&[("data[..x]", INVALID), ("data[.]", INVALID), (&format!("data[{k254}]"), INVALID)]),
        post(SECRETS, json!({"metadata": {"name": "big"}, "stringData": {"k": "a".repeat(1024 * 1024 + 1)}}))
            .invalid(&[("data", TOO_LONG)]),
        post(
            SECRETS,
            json!({"metadata": {"name": "l", "labels": {"bad key": "v", "ok": "bad value", "v": "x".repeat(64)}}}),
        )
        .invalid(&[("metadata.labels", INVALID)]),
        post(SECRETS, json!({"metadata": {"name": "l", "labels": {"a/b/c": "v", "-a.example/x": "v", "A.b/c": "v"}}}))
            .invalid(&[("metadata.labels", INVALID)]),
        post(SECRETS, json!({"metadata": {"name": "notes", "annotations": {"bad key": "v"}}}))
            .invalid(&[("metadata.annotations", INVALID)]),
        post(SECRETS, json!({"metadata": {"name": "notes", "annotations": {"a": "x".repeat(256 * 1024)}}}))
            .invalid(&[("metadata.annotations", TOO_LONG)]),
        post(
            SECRETS,
            json!({"metadata": {"name": "upper", "annotations": {"Regcred.dev/X": "v"}, "labels": {"a": ""}}}),
        )
        .is(201),
        // The types regcred writes: what an Opaque and a docker config Secret must hold.
        post(SECRETS, json!({"metadata": {"name": "plain"}, "stringData": {"k": "v"}}))
            .is(201)
            .returns(json!({"type": "Opaque", "data": {"k": b64("v")}, "stringData": null})),
        post(SECRETS, dockerconfig_secret("gcr-pull", "not json")).invalid(&[("data[.dockerconfigjson]", INVALID)]),
        post(SECRETS, json!({"metadata": {"name": "a"}, "type": "kubernetes.io/dockerconfigjson", "data": {"x": ""}}))
            .invalid(&[("data[.dockerconfigjson]", REQUIRED)]),
        post(SECRETS, dockerconfig_secret("s", "{}")).is(201),
        merge_patch(&secret("s"), json!({"data": {".dockerconfigjson": b64("[]")}}))
            .invalid(&[("data[.dockerconfigjson]", INVALID)]),
        // The type cannot change.
        merge_patch(
            &secret("plain"),
            json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64("{}")}}),
        )
        .invalid(&[("type", INVALID)]),
        merge_patch(&secret("plain"), json!({"metadata": {"labels": {"bad key": "v"}}}))
            .invalid(&[("metadata.labels", INVALID)]),
        // A merge patch whose result does not decode is an invalid patch.
        post(SECRETS, json!({"metadata": {"name": "x"}, "stringData": {"a": "b"}})).is(201),
        merge_patch(&secret("x"), json!({"data": {"a": "abc!"}})).invalid(&[("patch", INVALID)]),
        merge_patch(&secret("x"), json!({"data": {"a": 5}})).invalid(&[("patch", INVALID)]),
        merge_patch(&secret("x"), json!({"data": "x"})).invalid(&[("patch", INVALID)]),
        merge_patch(&secret("x"), json!({"metadata": {"labels": {"a": 5}}})).invalid(&[("patch", INVALID)]),
        get(&secret("x")).returns(json!({"data": {"a": b64("b")}})),
    ]
}

/// What regcred's patch of `imagePullSecrets` reads back.
fn service_accounts() -> Vec<Step> {
    let sa = format!("{ACCOUNTS}/sa");
    let mut steps = vec![
        post(ACCOUNTS, json!({"metadata": {"name": "sa"}})).is(201),
        merge_patch(
            &sa,
            json!({"imagePullSecrets": [{"name": ""}, {"name": "a", "extra": 1}, null, {"name": null}],
                   "secrets": [{"name": "s", "kind": "Secret", "namespace": "default", "uid": "u"}, {"name": ""}]}),
        )
        .returns(json!({"imagePullSecrets": [{}, {"name": "a"}, {}, {}], "secrets": [{"name": "s"}, {}]})),
        merge_patch(&sa, json!({"imagePullSecrets": [], "secrets": null}))
            .returns(json!({"imagePullSecrets": null, "secrets": null})),
        merge_patch(&sa, json!({"metadata": {"resourceVersion": "1"}, "imagePullSecrets": [{"name": "x"}]}))
            .fails(409, "Conflict"),
        merge_patch(&format!("{ACCOUNTS}/none"), json!({"imagePullSecrets": [{"name": "x"}]})).fails(404, "NotFound"),
        get(ACCOUNTS).returns(json!({"kind": "ServiceAccountList"})),
        delete(&sa, Some(json!({"preconditions": {"uid": "u"}}))).fails(409, "Conflict"),
    ];
    for body in [
        json!({"imagePullSecrets": [{"name": 5}]}),
        json!({"imagePullSecrets": "x"}),
        json!({"imagePullSecrets": [5]}),
        json!({"secrets": [{"name": 5}]}),
    ] {
        let mut body = body;
        body["metadata"] = json!({"name": "s3"});
        steps.push(post(ACCOUNTS, body).fails(400, "BadRequest"));
    }
    steps
}

/// Events as regcred publishes them, and what the API server makes of the
/// fields regcred sets.
fn events() -> Vec<Step> {
    let with = |name: &str, field: &str, value: Value| {
        let mut e = event(name, "$(ns)");
        e[field] = value;
        e
    };
    vec![
        post(EVENTS, json!({"metadata": {"name": "e1"}, "eventTime": "2025-01-01T00:00:00.000000Z"})).invalid(&[
            ("reportingController", REQUIRED),
            ("reportingController", INVALID),
            ("reportingInstance", REQUIRED),
            ("action", REQUIRED),
            ("reason", REQUIRED),
            ("type", INVALID),
            ("involvedObject.namespace", INVALID),
        ]),
        post(EVENTS, event("gcr-pull.1", "$(ns)")).is(201).returns(json!({"eventTime": "2025-01-01T00:00:00.000000Z"})),
        post(EVENTS, with("gcr-pull.2", "type", json!("Info"))).invalid(&[("type", INVALID)]),
        post(EVENTS, with("gcr-pull.3", "reportingInstance", json!("i".repeat(129))))
            .invalid(&[("reportingInstance", INVALID)]),
        post(EVENTS, with("gcr-pull.4", "note", json!("n".repeat(1025)))).invalid(&[("message", INVALID)]),
        post(EVENTS, with("gcr-pull.5", "reason", json!("r".repeat(129)))).invalid(&[("reason", INVALID)]),
        post(EVENTS, with("gcr-pull.6", "reportingController", json!("not/a/name")))
            .invalid(&[("reportingController", INVALID)]),
        // eventTime is a MicroTime: six fractional digits, any offset, stored in UTC.
        post(EVENTS, with("gcr-pull.7", "eventTime", json!("2025-01-01T00:00:00.000000000Z"))).fails(400, "BadRequest"),
        post(EVENTS, with("gcr-pull.8", "eventTime", json!("2025-01-01T00:00:00Z"))).fails(400, "BadRequest"),
        post(EVENTS, with("gcr-pull.9", "eventTime", json!("2025-01-01T01:00:00.000000+01:00")))
            .is(201)
            .returns(json!({"eventTime": "2025-01-01T00:00:00.000000Z"})),
        post(EVENTS, event(&format!("{}.1", "e".repeat(253)), "$(ns)")).invalid(&[("metadata.name", INVALID)]),
        // With an eventTime the regarded object may be in another namespace;
        // without a namespace it may not be (outside default and kube-system).
        post(EVENTS, with("e3", "regarding", json!({"kind": "Secret", "namespace": "$(ns2)", "name": "x"}))).is(201),
        post(EVENTS, with("e4", "regarding", json!({"kind": "Secret", "name": "x"})))
            .invalid(&[("involvedObject.namespace", INVALID)]),
        post("/apis/events.k8s.io/v1/namespaces/$(missing)/events", event("e6", "$(ns)")).fails(404, "NotFound"),
        get(EVENTS).returns(json!({"kind": "EventList", "apiVersion": "events.k8s.io/v1"})),
        delete(&format!("{EVENTS}/gcr-pull.1"), Some(json!({"preconditions": {"resourceVersion": "1"}})))
            .fails(409, "Conflict"),
    ]
}

/// Paths, verbs, parameters and representations.
fn paths() -> Vec<Step> {
    let never = "labelSelector=regcred.dev%2Fnever%3Dset";
    vec![
        get("/api/v1/namespaces/$(ns)/nothings").fails(404, "NotFound"),
        step("PUT", "/api/v1/secrets", Some("application/json"), Some("{}".into())).fails(405, "MethodNotAllowed"),
        get("/api/v1/namespaces?labelSelector=a%3Db%3Dc").fails(400, "BadRequest"),
        get(&format!("{SECRETS}?labelSelector=a%20in%20(b")).fails(400, "BadRequest"),
        get(&format!("/api/v1/namespaces?{never}")).returns(json!({"kind": "NamespaceList", "items": []})),
        get(&format!("{SECRETS}?fieldSelector=metadata.name%3Dupper")).returns(json!({"kind": "SecretList"})),
        get(&format!("{SECRETS}?fieldSelector=foo%3Dbar")).fails(400, "BadRequest"),
        get(&format!("{SECRETS}?limit=abc")).fails(400, "BadRequest"),
        get(&format!("{SECRETS}?limit=1&continue=abc")).fails(400, "BadRequest"),
        get(&format!("{SECRETS}?resourceVersion=abc")).fails(400, "BadRequest"),
        get(&format!("{SECRETS}?watch=true&resourceVersion=abc&timeoutSeconds=1")).fails(500, ""),
        // Metadata only, as kube-rs asks for it.
        get("/api/v1/namespaces").accept(METADATA).fails(406, "NotAcceptable"),
        get("/api/v1/namespaces/$(ns)").accept(METADATA_LIST).fails(406, "NotAcceptable"),
        get(&format!("/api/v1/namespaces?{never}"))
            .accept(METADATA_LIST)
            .returns(json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "items": null})),
        get("/api/v1/secrets?labelSelector=regcred.dev%2Fmanaged%3Dtrue")
            .accept(METADATA_LIST)
            .returns(json!({"kind": "PartialObjectMetadataList"})),
        get(&format!("{SECRETS}/nope")).accept(METADATA).fails(404, "NotFound"),
        get("/api/v1/namespaces/$(ns)").accept(METADATA).returns(
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "$(ns)"}}),
        ),
    ]
}
