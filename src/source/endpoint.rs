//! Google endpoints given as flags: `--impersonation-endpoint` (an
//! [`Endpoint`]: scheme, host and port, to which regcred adds the API's
//! path) and `--sts-endpoint` (an [`EndpointUrl`]: the token URL itself).
//!
//! Tokens are posted to them, so both refuse what could send a request
//! somewhere else than it reads: user info (`user@host`), a query or a
//! fragment, percent-escapes, whitespace and anything outside ASCII.

use std::fmt;
use std::str::FromStr;

/// `http(s)://HOST[:PORT]`, without a trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint(String);

/// `http(s)://HOST[:PORT][/PATH]`, without a trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    /// The URL to send to.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The URL without its trailing slashes, and where its path starts (its
/// length when it has none); `what` names the expected form in the error.
fn split<'a>(s: &'a str, what: &str) -> Result<(&'a str, usize), String> {
    let url = s.trim_end_matches('/');
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest.filter(|r| !r.is_empty() && !r.starts_with('/')) else {
        return Err(format!("expected {what}"));
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    let host_ok = |c: char| c.is_ascii_alphanumeric() || "-.:[]".contains(c);
    if let Some(c) = rest[..host_end].chars().find(|c| !host_ok(*c)) {
        return Err(format!("'{}' is not allowed in the host; expected {what}", c.escape_default()));
    }
    let path_ok = |c: char| c.is_ascii_alphanumeric() || "-._~/".contains(c);
    if let Some(c) = rest[host_end..].chars().find(|c| !path_ok(*c)) {
        return Err(format!("'{}' is not allowed in the path; expected {what}", c.escape_default()));
    }
    Ok((url, url.len() - rest.len() + host_end))
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const WHAT: &str = "http(s)://HOST[:PORT]";
        match split(s, WHAT)? {
            (url, path) if path == url.len() => Ok(Endpoint(url.to_string())),
            _ => Err(format!("expected {WHAT}, without a path (regcred adds the API's path)")),
        }
    }
}

impl FromStr for EndpointUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (url, _) = split(s, "an http(s) URL such as https://sts.googleapis.com/v1/token")?;
        Ok(EndpointUrl(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_scheme_host_and_port() {
        assert_eq!("http://127.0.0.1:9999/".parse::<Endpoint>().unwrap().to_string(), "http://127.0.0.1:9999");
        assert_eq!(
            "https://iamcredentials.googleapis.com".parse::<Endpoint>().unwrap().to_string(),
            "https://iamcredentials.googleapis.com"
        );
        assert!("http://[::1]:8080".parse::<Endpoint>().is_ok());
        for bad in [
            "iam.local",
            "https://",
            "https:///x",
            "ftp://h",
            "https://h/v1",
            "https://u@h",
            "https://h?x",
            "https://h#x",
            "https://h x",
            "https://h\u{ff0e}com",
        ] {
            let e = bad.parse::<Endpoint>().unwrap_err();
            assert!(e.contains("expected http(s)://HOST[:PORT]"), "{bad}: {e}");
        }
    }

    #[test]
    fn urls_may_have_a_path_and_nothing_else() {
        let url: EndpointUrl = "http://127.0.0.1:1/v1/token/".parse().unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:1/v1/token");
        for bad in [
            "sts.local",
            "https://h/v1/token?x=1",
            "https://h/v1#x",
            "https://h/%2e%2e/x",
            "https://a@h/v1",
            "https://h/a b",
        ] {
            let e = bad.parse::<EndpointUrl>().unwrap_err();
            assert!(e.contains("an http(s) URL"), "{bad}: {e}");
        }
    }
}
