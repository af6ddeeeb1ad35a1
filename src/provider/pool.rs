//! The workload identity pool provider that pods' tokens are exchanged at.

use std::fmt;
use std::str::FromStr;

/// `//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`:
/// the Security Token Service's `audience` for a pod's token, and (after
/// `https:`) the token's own audience.
///
/// Google's rules: the project by its number (STS refuses the project ID),
/// pool and provider IDs of 4 to 32 lower-case letters, digits and hyphens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolProvider(String);

impl PoolProvider {
    /// The resource name.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PoolProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pool's or provider's ID.
fn is_pool_id(s: &str) -> bool {
    (4..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl FromStr for PoolProvider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts = s.strip_prefix("//iam.googleapis.com/projects/").map(|p| p.split('/').collect::<Vec<_>>());
        let ok = match parts.as_deref() {
            Some([number, "locations", "global", "workloadIdentityPools", pool, "providers", provider]) => {
                !number.is_empty()
                    && number.len() <= 20
                    && number.bytes().all(|b| b.is_ascii_digit())
                    && is_pool_id(pool)
                    && is_pool_id(provider)
            }
            _ => false,
        };
        if ok {
            Ok(PoolProvider(s.to_string()))
        } else {
            Err("expected //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER (the project's number; pool and provider IDs of 4 to 32 of a-z, 0-9 and '-')".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_workload_identity_pool_provider_of_a_project_number() {
        let good =
            "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/pool/providers/kubelet";
        assert_eq!(good.parse::<PoolProvider>().unwrap().as_str(), good);
        for bad in [
            "pool",
            "projects/123/locations/global/workloadIdentityPools/pool/providers/k8s1",
            "//iam.googleapis.com/projects/my-project/locations/global/workloadIdentityPools/pool/providers/k8s1",
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p-1/providers/k8s1",
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/K8S1",
            "//iam.googleapis.com/locations/global/workforcePools/wf/providers/oidc",
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/k8s1/x",
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/k8s1?x",
            " //iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/k8s1",
        ] {
            assert!(bad.parse::<PoolProvider>().unwrap_err().contains("workloadIdentityPools/POOL"), "{bad}");
        }
    }
}
