//! The real node: `testkit/control-plane/node up DIR` (`REGCRED_NODE_DIR=DIR`),
//! a kubelet and containerd beside a real control plane, a registry under an
//! Artifact Registry host name that accepts what Google would accept, and
//! Google's emulator at the metadata server's address.
//!
//! The tests that need it are `#[ignore]`d with the reason, so a machine
//! without the node reports them as ignored; CI starts the node and runs them
//! with `--ignored`, and there a missing node fails the test.
//!
//! A test holds a [`Scene`]: when the test panics, the scene prints what the
//! failure needs (`node dump`: the namespaces' pods and events, the tails of
//! the kubelet's, containerd's, the registry's and Google's logs).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

use super::e2e::{b64, Cluster};
use super::Output;

/// Why the node tests are ignored by default; shown by the test runner.
pub const NEEDS_NODE: &str =
    "needs the real node: testkit/control-plane/node up DIR, then REGCRED_NODE_DIR=DIR cargo test --test node -- --ignored";

/// The node's image that only the emulator's service account may pull.
pub const PRIVATE_IMAGE: &str = "regcred-node/private/app:1";

/// Google service accounts of the node's pod identities: the reader may
/// pull from `regcred-node/private`, the outsider may not; both may be
/// impersonated (`node up` tells the emulator).
pub const POD_READER: &str = "pod-reader@regcred-node.iam.gserviceaccount.com";
pub const POD_OUTSIDER: &str = "pod-outsider@regcred-node.iam.gserviceaccount.com";

/// The script that runs the node.
const NODE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testkit/control-plane/node");

pub struct Node {
    pub cluster: Cluster,
    /// The registry's host, an Artifact Registry location's.
    pub registry: String,
    /// The emulator's service account (what the metadata server hands out).
    pub service_account: String,
    /// How long the emulator's access tokens live.
    pub token_lifetime: Duration,
    /// The emulator's workload identity pool provider (STS audience).
    pub sts_audience: String,
    /// The AWS and Azure emulators and their registries.
    pub clouds: Clouds,
}

/// What `node up` wrote to `aws/aws.json` and `azure/azure.json`.
pub struct Clouds {
    /// The ECR registry's host (its front authenticates as ECR does).
    pub ecr_registry: String,
    /// STS and ECR's API, where pods reach them.
    pub aws_url: String,
    /// The role a pod's ServiceAccount token may assume.
    pub aws_role: String,
    /// The ACR registry's host (its front serves ACR's token server).
    pub acr_registry: String,
    /// Entra ID and the registry's `/oauth2/exchange`, where pods reach them.
    pub azure_url: String,
    /// The app that may pull, federated with `regcred-clouds/regcred`.
    pub azure_client_id: String,
    pub azure_tenant_id: String,
}

impl Node {
    /// The node named by `REGCRED_NODE_DIR`; panics (the test fails) when it
    /// is not set: the test was asked for with `--ignored`.
    pub async fn get() -> Node {
        let dir = std::env::var_os("REGCRED_NODE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("REGCRED_NODE_DIR is not set: {NEEDS_NODE}"));
        let about = |file: &str| -> Value {
            serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("node's {file}: {e}")))
                .unwrap_or_else(|e| panic!("{file}: {e}"))
        };
        let (google, aws, azure) = (about("google/google.json"), about("aws/aws.json"), about("azure/azure.json"));
        let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}")).to_string();
        let clouds = Clouds {
            ecr_registry: text(&aws, "registry"),
            aws_url: text(&aws, "url"),
            aws_role: text(&aws, "role_arn"),
            acr_registry: text(&azure, "login_server"),
            azure_url: text(&azure, "url"),
            azure_client_id: text(&azure, "client_id"),
            azure_tenant_id: text(&azure, "tenant_id"),
        };
        Node {
            cluster: Cluster::at(dir).await,
            registry: "europe-west1-docker.pkg.dev".to_string(),
            service_account: google["service_account"].as_str().expect("service_account").to_string(),
            token_lifetime: Duration::from_secs(google["token_lifetime_seconds"].as_u64().expect("lifetime")),
            sts_audience: google["sts_audience"].as_str().expect("sts_audience").to_string(),
            clouds,
        }
    }

    /// `REGISTRY/PATH`.
    pub fn image(&self, path: &str) -> String {
        format!("{}/{path}", self.registry)
    }

    /// The chart's `image` values for the regcred image CI loads into the
    /// node's registry (`node load localhost/regcred:ci regcred:ci`): a public
    /// repository, as the published image is.
    pub fn regcred_image(&self) -> Value {
        json!({"repository": self.image("regcred-node/public/regcred"), "tag": "ci"})
    }

    /// A namespace of the test's own, with its `default` ServiceAccount (the
    /// controller-manager makes it; a pod cannot be created before it exists).
    pub async fn namespace(&self, prefix: &str) -> String {
        let ns = self.cluster.unique(prefix);
        self.create_namespace(&ns).await;
        ns
    }

    /// The namespace `name`, new: one that an earlier run on this node left
    /// is deleted first. For what the node trusts by name (the ServiceAccount
    /// Entra ID's app is federated with).
    pub async fn fixed_namespace(&self, name: &str) -> String {
        self.cluster.kubectl(&["delete", "namespace", name, "--ignore-not-found", "--wait=true"], "").await;
        self.create_namespace(name).await;
        name.to_string()
    }

    async fn create_namespace(&self, ns: &str) {
        self.cluster.create_namespace(ns, &[]).await;
        let sas: Api<ServiceAccount> = Api::namespaced(self.cluster.admin.clone(), ns);
        super::e2e::eventually(Duration::from_secs(30), "the namespace's default ServiceAccount", || async {
            sas.get_opt("default").await.ok().flatten()
        })
        .await;
    }

    /// A fresh access token from the metadata server, and when it expires:
    /// what `gcloud auth print-access-token` gives a user on a GKE node.
    pub async fn metadata_token(&self) -> (String, Instant) {
        let out = tokio::process::Command::new("curl")
            .args(["-fsS", "-H", "Metadata-Flavor: Google"])
            .arg("http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token")
            .output()
            .await
            .expect("curl");
        assert!(out.status.success(), "metadata server: {}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).expect("token JSON");
        let expires_in = Duration::from_secs(v["expires_in"].as_u64().expect("expires_in"));
        (v["access_token"].as_str().expect("access_token").to_string(), Instant::now() + expires_in)
    }

    /// What `kubectl create secret docker-registry NAME --docker-server=REGISTRY
    /// --docker-username=oauth2accesstoken --docker-password=TOKEN` creates.
    pub async fn docker_login_secret(&self, ns: &str, name: &str, token: &str) {
        self.pull_secret(ns, name, "oauth2accesstoken", token).await
    }

    /// A `kubernetes.io/dockerconfigjson` Secret for the node's registry.
    pub async fn pull_secret(&self, ns: &str, name: &str, username: &str, password: &str) {
        let auth = b64(&format!("{username}:{password}"));
        let doc = json!({"auths": {&self.registry: {"username": username, "password": password, "auth": auth}}});
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": b64(&doc.to_string())},
        }))
        .unwrap();
        self.cluster.secrets(ns).create(&PostParams::default(), &secret).await.expect("create pull Secret");
    }

    /// Creates a pod running `image` (pulled `Always`), with `pull_secret` as
    /// its image-pull Secret when given.
    pub async fn create_pod(&self, ns: &str, name: &str, image: &str, pull_secret: Option<&str>) {
        self.create_pod_pulling(ns, name, image, pull_secret, "Always").await
    }

    /// A pod named `name` running `image` (pulled `Always`) as the
    /// ServiceAccount `sa`, with no pull Secret.
    pub async fn create_pod_as(&self, ns: &str, name: &str, image: &str, sa: &str) {
        self.create_app_pod(ns, name, image, "Always", json!({"serviceAccountName": sa})).await
    }

    /// [`Node::create_pod`] with this `imagePullPolicy`.
    pub async fn create_pod_pulling(&self, ns: &str, name: &str, image: &str, pull_secret: Option<&str>, policy: &str) {
        let secrets = pull_secret.map(|s| vec![json!({"name": s})]).unwrap_or_default();
        self.create_app_pod(ns, name, image, policy, json!({"imagePullSecrets": secrets})).await
    }

    /// A pod with one container `app` running `image`, and `spec` merged
    /// into its spec.
    async fn create_app_pod(&self, ns: &str, name: &str, image: &str, policy: &str, spec: Value) {
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "containers": [{"name": "app", "image": image, "imagePullPolicy": policy}],
                "terminationGracePeriodSeconds": 0,
            },
        });
        for (k, v) in spec.as_object().expect("spec fields") {
            pod["spec"][k] = v.clone();
        }
        let pod: Pod = serde_json::from_value(pod).unwrap();
        Api::<Pod>::namespaced(self.cluster.admin.clone(), ns)
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
    }

    /// How the pull of the pod's first container ended: waits until the
    /// container runs or its pull fails.
    pub async fn pull_outcome(&self, ns: &str, name: &str) -> Pull {
        let pods: Api<Pod> = Api::namespaced(self.cluster.admin.clone(), ns);
        super::e2e::eventually(Duration::from_secs(60), &format!("the pull for pod {ns}/{name}"), || async {
            let pod = pods.get(name).await.ok()?;
            let status = pod.status?.container_statuses?.into_iter().next()?;
            let state = status.state?;
            if state.running.is_some() || state.terminated.is_some() {
                return Some(Pull::Pulled);
            }
            let waiting = state.waiting?;
            match waiting.reason.as_deref() {
                Some("ErrImagePull" | "ImagePullBackOff") => Some(Pull::Refused(waiting.message.unwrap_or_default())),
                _ => None,
            }
        })
        .await
    }

    /// The password regcred (or anyone) wrote for the node's registry into
    /// the pull Secret `ns/name`.
    pub async fn pull_password(&self, ns: &str, name: &str) -> Option<String> {
        let doc = self.cluster.secret_doc(ns, name, ".dockerconfigjson").await?;
        Some(doc["auths"][&self.registry]["password"].as_str()?.to_string())
    }

    /// The logs of `container` in pod `ns/name` (empty before it starts).
    pub async fn logs(&self, ns: &str, name: &str, container: &str) -> String {
        let params = kube::api::LogParams { container: Some(container.to_string()), ..Default::default() };
        // Empty until the container has started.
        Api::<Pod>::namespaced(self.cluster.admin.clone(), ns).logs(name, &params).await.unwrap_or_default()
    }

    /// Restarts the kubelet with these flags added (none: as `node up`
    /// started it).
    pub async fn restart_kubelet(&self, flags: &[&str]) {
        let out = tokio::process::Command::new(NODE)
            .arg("kubelet")
            .arg(&self.cluster.dir)
            .args(flags)
            .output()
            .await
            .expect("node kubelet");
        assert!(out.status.success(), "node kubelet: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Waits until the chart's node installer has put regcred into `bin_dir`
    /// and the CredentialProviderConfig at `config`.
    pub async fn installed_provider(&self, bin_dir: &Path, config: &Path) {
        super::e2e::eventually(Duration::from_secs(60), "the installer's files", || async {
            (config.exists() && bin_dir.join("regcred").exists()).then_some(())
        })
        .await;
    }

    /// Restarts the kubelet with the README's two credential-provider flags.
    pub async fn restart_kubelet_with_provider(&self, bin_dir: &Path, config: &Path) {
        let config_flag = format!("--image-credential-provider-config={}", config.display());
        let bin_flag = format!("--image-credential-provider-bin-dir={}", bin_dir.display());
        self.restart_kubelet(&[&config_flag, &bin_flag]).await;
    }

    /// The kubelet's `/stats/summary` entry for the pod `ns/name`, through
    /// the API server's node proxy.
    pub async fn pod_stats(&self, ns: &str, name: &str) -> Option<Value> {
        let req = hyper::Request::get("/api/v1/nodes/regcred-node/proxy/stats/summary").body(Vec::new()).unwrap();
        let summary: Value = self.cluster.admin.request(req).await.ok()?;
        summary["pods"]
            .as_array()?
            .iter()
            .find(|p| p["podRef"]["namespace"] == ns && p["podRef"]["name"] == name)
            .cloned()
    }

    /// The pods in `ns` with this label selector.
    pub async fn pods(&self, ns: &str, selector: &str) -> Vec<Pod> {
        let lp = kube::api::ListParams::default().labels(selector);
        Api::<Pod>::namespaced(self.cluster.admin.clone(), ns).list(&lp).await.expect("list pods").items
    }

    /// The median time from creating a pod (pulling `Always`) to its
    /// container running, over `n` pods one after another; `Err` names the
    /// first pod that did not pull.
    pub async fn median_pull(
        &self,
        ns: &str,
        prefix: &str,
        image: &str,
        secret: Option<&str>,
        n: usize,
    ) -> Result<Duration, String> {
        let mut times = Vec::new();
        for i in 0..n {
            let name = format!("{prefix}-{i}");
            let start = Instant::now();
            self.create_pod(ns, &name, image, secret).await;
            let outcome = self.pull_outcome(ns, &name).await;
            times.push(start.elapsed());
            self.delete_pod(ns, &name).await;
            if outcome != Pull::Pulled {
                return Err(format!("{ns}/{name}: {outcome:?}"));
            }
        }
        times.sort();
        Ok(times[n / 2])
    }

    pub async fn delete_pod(&self, ns: &str, name: &str) {
        let _ = Api::<Pod>::namespaced(self.cluster.admin.clone(), ns)
            .delete(name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
            .await;
    }

    /// `helm install RELEASE CHART -n NS --values VALUES --wait` with hooks:
    /// what a user runs.
    pub async fn helm_install(&self, release: &str, ns: &str, values: &Value) -> Output {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), serde_json::to_vec(values).unwrap()).unwrap();
        let file = file.path().to_str().unwrap();
        self.cluster
            .helm(&[
                "install",
                release,
                super::e2e::CHART,
                "--namespace",
                ns,
                "--values",
                file,
                "--wait",
                "--timeout",
                "180s",
            ])
            .await
    }

    /// Prints the node's state for these namespaces if the test fails
    /// before the returned guard is dropped.
    pub fn scene(&self, namespaces: &[&str]) -> Scene {
        Scene { dir: self.cluster.dir.clone(), namespaces: namespaces.iter().map(|s| s.to_string()).collect() }
    }
}

/// How a pull ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pull {
    Pulled,
    /// The kubelet's message (containerd's error).
    Refused(String),
}

/// See [`Node::scene`].
pub struct Scene {
    dir: PathBuf,
    namespaces: Vec<String>,
}

impl Drop for Scene {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let out = std::process::Command::new(NODE).arg("dump").arg(&self.dir).args(&self.namespaces).output();
        match out {
            Ok(out) => eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
            Err(e) => eprintln!("node dump: {e}"),
        }
    }
}
