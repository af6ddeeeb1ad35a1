//! Long-lived key credentials: `_json_key` and `_json_key_base64`.
//!
//! For registries that must keep working without token refresh. The key file
//! is read at every refresh so a rotated key is picked up.

use std::path::PathBuf;

use base64::Engine as _;

use super::{key_problem, read_key_file, Credential, CredentialSource, SourceError};
use crate::secret::Secret;

/// A service-account key used directly as the registry password.
pub(crate) struct JsonKey {
    path: PathBuf,
    base64: bool,
}

impl JsonKey {
    /// Checks the file is a readable service-account key.
    pub(crate) fn load(path: PathBuf, base64: bool) -> Result<Self, SourceError> {
        let source = Self { path, base64 };
        source.read()?;
        Ok(source)
    }

    fn read(&self) -> Result<Credential, SourceError> {
        let text = read_key_file(&self.path)?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| key_problem(&self.path, format!("not valid JSON ({e})")))?;
        if v["type"] != "service_account" {
            return Err(key_problem(
                &self.path,
                "not a service_account key; `_json_key` needs a downloaded service-account JSON key".into(),
            ));
        }
        for field in ["client_email", "private_key"] {
            if v[field].as_str().is_none_or(str::is_empty) {
                return Err(key_problem(&self.path, format!("missing field `{field}`")));
            }
        }
        let (username, password) = if self.base64 {
            ("_json_key_base64", base64::engine::general_purpose::STANDARD.encode(text.as_bytes()))
        } else {
            ("_json_key", text)
        };
        Ok(Credential { username: username.into(), password: Secret::new(password), expires_at: None })
    }
}

#[async_trait::async_trait]
impl CredentialSource for JsonKey {
    fn describe(&self) -> String {
        let user = if self.base64 { "_json_key_base64" } else { "_json_key" };
        format!("{user} from {}", self.path.display())
    }

    async fn credential(&self) -> Result<Credential, SourceError> {
        self.read()
    }
}
