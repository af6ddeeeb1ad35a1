//! The kubelet's side: the `CredentialProviderConfig`
//! (`kubelet.config.k8s.io/v1`) that makes the kubelet run
//! `regcred credential-provider`. The README's two examples and what
//! `install-credential-provider` writes on nodes both come from [`config`].

use serde::Serialize;

use super::{PoolProvider, API_VERSION, DEFAULT_PATTERNS, GOOGLE_SERVICE_ACCOUNT_ANNOTATION};

/// The provider's name in the config, which is also the file name the
/// kubelet runs in its `--image-credential-provider-bin-dir`.
pub(crate) const PROVIDER_NAME: &str = "regcred";

/// How long the kubelet caches an answer that carries no `cacheDuration`.
/// regcred always sends one, so this only matters to the kubelet's
/// validation, which requires the field.
pub(crate) const DEFAULT_CACHE_DURATION: &str = "10m";

/// Whose identity the kubelet's pulls use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Identity {
    /// No `tokenAttributes`: regcred finds the node's credentials.
    Node,
    /// `tokenAttributes`: the kubelet hands regcred a token for the pod's
    /// ServiceAccount, which regcred exchanges at this workload identity pool
    /// provider.
    Pod { pool_provider: PoolProvider },
}

/// The whole file.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CredentialProviderConfig {
    pub(crate) api_version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) providers: Vec<Provider>,
}

/// One `providers` entry.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Provider {
    pub(crate) name: &'static str,
    pub(crate) api_version: &'static str,
    pub(crate) match_images: Vec<&'static str>,
    pub(crate) default_cache_duration: &'static str,
    pub(crate) args: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_attributes: Option<TokenAttributes>,
}

/// KEP-4412's `tokenAttributes`: which token the kubelet requests for the pod.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenAttributes {
    pub(crate) service_account_token_audience: String,
    /// `ServiceAccount`: pods of different ServiceAccounts never share a credential.
    pub(crate) cache_type: &'static str,
    pub(crate) require_service_account: bool,
    pub(crate) optional_service_account_annotation_keys: Vec<&'static str>,
}

/// The config that runs `regcred credential-provider` with `identity`, then
/// `extra_args` (further `credential-provider` flags, such as `--key-file`).
/// The token's audience is the pool provider's default allowed audience:
/// `https:` followed by its resource name.
pub(crate) fn config(identity: &Identity, extra_args: &[String]) -> CredentialProviderConfig {
    let mut args = vec!["credential-provider".to_string()];
    let token_attributes = match identity {
        Identity::Node => None,
        Identity::Pod { pool_provider } => {
            args.push(format!("--workload-identity-provider={pool_provider}"));
            Some(TokenAttributes {
                service_account_token_audience: format!("https:{pool_provider}"),
                cache_type: "ServiceAccount",
                require_service_account: true,
                optional_service_account_annotation_keys: vec![GOOGLE_SERVICE_ACCOUNT_ANNOTATION],
            })
        }
    };
    args.extend(extra_args.iter().cloned());
    CredentialProviderConfig {
        api_version: "kubelet.config.k8s.io/v1",
        kind: "CredentialProviderConfig",
        providers: vec![Provider {
            name: PROVIDER_NAME,
            api_version: API_VERSION,
            match_images: DEFAULT_PATTERNS.to_vec(),
            default_cache_duration: DEFAULT_CACHE_DURATION,
            args,
            token_attributes,
        }],
    }
}

/// The file's bytes: indented JSON, which the kubelet reads like YAML.
pub(crate) fn to_json(config: &CredentialProviderConfig) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(config).expect("the config serialises");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_identity_asks_for_a_token_per_service_account() {
        let pool = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kubelet";
        let c = config(&Identity::Pod { pool_provider: pool.parse().unwrap() }, &["--sts-endpoint=http://sts".into()]);
        let v: serde_json::Value = serde_json::from_slice(&to_json(&c)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "kubelet.config.k8s.io/v1",
                "kind": "CredentialProviderConfig",
                "providers": [{
                    "name": "regcred",
                    "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                    "matchImages": ["gcr.io", "*.gcr.io", "*-docker.pkg.dev"],
                    "defaultCacheDuration": "10m",
                    "args": ["credential-provider", format!("--workload-identity-provider={pool}"), "--sts-endpoint=http://sts"],
                    "tokenAttributes": {
                        "serviceAccountTokenAudience": format!("https:{pool}"),
                        "cacheType": "ServiceAccount",
                        "requireServiceAccount": true,
                        "optionalServiceAccountAnnotationKeys": ["iam.gke.io/gcp-service-account"],
                    },
                }],
            })
        );
    }

    #[test]
    fn node_identity_has_no_token_attributes() {
        let v = serde_json::to_value(config(&Identity::Node, &[])).unwrap();
        assert_eq!(v["providers"][0]["args"], serde_json::json!(["credential-provider"]));
        assert!(v["providers"][0].get("tokenAttributes").is_none());
    }
}
