//! The values an ACR source is configured with, each parsed once by its
//! own type: the registry host, the tenant, the client id.

use std::fmt;
use std::str::FromStr;

/// The DNS suffixes of ACR login servers: Azure public cloud, Azure China
/// (21Vianet) and Azure US Government. (`azurecr.de`, Azure Germany, closed
/// in 2021; Azure's own plugin still matches it, but no registry answers.)
pub(crate) const SUFFIXES: &[&str] = &["azurecr.io", "azurecr.cn", "azurecr.us"];

/// An ACR login server, `NAME.azurecr.io` (or a sovereign cloud's suffix),
/// lower-case: the registry host in the auths document, the `service` of
/// the token exchange and the host its token server is reached at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct AcrHost(String);

impl AcrHost {
    /// The host name.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AcrHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AcrHost {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = || {
            format!(
                "{s:?} is not an Azure Container Registry login server; expected NAME.{} (NAME: letters and digits, optionally a dash and the domain label hash)",
                SUFFIXES.join(" or NAME.")
            )
        };
        let host = s.to_ascii_lowercase();
        let (name, suffix) = host.split_once('.').ok_or_else(expected)?;
        if !SUFFIXES.contains(&suffix) {
            return Err(expected());
        }
        // Registry names are 5 to 50 letters and digits; a registry created
        // with a domain name label scope adds `-` and a hash.
        let (base, hash) = name.split_once('-').unwrap_or((name, ""));
        let alnum = |t: &str| t.bytes().all(|b| b.is_ascii_alphanumeric());
        if !(5..=50).contains(&base.len()) || !alnum(base) || !alnum(hash) || (name.contains('-') && hash.is_empty()) {
            return Err(expected());
        }
        Ok(AcrHost(host))
    }
}

/// A Microsoft Entra tenant: its id (a GUID) or one of its domain names
/// (`contoso.onmicrosoft.com`). It becomes a path segment of the token URL,
/// so nothing else is let through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TenantId(String);

impl TenantId {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 256
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !s.starts_with(['.', '-']);
        if !ok {
            return Err(format!(
                "{s:?} is not a tenant: expected its id (a GUID) or a domain name such as contoso.onmicrosoft.com"
            ));
        }
        Ok(TenantId(s.to_string()))
    }
}

/// The client (application) id of an app registration or a managed
/// identity: a GUID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClientId(String);

impl ClientId {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ClientId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] || !groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(format!(
                "{s:?} is not a client id: expected a GUID such as 00001111-aaaa-2222-bbbb-3333cccc4444 (`az identity show --query clientId`)"
            ));
        }
        Ok(ClientId(s.to_ascii_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_hosts_are_a_registry_name_and_an_acr_suffix() {
        for (given, host) in [
            ("myregistry.azurecr.io", "myregistry.azurecr.io"),
            ("MyRegistry.AzureCR.io", "myregistry.azurecr.io"),
            ("contoso01.azurecr.cn", "contoso01.azurecr.cn"),
            ("govreg.azurecr.us", "govreg.azurecr.us"),
            ("myregistry-abcdef1234.azurecr.io", "myregistry-abcdef1234.azurecr.io"),
        ] {
            assert_eq!(given.parse::<AcrHost>().unwrap().as_str(), host, "{given}");
        }
        for bad in [
            "azurecr.io",
            "reg.azurecr.io",
            "myregistry.azurecr.de",
            "myregistry.azurecr.io.evil.com",
            "my_registry.azurecr.io",
            "myregistry-.azurecr.io",
            "my.registry.azurecr.io",
            "gcr.io",
            "myregistry.azurecr.io/path",
            "myregistry.azurecr.io:443",
        ] {
            let e = bad.parse::<AcrHost>().unwrap_err();
            assert!(e.contains("expected NAME.azurecr.io"), "{bad}: {e}");
        }
    }

    #[test]
    fn tenants_and_client_ids_are_what_azure_names_them() {
        assert!("72f988bf-86f1-41af-91ab-2d7cd011db47".parse::<TenantId>().is_ok());
        assert!("contoso.onmicrosoft.com".parse::<TenantId>().is_ok());
        for bad in ["", "a/b", "../x", "t?x", ".x", "t x"] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad}");
        }
        let id: ClientId = "00001111-AAAA-2222-bbbb-3333cccc4444".parse().unwrap();
        assert_eq!(id.as_str(), "00001111-aaaa-2222-bbbb-3333cccc4444");
        for bad in ["", "app", "00001111-aaaa-2222-bbbb-3333cccc444", "00001111-aaaa-2222-bbbb-3333cccc444g&x=1"] {
            assert!(bad.parse::<ClientId>().is_err(), "{bad}");
        }
    }
}
