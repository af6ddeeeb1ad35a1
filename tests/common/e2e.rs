//! Set-up for the end-to-end tests against a real kube-apiserver + etcd
//! started by `testkit/control-plane/cluster up DIR` (`REGCRED_E2E_DIR=DIR`).
//! The tests are `#[ignore]`d unless asked for with `--ignored`.
//!
//! regcred always runs as a ServiceAccount holding exactly the RBAC the
//! chart renders for the scenario: [`Cluster::install`] runs `helm template`
//! on the chart with the scenario's values, applies its ServiceAccount, RBAC
//! objects (and, with `createSecrets`, its placeholder Secrets) as admin, mints
//! the ServiceAccount's token with the TokenRequest API and writes a
//! kubeconfig with it. The API server's audit log records every request, so a
//! test can assert that regcred was never refused (no 403) and count what it
//! asked for. Google is the test kit's emulator.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use regcred_testkit::Google;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::Output;

/// Why the e2e tests are ignored by default; shown by the test runner. An
/// attribute cannot name a constant, so each `#[ignore = "..."]` spells it
/// out (`tests/cli.rs` checks that they agree).
pub const NEEDS_CONTROL_PLANE: &str = "needs a real control plane: testkit/control-plane/cluster up DIR, then REGCRED_E2E_DIR=DIR cargo test --test 'e2e_*' -- --ignored";

/// The chart, relative to the workspace root.
pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/regcred");

/// The control plane the tests run against.
pub struct Cluster {
    pub dir: PathBuf,
    pub url: String,
    pub admin: Client,
    /// Audit log line ranges between a stop of kube-apiserver and its
    /// readiness again: a starting server answers 403 until its RBAC caches
    /// are filled, which says nothing about the chart's RBAC.
    startups: std::sync::Mutex<Vec<std::ops::Range<usize>>>,
}

impl Cluster {
    /// The control plane named by `REGCRED_E2E_DIR`. The tests that need it
    /// are `#[ignore]`d with [`NEEDS_CONTROL_PLANE`] as the reason, so this is
    /// reached only when they were asked for (`--ignored`): without the
    /// control plane the test fails, it never passes unrun.
    pub async fn get() -> Cluster {
        let dir = std::env::var_os("REGCRED_E2E_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("REGCRED_E2E_DIR is not set: {NEEDS_CONTROL_PLANE}"));
        Cluster::at(dir).await
    }

    /// The control plane whose state directory is `dir` (`cluster up DIR`,
    /// or the node's `node up DIR`).
    pub async fn at(dir: PathBuf) -> Cluster {
        let url = std::fs::read_to_string(dir.join("url")).expect("the directory holds a running control plane");
        let kubeconfig = kube::config::Kubeconfig::read_from(dir.join("kubeconfig")).expect("admin kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
        let admin = Client::try_from(config).expect("admin client");
        Cluster { dir, url: url.trim().to_string(), admin, startups: Default::default() }
    }

    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// A name no other test (in this run or an earlier one on the same
    /// control plane) uses: namespaces cannot be reused, they stay Terminating.
    pub fn unique(&self, prefix: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        format!("{prefix}-{}-{}-{:x}", std::process::id() % 10000, N.fetch_add(1, Ordering::SeqCst), nanos % 4096)
    }

    /// Creates a namespace with these labels.
    pub async fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(self.admin.clone()).create(&PostParams::default(), &ns).await.expect("create namespace");
    }

    pub async fn delete_namespace(&self, name: &str) {
        Api::<Namespace>::all(self.admin.clone())
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete namespace");
    }

    pub fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.admin.clone(), ns)
    }

    pub async fn secret(&self, ns: &str, name: &str) -> Option<Secret> {
        self.secrets(ns).get_opt(name).await.expect("get secret")
    }

    /// The auths document in `ns/name` under `key`.
    pub async fn secret_doc(&self, ns: &str, name: &str, key: &str) -> Option<Value> {
        let s = self.secret(ns, name).await?;
        let bytes = s.data?.remove(key)?.0;
        Some(serde_json::from_slice(&bytes).expect("JSON document"))
    }

    /// `kubectl ARGS` as admin, with `stdin` fed in; panics on failure.
    pub async fn kubectl(&self, args: &[&str], stdin: &str) -> String {
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.admin_kubeconfig())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl on PATH (testkit/control-plane/README or ../shared/tools/dev-tools.sh)");
        use tokio::io::AsyncWriteExt as _;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// `helm ARGS` as admin against the control plane.
    pub async fn helm(&self, args: &[&str]) -> Output {
        let out = Command::new("helm")
            .args(args)
            .env("KUBECONFIG", self.admin_kubeconfig())
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .output()
            .await
            .expect("helm on PATH");
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `helm template` of the chart as release `release` in `namespace`.
    pub async fn helm_template(&self, release: &str, namespace: &str, values: &Value) -> String {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), serde_json::to_vec(values).unwrap()).unwrap();
        let out = Command::new("helm")
            .args(["template", release, CHART, "--namespace", namespace, "--values"])
            .arg(file.path())
            .output()
            .await
            .expect("helm on PATH");
        assert!(out.status.success(), "helm template: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Installs what the chart renders for regcred's identity and access
    /// (ServiceAccount, Role/RoleBinding or ClusterRole/ClusterRoleBinding,
    /// and the placeholder Secrets of `createSecrets`) as release `release`
    /// in `namespace`, and returns regcred's view of the cluster: a kubeconfig
    /// holding the ServiceAccount's token.
    pub async fn install(&self, release: &str, namespace: &str, values: Value) -> Identity {
        let rendered = self.helm_template(release, namespace, &values).await;
        let kinds = ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Secret"];
        let docs = select_kinds(&rendered, &kinds);
        assert!(docs.contains("kind: ServiceAccount"), "the chart renders a ServiceAccount:\n{rendered}");
        self.kubectl(&["apply", "-f", "-"], &docs).await;
        let sa = kind_names(&rendered, "ServiceAccount").pop().unwrap();
        let mut id = self.identity(namespace, &sa).await;
        id.rendered = rendered;
        id
    }

    /// regcred's view of the cluster as the existing ServiceAccount
    /// `namespace/sa`: a kubeconfig holding a token from the TokenRequest API.
    pub async fn identity(&self, namespace: &str, sa: &str) -> Identity {
        let sa = sa.to_string();
        let token = self.token(namespace, &sa, None).await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            serde_json::to_vec_pretty(&json!({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "e2e", "cluster": {
                    "server": self.url,
                    "certificate-authority": self.dir.join("pki/ca.crt"),
                }}],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": sa, "namespace": namespace}}],
                "current-context": "e2e",
            }))
            .unwrap(),
        )
        .unwrap();
        Identity {
            user: format!("system:serviceaccount:{namespace}:{sa}"),
            namespace: namespace.to_string(),
            service_account: sa,
            rendered: String::new(),
            dir,
        }
    }

    /// A token for `namespace/sa` from the TokenRequest API.
    pub async fn token(&self, namespace: &str, sa: &str, audience: Option<&str>) -> String {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), namespace);
        let mut req = TokenRequest::default();
        req.spec.expiration_seconds = Some(3600);
        req.spec.audiences = audience.map(|a| vec![a.to_string()]).unwrap_or_default();
        let resp = api.create_token_request(sa, &PostParams::default(), &req).await.expect("TokenRequest");
        resp.status.expect("token").token
    }

    /// Every audit record of requests made by `user` (one JSON object each).
    pub fn audit(&self, user: &str) -> Vec<Value> {
        self.audit_lines(user).into_iter().map(|(_, e)| e).collect()
    }

    /// [`Cluster::audit`] with each record's line number in the log.
    fn audit_lines(&self, user: &str) -> Vec<(usize, Value)> {
        let text = std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        text.lines()
            .enumerate()
            .filter_map(|(i, l)| Some((i, serde_json::from_str::<Value>(l).ok()?)))
            .filter(|(_, e)| e["user"]["username"] == user)
            .collect()
    }

    fn audit_len(&self) -> usize {
        std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default().lines().count()
    }

    /// One audit record per request by `user` (a watch has two records, at
    /// its start and its end).
    pub fn requests(&self, user: &str) -> Vec<Value> {
        let mut seen = std::collections::HashSet::new();
        self.audit(user).into_iter().filter(|e| seen.insert(e["auditID"].as_str().unwrap_or("").to_string())).collect()
    }

    /// Runs `testkit/control-plane/cluster VERB DIR` (stop-apiserver, start-apiserver).
    pub async fn control(&self, verb: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/testkit/control-plane/cluster");
        let start = self.audit_len();
        let out = Command::new(script).arg(verb).arg(&self.dir).output().await.unwrap();
        assert!(out.status.success(), "cluster {verb}: {}", String::from_utf8_lossy(&out.stderr));
        if verb == "start-apiserver" {
            let mut startups = self.startups.lock().unwrap();
            let stopped = startups.pop().map_or(start, |r| r.start);
            startups.push(stopped..self.audit_len());
        } else if verb == "stop-apiserver" {
            self.startups.lock().unwrap().push(start..usize::MAX);
        }
    }

    /// `etcdctl ARGS` against the control plane's etcd.
    pub async fn etcdctl(&self, args: &[&str]) -> String {
        let endpoint = std::fs::read_to_string(self.dir.join("etcd-url")).unwrap();
        let out = Command::new("etcdctl")
            .args(args)
            .env("ETCDCTL_API", "3")
            .env("ETCDCTL_ENDPOINTS", endpoint.trim())
            .output()
            .await
            .expect("etcdctl on PATH (Debian's etcd-client)");
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// "VERB URI" of every request by `user` that the server answered 403.
    /// Requests that reached kube-apiserver while it was starting up are
    /// left out (see `startups`).
    pub fn forbidden(&self, user: &str) -> Vec<String> {
        let startups = self.startups.lock().unwrap().clone();
        self.audit_lines(user)
            .into_iter()
            .filter(|(i, _)| !startups.iter().any(|r| r.contains(i)))
            .map(|(_, e)| e)
            .filter(|e| e["responseStatus"]["code"] == 403)
            .map(|e| format!("{} {}", e["verb"].as_str().unwrap_or(""), e["requestURI"].as_str().unwrap_or("")))
            .collect()
    }

    /// Makes the kit's STS an OIDC provider for this API server's issuer,
    /// with the keys its discovery document points at, as Google trusts a
    /// cluster's issuer for workload identity federation.
    pub async fn trust_in_google(&self, google: &Google) {
        let (issuer, jwks) = self.oidc_issuer().await;
        google.trust_oidc_issuer(&issuer, &jwks, &[]);
    }

    /// This API server's ServiceAccount token issuer and the keys its OIDC
    /// discovery document points at: what a cloud's identity service
    /// fetches to trust a cluster's tokens.
    pub async fn oidc_issuer(&self) -> (String, Value) {
        let discovery: Value =
            serde_json::from_str(&self.kubectl(&["get", "--raw", "/.well-known/openid-configuration"], "").await)
                .unwrap();
        let issuer = discovery["issuer"].as_str().expect("issuer");
        assert_eq!(issuer, self.url, "the issuer is the API server's URL");
        let jwks_uri = discovery["jwks_uri"].as_str().expect("jwks_uri");
        let path = jwks_uri.strip_prefix(issuer).expect("JWKS served by the issuer");
        let jwks: Value = serde_json::from_str(&self.kubectl(&["get", "--raw", path], "").await).unwrap();
        (issuer.to_string(), jwks)
    }

    /// The credentials the kubelet would use for each image, with the pod's
    /// image-pull Secrets `secrets` (its own keyring code, cmd/keyring).
    pub async fn kubelet_credentials(&self, secrets: &[Secret], images: &[&str]) -> Value {
        let file = tempfile::NamedTempFile::new().unwrap();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": secrets});
        std::fs::write(file.path(), serde_json::to_vec(&list).unwrap()).unwrap();
        let out = Command::new(self.dir.join("bin/keyring")).arg(file.path()).args(images).output().await.unwrap();
        assert!(out.status.success(), "keyring: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// The documents of a multi-document YAML stream, without their `---` lines.
fn documents(yaml: &str) -> impl Iterator<Item = &str> {
    yaml.strip_prefix("---").unwrap_or(yaml).split("\n---").filter(|d| !d.trim().is_empty())
}

/// The documents of a multi-document YAML stream whose `kind` is one of `kinds`.
pub fn select_kinds(yaml: &str, kinds: &[&str]) -> String {
    documents(yaml)
        .filter(|doc| doc.lines().any(|l| kinds.iter().any(|k| l == format!("kind: {k}"))))
        .map(|doc| format!("---{doc}\n"))
        .collect()
}

/// `metadata.name` of each document of this kind (helm renders `name:` as
/// the first line of `metadata:`).
fn kind_names(yaml: &str, kind: &str) -> Vec<String> {
    documents(yaml)
        .filter(|doc| doc.lines().any(|l| l == format!("kind: {kind}")))
        .filter_map(|doc| {
            let mut lines = doc.lines().skip_while(|l| *l != "metadata:");
            lines.next()?;
            Some(lines.next()?.trim().strip_prefix("name: ")?.trim_matches('"').to_string())
        })
        .collect()
}

/// regcred's identity in a scenario: the chart's ServiceAccount and a
/// kubeconfig holding its token.
pub struct Identity {
    /// `system:serviceaccount:NS:NAME`, as the audit log names it.
    pub user: String,
    pub namespace: String,
    pub service_account: String,
    /// Everything `helm template` rendered ([`Cluster::install`] only).
    pub rendered: String,
    pub dir: tempfile::TempDir,
}

impl Identity {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `regcred ARGS` as this ServiceAccount, with `google` for Google and
    /// nothing inherited from the machine.
    pub fn command(&self, google: &Google, args: &[&str]) -> Command {
        let key = self.path("key.json");
        if !key.exists() {
            google.write_key_file(&key);
        }
        let mut cmd = super::isolated(args, self.dir.path(), google);
        cmd.env("GOOGLE_APPLICATION_CREDENTIALS", &key);
        cmd
    }

    /// `regcred once ARGS` to completion.
    pub async fn once(&self, google: &Google, args: &[&str]) -> Output {
        let mut all = vec!["once"];
        all.extend_from_slice(args);
        super::finish(self.command(google, &all).spawn().unwrap()).await
    }

    /// `regcred run --admin-addr off ARGS` in the background.
    pub fn daemon(&self, google: &Google, args: &[&str]) -> Child {
        let mut all = vec!["run", "--admin-addr", "off"];
        all.extend_from_slice(args);
        self.command(google, &all).spawn().unwrap()
    }
}

/// The password in `doc` for `host`.
pub fn password_for(doc: &Value, host: &str) -> String {
    doc["auths"][host]["password"].as_str().unwrap_or_default().to_string()
}

/// Decodes a Secret's `key`.
pub fn data_json(secret: &Secret, key: &str) -> Option<Value> {
    let bytes = &secret.data.as_ref()?.get(key)?.0;
    serde_json::from_slice(bytes).ok()
}

pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Events (events.k8s.io/v1) in `ns` about the object named `name`.
pub async fn events_about(cluster: &Cluster, ns: &str, name: &str) -> Vec<Value> {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        cluster.admin.clone(),
        ns,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
            "events",
        ),
    );
    let list = api.list(&Default::default()).await.expect("list events");
    list.items
        .into_iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .filter(|e| e["regarding"]["name"] == name)
        .collect()
}
