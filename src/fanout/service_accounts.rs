//! Adding the pull Secret to ServiceAccounts' `imagePullSecrets`, so pods
//! in the namespace use it without naming it.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Patch;
use kube::Api;
use serde_json::json;

use crate::cluster::Throttle;
use crate::sink::managed::MAX_CONFLICTS;
use crate::sink::SinkError;

/// The annotation that opts a ServiceAccount in under
/// `--patch-annotated-service-accounts`.
pub(super) const OPT_IN_ANNOTATION: &str = "regcred.dev/image-pull-secret";

/// Which ServiceAccounts to patch in each namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceAccountPatching {
    /// By name (`--patch-service-account default`).
    pub names: Vec<String>,
    /// Those annotated `regcred.dev/image-pull-secret: "true"`.
    pub annotated: bool,
}

impl ServiceAccountPatching {
    pub fn enabled(&self) -> bool {
        !self.names.is_empty() || self.annotated
    }

    /// Patches every chosen ServiceAccount in `ns` to list `secret`, its
    /// requests through `throttle` and its failures reported as `sink`'s.
    /// Returns `false` when a named one does not exist yet (the namespace
    /// controller creates `default` moments after the namespace), so the
    /// caller tries again later.
    pub(super) async fn patch(
        &self,
        api: &Api<ServiceAccount>,
        ns: &str,
        secret: &str,
        throttle: &Throttle,
        sink: &str,
    ) -> Result<bool, SinkError> {
        let accounts = Accounts { api, ns, throttle, sink };
        let mut all_present = true;
        for name in &self.names {
            match accounts.send("get", name, api.get_opt(name)).await? {
                Some(sa) => accounts.add_pull_secret(&sa, secret).await?,
                None => all_present = false,
            }
        }
        if self.annotated {
            let list = accounts.send("list", "", api.list(&Default::default())).await?;
            for sa in list.items.iter().filter(|sa| opted_in(sa)) {
                accounts.add_pull_secret(sa, secret).await?;
            }
        }
        Ok(all_present)
    }
}

/// The ServiceAccounts of one namespace, as one write of fan-out sees them.
struct Accounts<'a> {
    api: &'a Api<ServiceAccount>,
    ns: &'a str,
    throttle: &'a Throttle,
    /// The fan-out sink's name in messages ("secret ci/gcr-pull").
    sink: &'a str,
}

impl Accounts<'_> {
    /// One request about the ServiceAccount `name` (all of them when empty).
    async fn send<T>(
        &self,
        verb: &'static str,
        name: &str,
        request: impl std::future::Future<Output = kube::Result<T>>,
    ) -> Result<T, SinkError> {
        let resource = if name.is_empty() { "serviceaccounts".to_string() } else { format!("serviceaccounts/{name}") };
        crate::sink::send(Some(self.throttle), self.sink, verb, &resource, self.ns, request).await
    }

    /// Idempotent and conservative: the whole list is sent (a merge patch
    /// replaces lists) with the resourceVersion it was built from, so a
    /// concurrent change by someone else is never overwritten; regcred
    /// re-reads and retries on conflict.
    async fn add_pull_secret(&self, sa: &ServiceAccount, secret: &str) -> Result<(), SinkError> {
        let name = sa.metadata.name.clone().unwrap_or_default();
        let mut sa = sa.clone();
        for _ in 0..MAX_CONFLICTS {
            let Some(list) = with_pull_secret(&sa, secret) else { return Ok(()) };
            let patch = json!({
                "metadata": { "resourceVersion": sa.metadata.resource_version },
                "imagePullSecrets": list,
            });
            let params = crate::cluster::patch_params();
            match self.send("patch", &name, self.api.patch(&name, &params, &Patch::Merge(&patch))).await {
                Ok(_) => return Ok(()),
                Err(SinkError::Api { code: 409, .. }) => {
                    match self.send("get", &name, self.api.get_opt(&name)).await? {
                        Some(fresh) => sa = fresh,
                        None => return Ok(()),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(SinkError::ConflictStorm { sink: format!("serviceaccount {}/{name}", self.ns), attempts: MAX_CONFLICTS })
    }
}

fn opted_in(sa: &ServiceAccount) -> bool {
    sa.metadata.annotations.as_ref().and_then(|a| a.get(OPT_IN_ANNOTATION)).is_some_and(|v| v == "true")
}

/// The `imagePullSecrets` list with `secret` added, or `None` if already there.
pub(super) fn with_pull_secret(sa: &ServiceAccount, secret: &str) -> Option<Vec<serde_json::Value>> {
    let existing = sa.image_pull_secrets.as_deref().unwrap_or_default();
    if existing.iter().any(|r| r.name == secret) {
        return None;
    }
    let mut list: Vec<serde_json::Value> = existing.iter().map(|r| json!({ "name": r.name })).collect();
    list.push(json!({ "name": secret }));
    Some(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::LocalObjectReference;

    fn sa(secrets: &[&str]) -> ServiceAccount {
        ServiceAccount {
            image_pull_secrets: Some(secrets.iter().map(|s| LocalObjectReference { name: s.to_string() }).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn adds_once_and_keeps_other_entries() {
        assert_eq!(
            with_pull_secret(&sa(&["theirs"]), "gcr-pull"),
            Some(vec![json!({"name": "theirs"}), json!({"name": "gcr-pull"})])
        );
        assert_eq!(with_pull_secret(&sa(&["theirs", "gcr-pull"]), "gcr-pull"), None);
        assert_eq!(with_pull_secret(&ServiceAccount::default(), "gcr-pull"), Some(vec![json!({"name": "gcr-pull"})]));
    }
}
