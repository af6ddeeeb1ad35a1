//! A Google service account's email: the one parser for `--impersonate`,
//! `--impersonate-delegates` and the `iam.gke.io/gcp-service-account`
//! annotation that pods' ServiceAccounts carry into the credential provider.
//!
//! The email goes into an IAM Credentials URL
//! (`.../serviceAccounts/EMAIL:generateAccessToken`), and the annotation is
//! written by whoever may edit a ServiceAccount in any namespace, so the
//! rule is Google's own and nothing looser. Two forms exist:
//!
//! - `ID@PROJECT.iam.gserviceaccount.com`: accounts users create, and
//!   Google's service agents (`service-NUMBER@gcp-sa-NAME.iam...`). ID and
//!   PROJECT follow the rule of account and project IDs: 6 to 30 lower-case
//!   letters, digits and hyphens, starting with a letter, not ending with a
//!   hyphen. A domain-scoped project (`example.com:project`) adds its domain
//!   after PROJECT (`ID@project.example.com.iam.gserviceaccount.com`), as
//!   does a sovereign cloud's universe (`...s3ns.iam.gserviceaccount.com`):
//!   more lower-case DNS labels before `.iam`.
//! - `NAME@SERVICE.gserviceaccount.com`: accounts Google creates for a
//!   project, such as Compute Engine's `NUMBER-compute@developer...` and
//!   App Engine's `PROJECT@appspot...`. NAME and SERVICE are lower-case DNS
//!   labels (letters, digits, hyphens, at most 63).
//!
//! Everything else is refused: other domains (only service accounts can be
//! impersonated), upper case (Google's are lower case), and every character
//! outside `a-z 0-9 - . @`, which is what keeps `#`, `?`, `&`, `%`, `/`,
//! `\`, whitespace, control characters and Unicode look-alikes out of URLs.

use std::fmt;
use std::str::FromStr;

/// The domain of every Google service account.
const DOMAIN: &str = "gserviceaccount.com";

/// The longest email regcred accepts (RFC 5321's limit for an address).
const MAX_LEN: usize = 254;

/// A Google service account's email, checked as described in the module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountEmail(String);

impl ServiceAccountEmail {
    /// The email, safe to put in a URL path.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceAccountEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a value is not a service account email. Its text says what is wrong
/// and shows the form expected; the caller names the flag or annotation.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{problem}; expected a service account email such as puller@PROJECT_ID.iam.gserviceaccount.com")]
pub struct InvalidEmail {
    problem: String,
}

fn invalid(problem: impl Into<String>) -> InvalidEmail {
    InvalidEmail { problem: problem.into() }
}

/// A character as a reader can tell it apart from its look-alikes
/// (`'@'`, `'\u{ff20}'`).
fn shown(c: char) -> String {
    format!("'{}'", c.escape_default())
}

/// Google's rule for account and project IDs (`[a-z]([-a-z0-9]*[a-z0-9])`,
/// 6 to 30 characters).
fn is_google_id(s: &str) -> bool {
    (6..=30).contains(&s.len()) && s.starts_with(|c: char| c.is_ascii_lowercase()) && is_label(s)
}

/// A lower-case DNS label (RFC 1123).
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl FromStr for ServiceAccountEmail {
    type Err = InvalidEmail;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(invalid("the value is empty"));
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.@".contains(c);
        match s.chars().find(|c| !allowed(*c)) {
            Some(c) if c.is_ascii_uppercase() => {
                return Err(invalid(format!(
                    "{} is upper case; Google's service account emails are lower case",
                    shown(c)
                )))
            }
            Some(c) => {
                return Err(invalid(format!("{} is not allowed (only a-z, 0-9, '-', '.' and one '@')", shown(c))))
            }
            None => {}
        }
        if s.len() > MAX_LEN {
            return Err(invalid(format!("{} characters is too long (at most {MAX_LEN})", s.len())));
        }
        let Some((name, domain)) = s.split_once('@').filter(|(_, d)| !d.contains('@')) else {
            return Err(invalid("expected exactly one '@'"));
        };
        let Some(service) = domain.strip_suffix(DOMAIN).and_then(|p| p.strip_suffix('.')) else {
            return Err(invalid(format!("the domain {domain} is not Google's (service accounts end in .{DOMAIN})")));
        };
        let labels: Vec<&str> = service.split('.').collect();
        if let Some(bad) = labels.iter().find(|l| !is_label(l)) {
            return Err(invalid(format!("{bad:?} in the domain is not a DNS label")));
        }
        match labels.as_slice() {
            [project, .., "iam"] => {
                if !is_google_id(project) {
                    return Err(invalid(format!(
                        "the project ID {project} must be 6 to 30 letters, digits and hyphens, starting with a letter"
                    )));
                }
                if !is_google_id(name) {
                    return Err(invalid(format!(
                        "the account ID {name} must be 6 to 30 letters, digits and hyphens, starting with a letter"
                    )));
                }
            }
            [_service] => {
                if !is_label(name) {
                    return Err(invalid(format!("the name {name:?} must be a DNS label (letters, digits, hyphens)")));
                }
            }
            _ => return Err(invalid(format!("{domain} is not a service account domain"))),
        }
        Ok(ServiceAccountEmail(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ServiceAccountEmail, String> {
        s.parse().map_err(|e: InvalidEmail| e.to_string())
    }

    #[test]
    fn accepts_the_forms_google_issues() {
        for ok in [
            "puller@project-1.iam.gserviceaccount.com",
            "abcdef@abcdef.iam.gserviceaccount.com",
            "a23456789012345678901234567890@b23456789012345678901234567890.iam.gserviceaccount.com",
            "service-123456789012@gcp-sa-artifactregistry.iam.gserviceaccount.com",
            "puller@project.example.com.iam.gserviceaccount.com",
            "puller@project-1.s3ns.iam.gserviceaccount.com",
            "123456789012-compute@developer.gserviceaccount.com",
            "project-1@appspot.gserviceaccount.com",
            "123456789012@cloudbuild.gserviceaccount.com",
        ] {
            assert_eq!(parse(ok).map(|e| e.to_string()), Ok(ok.to_string()));
        }
    }

    #[test]
    fn refuses_anything_that_could_change_the_iam_url_or_look_like_another_account() {
        let good = "puller@project-1.iam.gserviceaccount.com";
        let cases = [
            ("a@b.c#frag", "'#' is not allowed"),
            ("a@b.c%2F..%2Fx", "'%' is not allowed"),
            ("a@b.c\\x", "'\\\\' is not allowed"),
            ("x@y.z&alt=1", "'&' is not allowed"),
            (&format!("{good}?alt=json"), "'?' is not allowed"),
            (&format!("{good}/x"), "'/' is not allowed"),
            (&format!("{good}:signJwt"), "':' is not allowed"),
            (&format!(" {good}"), "' ' is not allowed"),
            (&format!("{good}\n"), "'\\n' is not allowed"),
            (&format!("{good}\u{0}"), "'\\u{0}' is not allowed"),
            ("Puller@project-1.iam.gserviceaccount.com", "'P' is upper case"),
            ("puller\u{ff20}project-1.iam.gserviceaccount.com", "'\\u{ff20}' is not allowed"),
            ("рuller@project-1.iam.gserviceaccount.com", "'\\u{440}' is not allowed"),
            ("puller@@project-1.iam.gserviceaccount.com", "exactly one '@'"),
            ("puller", "exactly one '@'"),
            ("", "empty"),
            ("a@b.c", "not Google's"),
            ("puller@evil.com", "not Google's"),
            (&format!("{good}.evil.com"), "not Google's"),
            ("puller@gserviceaccount.com", "not Google's"),
            ("puller@a..iam.gserviceaccount.com", "\"\" in the domain"),
            ("puller@project-1.example.gserviceaccount.com", "not a service account domain"),
            ("puller@-x.iam.gserviceaccount.com", "\"-x\" in the domain"),
            ("pull@project-1.iam.gserviceaccount.com", "the account ID pull must be 6 to 30"),
            ("1puller@project-1.iam.gserviceaccount.com", "the account ID 1puller"),
            (&format!("{}@project-1.iam.gserviceaccount.com", "a".repeat(31)), "must be 6 to 30"),
            ("puller@p.iam.gserviceaccount.com", "the project ID p must be 6 to 30"),
            ("-compute@developer.gserviceaccount.com", "must be a DNS label"),
            (&format!("{}@project-1.iam.gserviceaccount.com", "a".repeat(300)), "300+"),
        ];
        for (bad, expected) in cases {
            let e = parse(bad).unwrap_err();
            let expected = expected.replace("300+", &format!("{} characters is too long", bad.len()));
            assert!(e.contains(&expected), "{bad:?}: {e}");
            assert!(e.ends_with("expected a service account email such as puller@PROJECT_ID.iam.gserviceaccount.com"));
            assert!(!e.contains('\n') && e.len() < 300, "{bad:?}: one short line: {e}");
        }
    }
}
