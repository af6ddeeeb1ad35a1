//! Which namespaces get the pull Secret.

use std::str::FromStr;

use crate::registry::is_dns_label;

/// Namespaces excluded from `--all-namespaces` and `--namespace-selector`
/// unless named explicitly with `--namespace`: nothing there pulls from a
/// private registry, and touching them needs wider RBAC than anyone wants.
pub(crate) const DEFAULT_EXCLUDES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// The namespace targeting flags, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// `--namespace`: exactly these.
    Names(Vec<NamespaceName>),
    /// `--namespace-selector`: those whose labels match (evaluated by the API server).
    Labels { selector: String, excludes: Vec<Pattern> },
    /// `--all-namespaces`.
    All { excludes: Vec<Pattern> },
}

impl Selection {
    /// The label selector to watch namespaces with, if any.
    pub fn label_selector(&self) -> Option<&str> {
        match self {
            Selection::Labels { selector, .. } => Some(selector),
            _ => None,
        }
    }

    /// Whether a namespace the watch reported is a target. Label matching is
    /// already done by the API server's watch.
    pub fn includes(&self, name: &str) -> bool {
        match self {
            Selection::Names(names) => names.iter().any(|n| n.as_str() == name),
            Selection::Labels { excludes, .. } | Selection::All { excludes } => {
                !excludes.iter().any(|p| p.matches(name))
            }
        }
    }
}

/// A namespace's name: a lower-case DNS label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceName(String);

impl NamespaceName {
    /// The name.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NamespaceName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_dns_label(s) {
            Ok(NamespaceName(s.to_string()))
        } else {
            Err("expected a namespace name: a lower-case DNS label".into())
        }
    }
}

/// A namespace name or a glob (`*` any run of characters, `?` one character).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(p: &str) -> Self {
        Pattern(p.to_string())
    }

    /// A DNS label in which `*` and `?` may stand for characters: a pattern
    /// no namespace name can match (`Kube_*`) is a typo, not a choice.
    fn is_valid(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-*?".contains(&b))
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.as_bytes())
    }
}

impl FromStr for Pattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if Pattern::is_valid(s) {
            Ok(Pattern::new(s))
        } else {
            Err("expected a namespace name or a glob of one (lower-case letters, digits, '-', '*' and '?'), for example tmp-*".into())
        }
    }
}

/// Iterative glob match with backtracking to the last `*`: linear in practice
/// and no recursion on hostile patterns.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        let m = |p: &str, s: &str| Pattern::new(p).matches(s);
        assert!(m("kube-*", "kube-system"));
        assert!(m("*-system", "kube-system"));
        assert!(m("ws-?", "ws-1"));
        assert!(!m("ws-?", "ws-12"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exact2"));
        assert!(m("*", ""));
    }

    #[test]
    fn selections_apply_their_excludes() {
        let all = Selection::All {
            excludes: DEFAULT_EXCLUDES.iter().map(|p| Pattern::new(p)).chain([Pattern::new("tmp-*")]).collect(),
        };
        assert!(all.includes("team-a"));
        assert!(!all.includes("kube-system"));
        assert!(!all.includes("tmp-123"));
        let names = Selection::Names(vec!["kube-system".parse().unwrap()]);
        assert!(names.includes("kube-system"), "explicit names are never excluded");
        assert!(!names.includes("other"));
    }

    #[test]
    fn names_and_patterns_follow_kubernetes_rules() {
        assert!("team-a".parse::<NamespaceName>().is_ok() && "a".repeat(63).parse::<NamespaceName>().is_ok());
        for bad in ["Bad_NS", "a.b", "-x", "x-", "", &"a".repeat(64)] {
            assert!(bad.parse::<NamespaceName>().unwrap_err().contains("expected a namespace name"), "{bad}");
        }
        assert!("tmp-*".parse::<Pattern>().is_ok() && "ci-??".parse::<Pattern>().is_ok());
        for bad in ["Kube_*", "a b", "x-", "", &"a".repeat(64)] {
            assert!(bad.parse::<Pattern>().unwrap_err().contains("expected a namespace name or a glob"), "{bad}");
        }
    }
}
