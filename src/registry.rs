//! Registry hosts: validation, the cloud each belongs to, the default set
//! and the `--all-registries` set.

use std::fmt;
use std::str::FromStr;

/// The Container Registry hosts used when no `--registry` is given.
pub(crate) const DEFAULT_HOSTS: &[&str] = &["gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io", "marketplace.gcr.io"];

/// Every Container Registry and Artifact Registry host, kept in one data file
/// so that adding a region is a one-line change.
const ALL_HOSTS: &str = include_str!("registries.txt");

/// A registry host name regcred can mint a credential for, and the cloud
/// whose credential it takes. Ordered by the host name first, so that sorted
/// hosts are in the order the auths document lists them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegistryHost {
    host: String,
    cloud: Cloud,
}

/// Whose credential a registry host takes, with what the host says about it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Cloud {
    /// gcr.io, *.gcr.io, LOCATION-docker.pkg.dev: an OAuth access token.
    Google,
    /// A private ECR registry: an ECR authorization token of its region.
    Ecr(EcrRegistry),
    /// ECR Public (`public.ecr.aws`): an ECR Public authorization token.
    EcrPublic,
    /// An Azure Container Registry: a refresh token of that registry alone.
    Acr(AcrRegistry),
}

impl Cloud {
    /// The provider's name, for messages and logs.
    pub(crate) fn provider(&self) -> &'static str {
        match self {
            Cloud::Google => "Google",
            Cloud::Ecr(_) => "Amazon ECR",
            Cloud::EcrPublic => "Amazon ECR Public",
            Cloud::Acr(_) => "Azure Container Registry",
        }
    }
}

/// A private ECR registry, as its host names it:
/// `ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct EcrRegistry {
    /// The 12-digit AWS account ID.
    pub(crate) account: String,
    /// The AWS region (`us-east-1`, `cn-north-1`, `us-gov-west-1`).
    pub(crate) region: String,
    /// The FIPS endpoint (`dkr.ecr-fips`): the API is `ecr-fips` too.
    pub(crate) fips: bool,
}

impl EcrRegistry {
    /// The DNS suffix of the region's partition: `amazonaws.com.cn` in China.
    pub(crate) fn dns_suffix(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        }
    }

    /// The ECR API endpoint that issues this registry's tokens.
    pub(crate) fn api_endpoint(&self) -> String {
        let service = if self.fips { "ecr-fips" } else { "api.ecr" };
        format!("https://{service}.{}.{}", self.region, self.dns_suffix())
    }
}

/// The DNS suffixes of ACR login servers: Azure public cloud, Azure China
/// (21Vianet) and Azure US Government. (`azurecr.de`, Azure Germany, closed
/// in 2021; Azure's own plugin still matches it, but no registry answers.)
pub(crate) const ACR_SUFFIXES: &[&str] = &["azurecr.io", "azurecr.cn", "azurecr.us"];

/// An Azure Container Registry, as its login server names it:
/// `NAME.azurecr.io` (or a sovereign cloud's suffix), lower-case. The
/// login server is also the `service` of the registry's token exchange and
/// the host its token server is reached at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct AcrRegistry(String);

impl AcrRegistry {
    /// The login server.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AcrRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// ECR Public's one registry host.
pub(crate) const ECR_PUBLIC_HOST: &str = "public.ecr.aws";

impl RegistryHost {
    /// The host as it appears as a key in the auths document.
    pub fn as_str(&self) -> &str {
        &self.host
    }

    /// The cloud whose credential this host takes.
    pub(crate) fn cloud(&self) -> &Cloud {
        &self.cloud
    }

    /// Whether this is one of Google's registries.
    pub(crate) fn is_google(&self) -> bool {
        self.cloud == Cloud::Google
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
        DEFAULT_HOSTS.iter().map(|h| RegistryHost { host: h.to_string(), cloud: Cloud::Google }).collect()
    }
}

/// `--registry` and `--all-registries`.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub(crate) struct Args {
    /// Registry host to write credentials for; repeat or comma-separate. Google:
    /// gcr.io, *.gcr.io, LOCATION-docker.pkg.dev; Amazon ECR:
    /// ACCOUNT.dkr.ecr.REGION.amazonaws.com (also .amazonaws.com.cn and
    /// ACCOUNT.dkr.ecr-fips.REGION.amazonaws.com) and public.ecr.aws; Azure
    /// Container Registry: NAME.azurecr.io (also .azurecr.cn and .azurecr.us).
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
        f.write_str(&self.host)
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
    #[error("not a registry regcred knows: its credentials work only for gcr.io, *.gcr.io and LOCATION-docker.pkg.dev (Google), and ACCOUNT.dkr.ecr.REGION.amazonaws.com[.cn], ACCOUNT.dkr.ecr-fips.REGION.amazonaws.com and public.ecr.aws (Amazon ECR), and NAME.azurecr.io, NAME.azurecr.cn and NAME.azurecr.us (Azure Container Registry)")]
    Unknown(String),
    #[error("not an Amazon ECR registry host: expected ACCOUNT.dkr.ecr.REGION.amazonaws.com (ACCOUNT 12 digits; .amazonaws.com.cn in China; dkr.ecr-fips for FIPS) or public.ecr.aws")]
    BadEcrHost(String),
    #[error("not an Azure Container Registry login server: expected NAME.azurecr.io, NAME.azurecr.cn or NAME.azurecr.us (NAME: 5 to 50 letters and digits, optionally a dash and the domain name label hash)")]
    BadAcrHost(String),
}

/// The ECR registry a host under `amazonaws.com[.cn]` names; `None` for a
/// host that is not ECR's at all, `Some(Err)` for a malformed ECR host.
fn parse_ecr(host: &str) -> Option<Result<EcrRegistry, ()>> {
    let rest = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let china = host.ends_with(".cn");
    let mut labels = rest.split('.');
    let (account, dkr, service, region) = (labels.next()?, labels.next()?, labels.next()?, labels.next());
    if dkr != "dkr" || !matches!(service, "ecr" | "ecr-fips") {
        return None;
    }
    let valid = account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && region.is_some_and(|r| is_region(r) && r.starts_with("cn-") == china)
        && labels.next().is_none();
    Some(match (valid, region) {
        (true, Some(region)) => {
            Ok(EcrRegistry { account: account.into(), region: region.into(), fips: service == "ecr-fips" })
        }
        _ => Err(()),
    })
}

/// The ACR registry a host under an ACR suffix names; `None` for a host
/// that is not ACR's at all (`Some(Err)` for a malformed ACR host, or one
/// under `.azurecr.` with a suffix no cloud serves).
fn parse_acr(host: &str) -> Option<Result<AcrRegistry, ()>> {
    let (name, suffix) = host.split_once('.')?;
    if !ACR_SUFFIXES.contains(&suffix) {
        return host.contains(".azurecr.").then_some(Err(()));
    }
    // Registry names are 5 to 50 letters and digits; a registry created
    // with a domain name label scope adds `-` and a hash.
    let (base, hash) = name.split_once('-').unwrap_or((name, ""));
    let alnum = |t: &str| t.bytes().all(|b| b.is_ascii_alphanumeric());
    let valid =
        (5..=50).contains(&base.len()) && alnum(base) && alnum(hash) && !(name.contains('-') && hash.is_empty());
    Some(if valid { Ok(AcrRegistry(host.to_string())) } else { Err(()) })
}

/// An AWS region name: `us-east-1`, `ap-southeast-2`, `us-gov-west-1`.
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
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
        if host == ECR_PUBLIC_HOST {
            return Ok(RegistryHost { host, cloud: Cloud::EcrPublic });
        }
        match parse_ecr(&host) {
            Some(Ok(ecr)) => return Ok(RegistryHost { host, cloud: Cloud::Ecr(ecr) }),
            Some(Err(())) => return Err(InvalidHost::BadEcrHost(s.to_string())),
            None if host.contains(".dkr.ecr") => return Err(InvalidHost::BadEcrHost(s.to_string())),
            None => {}
        }
        match parse_acr(&host) {
            Some(Ok(acr)) => return Ok(RegistryHost { host, cloud: Cloud::Acr(acr) }),
            Some(Err(())) => return Err(InvalidHost::BadAcrHost(s.to_string())),
            None => {}
        }
        let google = host == "gcr.io"
            || host.ends_with(".gcr.io")
            || host
                .strip_suffix("-docker.pkg.dev")
                .is_some_and(|location| !location.is_empty() && !location.contains('.'));
        if !google {
            return Err(InvalidHost::Unknown(s.to_string()));
        }
        Ok(RegistryHost { host, cloud: Cloud::Google })
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
        assert!(matches!("docker.io".parse::<RegistryHost>(), Err(InvalidHost::Unknown(_))));
        assert!(matches!("docker.pkg.dev".parse::<RegistryHost>(), Err(InvalidHost::Unknown(_))));
        assert!(matches!("evil.com-docker.pkg.dev".parse::<RegistryHost>(), Err(InvalidHost::Unknown(_))));
        assert!(matches!("gcr..io".parse::<RegistryHost>(), Err(InvalidHost::BadDnsName(_))));
        assert!(matches!("".parse::<RegistryHost>(), Err(InvalidHost::BadDnsName(_))));
    }

    #[test]
    fn ecr_hosts_name_their_registry() {
        let ecr = |h: &str| match h.parse::<RegistryHost>().map(|h| h.cloud().clone()) {
            Ok(Cloud::Ecr(r)) => (r.account.clone(), r.region.clone(), r.fips, r.api_endpoint()),
            other => panic!("{h}: {other:?}"),
        };
        let e = ecr("123456789012.dkr.ecr.eu-west-1.amazonaws.com");
        assert_eq!(
            e,
            ("123456789012".into(), "eu-west-1".into(), false, "https://api.ecr.eu-west-1.amazonaws.com".into())
        );
        assert_eq!(
            ecr("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").3,
            "https://api.ecr.cn-north-1.amazonaws.com.cn"
        );
        let fips = ecr("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com");
        assert_eq!((fips.2, fips.3.as_str()), (true, "https://ecr-fips.us-gov-west-1.amazonaws.com"));
        assert_eq!("public.ecr.aws".parse::<RegistryHost>().unwrap().cloud(), &Cloud::EcrPublic);
        for bad in [
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "1234567890123.dkr.ecr.us-east-1.amazonaws.com",
            "abcdefghijkl.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn",
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.evil.com",
            "x.123456789012.dkr.ecr.us-east-1.amazonaws.com",
        ] {
            let e = bad.parse::<RegistryHost>().unwrap_err();
            assert!(matches!(e, InvalidHost::BadEcrHost(_)), "{bad}: {e:?}");
            assert!(e.to_string().contains("ACCOUNT.dkr.ecr.REGION.amazonaws.com"), "{e}");
        }
        assert!(matches!("s3.amazonaws.com".parse::<RegistryHost>(), Err(InvalidHost::Unknown(_))));
    }

    #[test]
    fn acr_hosts_are_a_registry_name_and_an_acr_suffix() {
        for (given, host) in [
            ("myregistry.azurecr.io", "myregistry.azurecr.io"),
            ("MyRegistry.AzureCR.io", "myregistry.azurecr.io"),
            ("contoso01.azurecr.cn", "contoso01.azurecr.cn"),
            ("govreg.azurecr.us", "govreg.azurecr.us"),
            ("myregistry-abcdef1234.azurecr.io", "myregistry-abcdef1234.azurecr.io"),
        ] {
            let parsed = given.parse::<RegistryHost>().unwrap();
            assert_eq!(parsed.as_str(), host, "{given}");
            assert_eq!(parsed.cloud(), &Cloud::Acr(AcrRegistry(host.into())), "{given}");
        }
        for bad in
            ["reg.azurecr.io", "myregistry.azurecr.de", "myregistry.azurecr.io.evil.com", "my.registry.azurecr.io"]
        {
            let e = bad.parse::<RegistryHost>().unwrap_err();
            assert!(matches!(e, InvalidHost::BadAcrHost(_)), "{bad}: {e:?}");
            assert!(e.to_string().contains("expected NAME.azurecr.io, NAME.azurecr.cn or NAME.azurecr.us"), "{e}");
        }
        for (bad, why) in [
            ("azurecr.io", "not a registry regcred knows"),
            ("my_registry.azurecr.io", "not a valid DNS name"),
            ("myregistry-.azurecr.io", "not a valid DNS name"),
            ("myregistry.azurecr.io/path", "not a bare host"),
            ("myregistry.azurecr.io:443", "not a bare host"),
        ] {
            let e = bad.parse::<RegistryHost>().unwrap_err().to_string();
            assert!(e.starts_with(why), "{bad}: {e}");
        }
        assert!(InvalidHost::Unknown("docker.io".into()).to_string().contains("NAME.azurecr.io"));
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
