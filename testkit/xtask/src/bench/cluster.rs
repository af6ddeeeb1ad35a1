//! The Kubernetes API the benchmark runs regcred against, and how its
//! requests are counted.
//!
//! * The test kit's emulator: a fresh one per size, in this process, with a
//!   fixed latency added to every request; requests are counted from its own
//!   request log.
//! * A real API server, from an admin kubeconfig: one for the whole run. It
//!   has no namespace controller (`testkit/control-plane/cluster up`), so a
//!   deleted namespace would stay Terminating and keep being selected; the
//!   bench therefore needs a fresh server and grows its namespaces from size
//!   to size, deleting regcred's Secrets in between. Requests are counted on
//!   the server's side, from its audit log: every request by a user outside
//!   `system:` (the server's own loopback client) whose user agent is not the
//!   harness's.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read as _, Seek as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use http::{header::USER_AGENT, HeaderValue};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::ResourceExt as _;
use regcred_testkit::{KubeApi, RecordedRequest};
use serde_json::Value;

use super::{proc, SECRET};

/// "PATCH secrets" ×N, "WATCH namespaces" ×N, "POST secrets → 409" ×N ...
pub type Counts = BTreeMap<String, usize>;

/// How often each item occurs.
pub fn tally<K: Ord>(items: impl IntoIterator<Item = K>) -> BTreeMap<K, usize> {
    let mut counts = BTreeMap::new();
    for k in items {
        *counts.entry(k).or_insert(0) += 1;
    }
    counts
}

/// "PATCH secrets", with the status appended when it is not a success.
fn label(verb: &str, resource: &str, status: u64) -> String {
    if status >= 300 {
        format!("{verb} {resource} → {status}")
    } else {
        format!("{verb} {resource}")
    }
}

/// The namespaces regcred's `--all-namespaces` leaves out by default.
const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];
/// The harness's own requests to a real API server carry this user agent, so
/// that they are not counted as regcred's.
const HARNESS_AGENT: &str = "regcred-bench-harness";
/// Namespaces the harness creates or deletes Secrets in at once.
const HARNESS_CONCURRENCY: usize = 32;

pub enum Cluster {
    Emulator { kube: KubeApi, latency: Duration },
    Server(Box<Server>),
}

pub struct Server {
    kubeconfig: PathBuf,
    audit_log: PathBuf,
    client: kube::Client,
    version: String,
    /// `bench-00001` ... created so far.
    created: usize,
    /// Where the audit log stood at the last `mark`.
    mark: u64,
    /// kube-apiserver's and etcd's pids, from `cluster up`'s pid files.
    pids: Vec<String>,
}

impl Cluster {
    pub async fn emulator(latency: Duration) -> Cluster {
        Cluster::Emulator { kube: KubeApi::start().await, latency }
    }

    /// The API server of an admin kubeconfig, which must hold no namespaces
    /// but `default` and the system ones.
    pub async fn server(kubeconfig: &Path, audit_log: Option<&Path>) -> Result<Cluster, String> {
        let kubeconfig = kubeconfig.canonicalize().map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
        let dir = kubeconfig.parent().expect("a file has a parent").to_path_buf();
        let audit_log = audit_log.map_or_else(|| dir.join("audit.log"), Path::to_path_buf);
        if !audit_log.exists() {
            return Err(format!(
                "no audit log at {} to count regcred's requests from (--audit-log; \
                 testkit/control-plane/cluster up DIR writes DIR/audit.log)",
                audit_log.display()
            ));
        }
        let config = kube::config::Kubeconfig::read_from(&kubeconfig).map_err(|e| e.to_string())?;
        let mut config = kube::Config::from_custom_kubeconfig(config, &Default::default())
            .await
            .map_err(|e| format!("{}: {e}", kubeconfig.display()))?;
        config.headers.push((USER_AGENT, HeaderValue::from_static(HARNESS_AGENT)));
        let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
        let version = client.apiserver_version().await.map_err(|e| format!("GET /version: {e}"))?.git_version;
        let namespaces = Api::<Namespace>::all(client.clone())
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| format!("listing namespaces: {e}"))?;
        let others: Vec<String> = namespaces
            .items
            .iter()
            .map(|n| n.name_any())
            .filter(|n| n != "default" && !SYSTEM_NAMESPACES.contains(&n.as_str()))
            .collect();
        if !others.is_empty() {
            return Err(format!(
                "the API server already has namespaces other than default and kube-* ({}...); a namespace cannot \
                 be deleted without kube-controller-manager, so the bench needs a fresh API server: \
                 testkit/control-plane/cluster down DIR && testkit/control-plane/cluster up DIR",
                others.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let pids = ["kube-apiserver.pid", "etcd.pid"]
            .iter()
            .filter_map(|f| Some(std::fs::read_to_string(dir.join(f)).ok()?.trim().to_string()))
            .collect();
        Ok(Cluster::Server(Box::new(Server { kubeconfig, audit_log, client, version, created: 0, mark: 0, pids })))
    }

    /// Makes the cluster hold `namespaces` selected namespaces (`default` and
    /// `bench-NNNNN`) and no Secret of regcred's.
    pub async fn prepare(&mut self, namespaces: usize) -> Result<(), String> {
        match self {
            Cluster::Emulator { kube, latency } => {
                *kube = KubeApi::start().await;
                kube.faults().set_latency(*latency);
                for i in 1..namespaces {
                    kube.create_namespace(&bench_namespace(i), &[]);
                }
                Ok(())
            }
            Cluster::Server(s) => s.prepare(namespaces).await,
        }
    }

    /// The kubeconfig regcred is given (the emulator's is written into `dir`).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        match self {
            Cluster::Emulator { kube, .. } => {
                let path = dir.join("kubeconfig");
                kube.write_kubeconfig(&path, "default");
                path
            }
            Cluster::Server(s) => s.kubeconfig.clone(),
        }
    }

    /// Starts a new window of counted requests.
    pub fn mark(&mut self) {
        match self {
            Cluster::Emulator { kube, .. } => kube.clear_requests(),
            Cluster::Server(s) => s.mark = std::fs::metadata(&s.audit_log).map(|m| m.len()).unwrap_or(0),
        }
    }

    /// regcred's requests since the last `mark`.
    pub async fn requests(&self) -> Result<Counts, String> {
        match self {
            Cluster::Emulator { kube, .. } => Ok(tally(kube.requests().iter().map(classify))),
            Cluster::Server(s) => s.requests().await,
        }
    }

    /// Creates a namespace and waits for regcred's Secret in it.
    pub async fn new_namespace(&self, name: &str) -> Result<Duration, String> {
        let deadline = Duration::from_secs(30);
        match self {
            Cluster::Emulator { kube, .. } => {
                let t0 = Instant::now();
                kube.create_namespace(name, &[]);
                while kube.secret(name, SECRET).is_none() {
                    if t0.elapsed() > deadline {
                        return Err(format!("namespace {name} got no Secret within {deadline:?}"));
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Ok(t0.elapsed())
            }
            Cluster::Server(s) => tokio::time::timeout(deadline, s.new_namespace(name))
                .await
                .map_err(|_| format!("namespace {name} got no Secret within {deadline:?}"))?,
        }
    }

    /// CPU time of the API server in clock ticks: this whole process for the
    /// emulator (the harness only waits on regcred's log meanwhile),
    /// kube-apiserver and etcd for a real server.
    pub fn cpu_ticks(&self) -> u64 {
        match self {
            Cluster::Emulator { .. } => proc::cpu_ticks("self").unwrap_or(0),
            Cluster::Server(s) => s.pids.iter().filter_map(|p| proc::cpu_ticks(p)).sum(),
        }
    }

    /// Whose CPU `cpu_ticks` measures, for the report.
    pub fn server_name(&self) -> &'static str {
        match self {
            Cluster::Emulator { .. } => "emulator",
            Cluster::Server(s) if s.pids.len() == 2 => "kube-apiserver + etcd",
            Cluster::Server(_) => "API server (not measured: no pid files beside the kubeconfig)",
        }
    }

    /// One sentence on the API server, for the report.
    pub fn describe(&self) -> String {
        match self {
            Cluster::Emulator { latency, .. } => format!(
                "the test kit's emulator, in the benchmark's own process on 127.0.0.1, {} added to every request",
                super::report::fmt_dur(*latency)
            ),
            Cluster::Server(s) => format!(
                "kube-apiserver {} with etcd (`{}`), no latency added; regcred's requests counted from the server's \
                 audit log `{}`",
                s.version,
                s.kubeconfig.display(),
                s.audit_log.display()
            ),
        }
    }

    pub fn is_emulator(&self) -> bool {
        matches!(self, Cluster::Emulator { .. })
    }
}

fn bench_namespace(i: usize) -> String {
    format!("bench-{i:05}")
}

impl Server {
    async fn prepare(&mut self, namespaces: usize) -> Result<(), String> {
        let secrets = Api::<Secret>::all(self.client.clone());
        let existing = secrets
            .list_metadata(&ListParams::default().fields(&format!("metadata.name={SECRET}")))
            .await
            .map_err(|e| format!("listing Secrets: {e}"))?;
        let client = &self.client;
        futures::stream::iter(existing.items.iter().map(|s| s.namespace().unwrap_or_default()))
            .map(|ns| async move {
                Api::<Secret>::namespaced(client.clone(), &ns)
                    .delete(SECRET, &DeleteParams::default())
                    .await
                    .map_err(|e| format!("deleting {ns}/{SECRET}: {e}"))
            })
            .buffer_unordered(HARNESS_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        if namespaces > self.created + 1 {
            super::progress(&format!("creating {} namespaces on the API server", namespaces - 1 - self.created));
        }
        let api = Api::<Namespace>::all(self.client.clone());
        futures::stream::iter(self.created + 1..namespaces)
            .map(|i| create_namespace(&api, bench_namespace(i)))
            .buffer_unordered(HARNESS_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        self.created = self.created.max(namespaces.saturating_sub(1));
        Ok(())
    }

    async fn requests(&self) -> Result<Counts, String> {
        // Blocking audit mode writes a record before the response is
        // sent; a watch's first record may trail it. Wait until the log is still.
        let len = || std::fs::metadata(&self.audit_log).map(|m| m.len()).unwrap_or(0);
        let mut last = len();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if len() == last {
                break;
            }
            last = len();
        }
        let mut file =
            std::fs::File::open(&self.audit_log).map_err(|e| format!("{}: {e}", self.audit_log.display()))?;
        file.seek(std::io::SeekFrom::Start(self.mark)).map_err(|e| e.to_string())?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|e| format!("{}: {e}", self.audit_log.display()))?;
        Ok(audit_counts(&text))
    }

    async fn new_namespace(&self, name: &str) -> Result<Duration, String> {
        let secrets = Api::<Secret>::all(self.client.clone());
        let by_name = format!("metadata.name={SECRET}");
        let from = secrets
            .list_metadata(&ListParams::default().fields(&by_name).limit(1))
            .await
            .map_err(|e| format!("listing Secrets: {e}"))?
            .metadata
            .resource_version
            .unwrap_or_default();
        let events = secrets.watch(&WatchParams::default().fields(&by_name), &from).await.map_err(|e| e.to_string())?;
        let mut events = std::pin::pin!(events);
        let t0 = Instant::now();
        create_namespace(&Api::all(self.client.clone()), name.to_string()).await?;
        while let Some(event) = events.try_next().await.map_err(|e| format!("watching Secrets: {e}"))? {
            if matches!(&event, WatchEvent::Added(s) if s.namespace().as_deref() == Some(name)) {
                return Ok(t0.elapsed());
            }
        }
        Err("the harness's watch of Secrets ended".into())
    }
}

async fn create_namespace(api: &Api<Namespace>, name: String) -> Result<(), String> {
    let ns =
        Namespace { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, ..Default::default() };
    api.create(&PostParams::default(), &ns).await.map(drop).map_err(|e| format!("creating namespace {name}: {e}"))
}

/// The emulator's record of a request, labelled as the audit log's would be.
fn classify(r: &RecordedRequest) -> String {
    let watch = r.query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    let segs: Vec<&str> = r.path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segs.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        other => other,
    };
    let (resource, collection) = match rest {
        [] => ("discovery", false),
        [plural] => (*plural, true),
        ["namespaces", _] => ("namespaces", false),
        ["namespaces", _, plural] => (*plural, true),
        ["namespaces", _, plural, ..] => (*plural, false),
        _ => ("other", false),
    };
    let verb = match (r.method.as_str(), watch, collection) {
        ("GET", true, _) => "WATCH",
        ("GET", false, true) => "LIST",
        (m, _, _) => m,
    };
    label(verb, resource, r.status.into())
}

/// regcred's requests in audit log lines: one per request (a watch has a
/// record when it starts and one when it ends), by any user outside
/// `system:` but the harness.
fn audit_counts(lines: &str) -> Counts {
    let mut seen = HashSet::new();
    tally(
        lines
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["userAgent"] != HARNESS_AGENT)
            .filter(|e| !e["user"]["username"].as_str().unwrap_or("system:").starts_with("system:"))
            .filter(|e| seen.insert(e["auditID"].as_str().unwrap_or_default().to_string()))
            .map(|e| {
                let verb = match e["verb"].as_str().unwrap_or("?") {
                    "create" => "POST".to_string(),
                    "update" => "PUT".to_string(),
                    "delete" | "deletecollection" => "DELETE".to_string(),
                    other => other.to_uppercase(),
                };
                let uri = e["requestURI"].as_str().unwrap_or("?");
                let resource =
                    e["objectRef"]["resource"].as_str().unwrap_or_else(|| uri.split('?').next().unwrap_or(uri));
                label(&verb, resource, e["responseStatus"]["code"].as_u64().unwrap_or(0))
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_emulator_requests() {
        let r = |method: &str, path: &str, query: &str, status: u16| RecordedRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            status,
            body: String::new(),
            headers: Vec::new(),
        };
        assert_eq!(classify(&r("PATCH", "/api/v1/namespaces/a/secrets/gcr-pull", "", 200)), "PATCH secrets");
        assert_eq!(classify(&r("POST", "/api/v1/namespaces/a/secrets", "", 201)), "POST secrets");
        assert_eq!(classify(&r("GET", "/api/v1/namespaces", "limit=500", 200)), "LIST namespaces");
        assert_eq!(classify(&r("GET", "/api/v1/secrets", "fieldSelector=x&watch=true", 200)), "WATCH secrets");
        assert_eq!(classify(&r("GET", "/api/v1/namespaces/a", "", 200)), "GET namespaces");
        assert_eq!(classify(&r("POST", "/apis/events.k8s.io/v1/namespaces/a/events", "", 201)), "POST events");
        assert_eq!(classify(&r("POST", "/api/v1/namespaces/a/secrets", "", 409)), "POST secrets → 409");
    }

    #[test]
    fn counts_regcreds_audit_records_once() {
        let rec = |id: &str, user: &str, agent: &str, verb: &str, resource: Option<&str>, code: u16| {
            let object = resource.map(|r| serde_json::json!({ "resource": r }));
            serde_json::json!({
                "auditID": id, "user": { "username": user }, "userAgent": agent, "verb": verb,
                "requestURI": "/api/v1/secrets?watch=true", "objectRef": object, "responseStatus": { "code": code },
            })
            .to_string()
        };
        let log = [
            rec("1", "admin", "", "patch", Some("secrets"), 200),
            rec("2", "admin", "", "watch", Some("secrets"), 200),
            rec("2", "admin", "", "watch", Some("secrets"), 200),
            rec("3", "admin", "", "create", Some("secrets"), 409),
            rec("4", "admin", HARNESS_AGENT, "create", Some("namespaces"), 201),
            rec("5", "system:apiserver", "", "update", Some("leases"), 200),
            rec("6", "admin", "", "get", None, 200),
            "not json".to_string(),
        ]
        .join("\n");
        let want: Counts =
            [("PATCH secrets", 1), ("WATCH secrets", 1), ("POST secrets → 409", 1), ("GET /api/v1/secrets", 1)]
                .into_iter()
                .map(|(k, n)| (k.to_string(), n))
                .collect();
        assert_eq!(audit_counts(&log), want);
    }
}
