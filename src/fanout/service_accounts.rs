//! Adding the pull Secret to ServiceAccounts' `imagePullSecrets`, so pods
//! in the namespace use it without naming it.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Patch;
use kube::Api;
use serde_json::json;

use super::Shared;
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

    /// Patches every chosen ServiceAccount in `ns`. Returns `false` when a
    /// named one does not exist yet (the namespace controller creates
    /// `default` moments after the namespace), so the caller tries again later.
    pub(super) async fn patch(&self, shared: &Shared, ns: &str, api: &Api<ServiceAccount>) -> Result<bool, SinkError> {
        let secret = &shared.config.secret_name;
        let mut all_present = true;
        for name in &self.names {
            match shared.call(ns, "get", api.get_opt(name)).await.map_err(|e| on_accounts(e, name))? {
                Some(sa) => add_pull_secret(shared, ns, api, &sa, secret).await.map_err(|e| on_accounts(e, name))?,
                None => all_present = false,
            }
        }
        if self.annotated {
            let list = shared.call(ns, "list", api.list(&Default::default())).await.map_err(|e| on_accounts(e, ""))?;
            for sa in list.items.iter().filter(|sa| opted_in(sa)) {
                let name = sa.metadata.name.as_deref().unwrap_or_default();
                add_pull_secret(shared, ns, api, sa, secret).await.map_err(|e| on_accounts(e, name))?;
            }
        }
        Ok(all_present)
    }
}

/// Forbidden answers name the ServiceAccount, not the Secret.
fn on_accounts(e: SinkError, name: &str) -> SinkError {
    match e {
        SinkError::Forbidden { sink, verb, namespace, .. } => {
            let resource =
                if name.is_empty() { "serviceaccounts".to_string() } else { format!("serviceaccounts/{name}") };
            SinkError::Forbidden { sink, verb, resource, namespace }
        }
        other => other,
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

/// Idempotent and conservative: the whole list is sent (a merge patch
/// replaces lists) with the resourceVersion it was built from, so a
/// concurrent change by someone else is never overwritten; regcred re-reads
/// and retries on conflict.
async fn add_pull_secret(
    shared: &Shared,
    ns: &str,
    api: &Api<ServiceAccount>,
    sa: &ServiceAccount,
    secret: &str,
) -> Result<(), SinkError> {
    let name = sa.metadata.name.clone().unwrap_or_default();
    let mut sa = sa.clone();
    for _ in 0..MAX_CONFLICTS {
        let Some(list) = with_pull_secret(&sa, secret) else { return Ok(()) };
        let patch = json!({
            "metadata": { "resourceVersion": sa.metadata.resource_version },
            "imagePullSecrets": list,
        });
        match shared.call(ns, "patch", api.patch(&name, &crate::cluster::patch_params(), &Patch::Merge(&patch))).await {
            Ok(_) => return Ok(()),
            Err(SinkError::Api { code: 409, .. }) => match shared.call(ns, "get", api.get_opt(&name)).await? {
                Some(fresh) => sa = fresh,
                None => return Ok(()),
            },
            Err(e) => return Err(e),
        }
    }
    Err(SinkError::ConflictStorm { sink: format!("serviceaccount {ns}/{name}"), attempts: MAX_CONFLICTS })
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
