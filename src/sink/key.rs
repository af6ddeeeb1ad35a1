//! The Secret data key regcred owns (`--secret-key`), which also decides the
//! Secret's type.

use std::fmt;
use std::str::FromStr;

/// The Secret key whose presence makes a `kubernetes.io/dockerconfigjson` Secret.
pub(crate) const DOCKERCONFIGJSON_KEY: &str = ".dockerconfigjson";

/// A Secret data key, by Kubernetes' rule for Secret and ConfigMap keys: at
/// most 253 letters, digits, `-`, `_` and `.`, not `.` and not starting
/// with `..`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// The key as it appears in the Secret's `data`.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The Secret type this key needs: the kubelet reads `.dockerconfigjson`
    /// only from a `kubernetes.io/dockerconfigjson` Secret; any other key is
    /// an Opaque Secret for tools that mount it.
    pub(crate) fn secret_type(&self) -> &'static str {
        if self.0 == DOCKERCONFIGJSON_KEY {
            "kubernetes.io/dockerconfigjson"
        } else {
            "Opaque"
        }
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SecretKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 253
            && s != "."
            && !s.starts_with("..")
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if ok {
            Ok(SecretKey(s.to_string()))
        } else {
            Err("a Secret key may contain only letters, digits, '-', '_' and '.', and may not be '.' or start with '..'"
                .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_keys_and_the_type_they_need() {
        let key = |s: &str| s.parse::<SecretKey>();
        assert_eq!(key(DOCKERCONFIGJSON_KEY).unwrap().secret_type(), "kubernetes.io/dockerconfigjson");
        assert_eq!(key("registry-auth.json").unwrap().secret_type(), "Opaque");
        assert!(key(".x..y").is_ok() && key(&"k".repeat(253)).is_ok());
        for bad in ["", ".", "..", "..data", "a/b", "a b", "é", &"k".repeat(254)] {
            assert!(key(bad).unwrap_err().contains("may contain only letters"), "{bad:?}");
        }
    }
}
