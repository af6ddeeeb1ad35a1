//! Rendering the Docker `config.json` "auths" document.
//!
//! This is the exact shape the kubelet reads from a `kubernetes.io/dockerconfigjson`
//! Secret and Docker-compatible clients read from `config.json`:
//! `{"auths": {HOST: {"username": U, "password": P, "auth": base64("U:P")}}}`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;

use crate::credential::Credential;
use crate::registry::RegistryHost;
use crate::secret::Secret;

/// A rendered auths document. It can only be built by [`render`], which
/// refuses empty or partial input, so holding one means holding a document
/// that is safe to write over a good one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuthsDocument {
    bytes: Secret<Vec<u8>>,
}

impl AuthsDocument {
    /// The serialized JSON. Callers write it to a sink and nowhere else.
    pub(crate) fn expose_bytes(&self) -> &[u8] {
        self.bytes.expose()
    }
}

/// Why a document could not be rendered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderError {
    #[error("no registry hosts to render")]
    NoRegistries,
    #[error("the credential source returned an empty password")]
    EmptyPassword,
    /// A credential group holds no usable credential (not minted yet, or
    /// expired): the document would be partial.
    #[error("a registry's credential expired before the document was rendered")]
    MissingCredential,
}

#[derive(Serialize)]
struct Document<'a> {
    auths: BTreeMap<&'a str, Entry<'a>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    username: &'a str,
    password: &'a str,
    auth: &'a str,
}

/// Renders one entry per registry host, all with the same credential.
pub(crate) fn render(credential: &Credential, registries: &[RegistryHost]) -> Result<AuthsDocument, RenderError> {
    render_entries(registries.iter().map(|host| (host, credential)))
}

/// Renders one entry per registry host, each with its own credential (the
/// hosts of several clouds in one document), keys in sorted order so that
/// the same credentials always yield the same bytes (and an unchanged Secret
/// is not rewritten). Every host must have a credential: the caller holds
/// one for each before it renders, so a document is never partial.
pub(crate) fn render_entries<'a>(
    entries: impl IntoIterator<Item = (&'a RegistryHost, &'a Credential)>,
) -> Result<AuthsDocument, RenderError> {
    let mut encoded = Vec::new();
    for (host, credential) in entries {
        let password = credential.password.expose();
        if password.is_empty() {
            return Err(RenderError::EmptyPassword);
        }
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", credential.username, password));
        encoded.push((host.as_str(), credential.username.as_str(), password.as_str(), auth));
    }
    if encoded.is_empty() {
        return Err(RenderError::NoRegistries);
    }
    let auths =
        encoded.iter().map(|(host, username, password, auth)| (*host, Entry { username, password, auth })).collect();
    let bytes = serde_json::to_vec(&Document { auths }).expect("serializing strings cannot fail");
    Ok(AuthsDocument { bytes: Secret::new(bytes) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cred(user: &str, pass: &str) -> Credential {
        Credential { username: user.into(), password: Secret::new(pass.into()), expires_at: None }
    }

    fn hosts(h: &[&str]) -> Vec<RegistryHost> {
        h.iter().map(|h| h.parse().unwrap()).collect()
    }

    #[test]
    fn renders_what_docker_and_the_kubelet_read() {
        let doc = render(&cred("oauth2accesstoken", "ya29.tok"), &hosts(&["gcr.io", "eu.gcr.io"])).unwrap();
        let v: serde_json::Value = serde_json::from_slice(doc.expose_bytes()).unwrap();
        let entry = json!({"username": "oauth2accesstoken", "password": "ya29.tok", "auth": "b2F1dGgyYWNjZXNzdG9rZW46eWEyOS50b2s="});
        assert_eq!(v, json!({"auths": {"gcr.io": entry, "eu.gcr.io": entry}}));
    }

    #[test]
    fn output_is_deterministic_and_sorted() {
        let a = render(&cred("u", "p"), &hosts(&["us.gcr.io", "asia.gcr.io", "gcr.io"])).unwrap();
        let b = render(&cred("u", "p"), &hosts(&["gcr.io", "us.gcr.io", "asia.gcr.io"])).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a.expose_bytes().to_vec()).unwrap();
        let (i, j, k) =
            (text.find("asia.gcr.io").unwrap(), text.find("\"gcr.io").unwrap(), text.find("us.gcr.io").unwrap());
        assert!(i < j && j < k, "{text}");
    }

    #[test]
    fn json_key_passwords_are_escaped() {
        let key = "{\"type\": \"service_account\",\n \"private_key\": \"-----BEGIN\\nX\"}";
        let doc = render(&cred("_json_key", key), &hosts(&["gcr.io"])).unwrap();
        let v: serde_json::Value = serde_json::from_slice(doc.expose_bytes()).unwrap();
        assert_eq!(v["auths"]["gcr.io"]["password"], key);
    }

    #[test]
    fn refuses_empty_input() {
        assert_eq!(render(&cred("u", ""), &hosts(&["gcr.io"])), Err(RenderError::EmptyPassword));
        assert_eq!(render(&cred("u", "p"), &[]), Err(RenderError::NoRegistries));
    }

    #[test]
    fn each_host_gets_its_own_clouds_credential() {
        let (google, ecr) = (cred("oauth2accesstoken", "ya29.tok"), cred("AWS", "ecr-password"));
        let hosts = hosts(&["gcr.io", "123456789012.dkr.ecr.us-east-1.amazonaws.com"]);
        let doc = render_entries([(&hosts[1], &ecr), (&hosts[0], &google)]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(doc.expose_bytes()).unwrap();
        let aws = &v["auths"]["123456789012.dkr.ecr.us-east-1.amazonaws.com"];
        assert_eq!((aws["username"].as_str(), aws["password"].as_str()), (Some("AWS"), Some("ecr-password")));
        assert_eq!(aws["auth"], "QVdTOmVjci1wYXNzd29yZA==");
        assert_eq!(v["auths"]["gcr.io"]["username"], "oauth2accesstoken");
        assert_eq!(
            render_entries([(&hosts[0], &google), (&hosts[1], &cred("AWS", ""))]),
            Err(RenderError::EmptyPassword)
        );
    }

    #[test]
    fn debug_does_not_print_the_document() {
        let doc = render(&cred("u", "ya29.secret"), &hosts(&["gcr.io"])).unwrap();
        assert!(!format!("{doc:?}").contains("ya29"));
    }
}
