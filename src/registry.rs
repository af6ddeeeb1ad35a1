//! Registry hosts: validation, the default set and the `--all-registries` set.

use std::fmt;
use std::str::FromStr;

/// The Container Registry hosts used when no `--registry` is given.
pub(crate) const DEFAULT_HOSTS: &[&str] = &["gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io", "marketplace.gcr.io"];

/// Every Container Registry and Artifact Registry host, kept in one data file
/// so that adding a region is a one-line change.
const ALL_HOSTS: &str = include_str!("registries.txt");

/// A Google registry host name that accepts an OAuth access token as a
/// Docker password.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegistryHost(String);

impl RegistryHost {
    /// The host as it appears as a key in the auths document.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Every host listed in the registries data file.
    pub fn all() -> Vec<RegistryHost> {
        ALL_HOSTS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.parse().expect("registries.txt holds only valid hosts"))
            .collect()
    }

    /// The default Container Registry hosts.
    pub fn defaults() -> Vec<RegistryHost> {
        DEFAULT_HOSTS.iter().map(|h| RegistryHost(h.to_string())).collect()
    }
}

/// `--registry` and `--all-registries`.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub(crate) struct Args {
    /// Registry host to write credentials for; repeat or comma-separate.
    /// [default: gcr.io, us.gcr.io, eu.gcr.io, asia.gcr.io, marketplace.gcr.io]
    #[arg(long = "registry", env = "REGCRED_REGISTRY", value_name = "HOST", value_delimiter = ',')]
    registries: Vec<RegistryHost>,

    /// Write credentials for every Container Registry host and every Artifact
    /// Registry location (LOCATION-docker.pkg.dev), plus any --registry.
    #[arg(long, env = "REGCRED_ALL_REGISTRIES")]
    all_registries: bool,
}

impl Args {
    /// The hosts asked for, sorted and de-duplicated; the default Container
    /// Registry hosts when neither flag is given.
    pub(crate) fn hosts(&self) -> Vec<RegistryHost> {
        let mut hosts = self.registries.clone();
        if self.all_registries {
            hosts.extend(RegistryHost::all());
        }
        if hosts.is_empty() {
            hosts = RegistryHost::defaults();
        }
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// The hosts, when `--registry` named them (and `--all-registries` did
    /// not ask for every one).
    pub(crate) fn explicit(&self) -> Option<Vec<RegistryHost>> {
        (!self.registries.is_empty() && !self.all_registries).then(|| self.hosts())
    }
}

impl fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lower-case RFC 1123 label: what Kubernetes requires of a namespace
/// name, and each dot-separated part of a host name.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A lower-case RFC 1123 subdomain: dot-separated labels, at most 253 bytes
/// (Secret and ServiceAccount names, host names).
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Why a `--registry` value was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidHost {
    #[error("not a bare host: give the host name alone, without a scheme or path (for example gcr.io or europe-west1-docker.pkg.dev)")]
    WithSchemeOrPath(String),
    #[error("not a valid DNS name")]
    BadDnsName(String),
    #[error("not a Google registry: regcred's credentials work only for gcr.io, *.gcr.io and LOCATION-docker.pkg.dev")]
    NotGoogle(String),
}

impl FromStr for RegistryHost {
    type Err = InvalidHost;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let host = s.trim().to_ascii_lowercase();
        if host.contains("://") || host.contains('/') || host.contains(':') {
            return Err(InvalidHost::WithSchemeOrPath(s.to_string()));
        }
        if !is_dns_subdomain(&host) {
            return Err(InvalidHost::BadDnsName(s.to_string()));
        }
        let google = host == "gcr.io"
            || host.ends_with(".gcr.io")
            || host
                .strip_suffix("-docker.pkg.dev")
                .is_some_and(|location| !location.is_empty() && !location.contains('.'));
        if !google {
            return Err(InvalidHost::NotGoogle(s.to_string()));
        }
        Ok(RegistryHost(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_gcr_and_artifact_registry_hosts() {
        for h in ["gcr.io", "eu.gcr.io", "europe-west1-docker.pkg.dev", "US-docker.pkg.dev"] {
            assert!(h.parse::<RegistryHost>().is_ok(), "{h}");
        }
        assert_eq!("US-docker.pkg.dev".parse::<RegistryHost>().unwrap().as_str(), "us-docker.pkg.dev");
    }

    #[test]
    fn rejects_other_hosts_with_a_reason() {
        assert!(matches!("https://gcr.io".parse::<RegistryHost>(), Err(InvalidHost::WithSchemeOrPath(_))));
        assert!(matches!("gcr.io/project".parse::<RegistryHost>(), Err(InvalidHost::WithSchemeOrPath(_))));
        assert!(matches!("docker.io".parse::<RegistryHost>(), Err(InvalidHost::NotGoogle(_))));
        assert!(matches!("docker.pkg.dev".parse::<RegistryHost>(), Err(InvalidHost::NotGoogle(_))));
        assert!(matches!("evil.com-docker.pkg.dev".parse::<RegistryHost>(), Err(InvalidHost::NotGoogle(_))));
        assert!(matches!("gcr..io".parse::<RegistryHost>(), Err(InvalidHost::BadDnsName(_))));
        assert!(matches!("".parse::<RegistryHost>(), Err(InvalidHost::BadDnsName(_))));
    }

    #[test]
    fn all_hosts_parse_and_include_both_registries() {
        let all = RegistryHost::all();
        assert!(all.len() > 40);
        for d in RegistryHost::defaults() {
            assert!(all.contains(&d), "{d} missing from registries.txt");
        }
        assert!(all.iter().any(|h| h.as_str() == "us-central1-docker.pkg.dev"));
        assert!(all.iter().any(|h| h.as_str() == "europe-docker.pkg.dev"));
    }
}
