//! The Azure ids an ACR source is configured with, each parsed once by its
//! own type: the tenant, the client id. (The registry host's rule is
//! `registry::AcrRegistry`'s.)

use std::fmt;
use std::str::FromStr;

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
