//! A type for values that must never be printed.
//!
//! Tokens, key files and rendered documents all travel as [`Secret`], whose
//! `Debug` and `Display` print `<redacted>`. Reading the value takes an
//! explicitly named method, so leaking one into a log line or an error message
//! needs a deliberate call that stands out in review.

use std::fmt;

/// A value that is redacted wherever it could be formatted.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a sensitive value.
    pub(crate) fn new(value: T) -> Self {
        Self(value)
    }

    /// Returns the value. The name is deliberately loud: every call is a place
    /// where the secret leaves its wrapper.
    pub(crate) fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Read straight into the wrapper (a token in a request from the kubelet).
/// There is deliberately no `Serialize`: writing a secret out must go
/// through [`Secret::expose`].
impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("ya29.super-secret".to_string());
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
        assert_eq!(s.expose(), "ya29.super-secret");
    }
}
