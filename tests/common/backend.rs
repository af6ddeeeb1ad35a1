//! The Kubernetes side of the kit: the test kit's emulator by default, or the
//! real control plane when `REGCRED_E2E_DIR` names one (`testkit/control-plane/
//! cluster up DIR`; its admin kubeconfig is `DIR/kubeconfig`): the one switch
//! for the real API server, here and in the e2e tests.
//!
//! Tests do what they need to Kubernetes through [`Kube`] only, so the same
//! test runs against either: any test that passes on one and fails on the
//! other is a bug in the emulator or in regcred. Objects are JSON as the API
//! server returns them.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::config::Kubeconfig;
use kube::{Api, Client};
use regcred_testkit::KubeApi;
use serde_json::{json, Value};

/// The variable naming the real control plane's directory.
pub const REAL_SERVER: &str = "REGCRED_E2E_DIR";

/// The admin kubeconfig of the real API server the tests should use, if any.
pub fn real_server() -> Option<PathBuf> {
    std::env::var_os(REAL_SERVER).filter(|v| !v.is_empty()).map(|d| PathBuf::from(d).join("kubeconfig"))
}

/// Where the kit's Kubernetes requests go.
pub enum Kube {
    Emulator(KubeApi),
    /// A real API server, as its admin.
    Server {
        client: Client,
        kubeconfig: Box<Kubeconfig>,
    },
}

impl Kube {
    pub async fn emulator() -> Kube {
        Kube::Emulator(KubeApi::start().await)
    }

    /// The real API server whose admin kubeconfig is at `path`.
    pub async fn server(path: &Path) -> Kube {
        let kubeconfig = Kubeconfig::read_from(path)
            .unwrap_or_else(|e| panic!("{REAL_SERVER}={}: not a kubeconfig: {e}", path.display()));
        let config = kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &Default::default())
            .await
            .unwrap_or_else(|e| panic!("{REAL_SERVER}={}: {e}", path.display()));
        Kube::Server { client: Client::try_from(config).expect("a client"), kubeconfig: Box::new(kubeconfig) }
    }

    pub fn is_real(&self) -> bool {
        matches!(self, Kube::Server { .. })
    }

    /// Writes the kubeconfig regcred gets: the same server and user, with
    /// `namespace` as the current namespace.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) {
        match self {
            Kube::Emulator(emulator) => emulator.write_kubeconfig(path, namespace),
            Kube::Server { kubeconfig, .. } => {
                let mut kubeconfig = Kubeconfig::clone(kubeconfig);
                let current = kubeconfig.current_context.clone().expect("a current context");
                let context = kubeconfig.contexts.iter_mut().find(|c| c.name == current).expect("the current context");
                context.context.as_mut().expect("a context").namespace = Some(namespace.to_string());
                std::fs::write(path, serde_json::to_vec_pretty(&kubeconfig).unwrap()).unwrap();
            }
        }
    }

    /// Creates a namespace with these labels.
    pub async fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        match self {
            Kube::Emulator(emulator) => emulator.create_namespace(name, labels),
            Kube::Server { client, .. } => {
                let ns: Namespace = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()}
                }))
                .unwrap();
                Api::<Namespace>::all(client.clone())
                    .create(&PostParams::default(), &ns)
                    .await
                    .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
            }
        }
    }

    /// Adds or overwrites labels on a namespace; an empty value removes the label.
    pub async fn label_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        match self {
            Kube::Emulator(emulator) => emulator.label_namespace(name, labels),
            Kube::Server { client, .. } => {
                let labels: serde_json::Map<String, Value> = labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), if v.is_empty() { Value::Null } else { json!(v) }))
                    .collect();
                let patch = json!({"metadata": {"labels": labels}});
                Api::<Namespace>::all(client.clone())
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .unwrap_or_else(|e| panic!("label namespace {name}: {e}"));
            }
        }
    }

    /// The object `ns/name` of a kind (`secrets` or `serviceaccounts`).
    pub async fn object(&self, ns: &str, plural: &str, name: &str) -> Option<Value> {
        match self {
            Kube::Emulator(emulator) => emulator.object(ns, plural, name),
            Kube::Server { client, .. } => {
                let found = dynamic(client, ns, plural).get_opt(name).await;
                found.unwrap_or_else(|e| panic!("get {plural} {ns}/{name}: {e}")).map(to_json)
            }
        }
    }

    pub async fn secret(&self, ns: &str, name: &str) -> Option<Value> {
        self.object(ns, "secrets", name).await
    }

    /// Creates or overwrites an object as "someone else" would: whatever
    /// `obj` says, written over the current object (`metadata.namespace` and
    /// `resourceVersion` are the kit's business).
    pub async fn put_object(&self, ns: &str, plural: &str, mut obj: Value) {
        obj["metadata"]["namespace"] = json!(ns);
        match self {
            Kube::Emulator(emulator) => emulator.put_object(ns, plural, obj),
            Kube::Server { client, .. } => {
                let api = dynamic(client, ns, plural);
                let resource = api_resource(plural);
                obj["apiVersion"] = json!(resource.api_version);
                obj["kind"] = json!(resource.kind);
                let name = obj["metadata"]["name"].as_str().expect("metadata.name").to_string();
                // Someone else's write wins over regcred's, whatever it last read.
                for _ in 0..10 {
                    let current = api.get_opt(&name).await.unwrap_or_else(|e| panic!("get {plural} {ns}/{name}: {e}"));
                    let result = match current {
                        None => {
                            obj["metadata"].as_object_mut().unwrap().remove("resourceVersion");
                            let obj: DynamicObject = serde_json::from_value(obj.clone()).unwrap();
                            api.create(&PostParams::default(), &obj).await
                        }
                        Some(current) => {
                            obj["metadata"]["resourceVersion"] = json!(current.metadata.resource_version);
                            let obj: DynamicObject = serde_json::from_value(obj.clone()).unwrap();
                            api.replace(&name, &PostParams::default(), &obj).await
                        }
                    };
                    match result {
                        Ok(_) => return,
                        Err(kube::Error::Api(e)) if e.code == 409 => continue,
                        Err(e) => panic!("put {plural} {ns}/{name}: {e}"),
                    }
                }
                panic!("put {plural} {ns}/{name}: ten conflicts in a row");
            }
        }
    }

    pub async fn put_secret(&self, ns: &str, secret: Value) {
        self.put_object(ns, "secrets", secret).await
    }

    /// Deletes an object; nothing happens if it does not exist.
    pub async fn delete_object(&self, ns: &str, plural: &str, name: &str) {
        match self {
            Kube::Emulator(emulator) => emulator.delete_object(ns, plural, name),
            Kube::Server { client, .. } => {
                match dynamic(client, ns, plural).delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => panic!("delete {plural} {ns}/{name}: {e}"),
                }
            }
        }
    }

    /// The `events.k8s.io/v1` Events of a namespace, in name order.
    pub async fn events(&self, ns: &str) -> Vec<Value> {
        match self {
            Kube::Emulator(emulator) => emulator.events(ns),
            Kube::Server { client, .. } => {
                let list = dynamic(client, ns, "events").list(&ListParams::default()).await.expect("list events");
                list.items.into_iter().map(to_json).collect()
            }
        }
    }
}

/// The kinds tests touch, by their plural.
fn api_resource(plural: &str) -> ApiResource {
    match plural {
        "secrets" => ApiResource::erase::<Secret>(&()),
        "serviceaccounts" => ApiResource::erase::<ServiceAccount>(&()),
        "events" => ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event"), "events"),
        "leases" => {
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"), "leases")
        }
        _ => panic!("the kit does not handle {plural}"),
    }
}

fn dynamic(client: &Client, ns: &str, plural: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &api_resource(plural))
}

fn to_json(obj: DynamicObject) -> Value {
    serde_json::to_value(obj).unwrap()
}
