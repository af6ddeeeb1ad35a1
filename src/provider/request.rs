//! What the kubelet sends, checked at the door.
//!
//! A request carries values that the cluster's tenants choose: the pod's
//! image, its ServiceAccount's annotations and (with pod identity) a token
//! for that ServiceAccount. Each is parsed here into a type whose rule is
//! strict, so nothing past [`parse_request`] sees a raw value: an annotation
//! that is not a service account email, an image that is not an image
//! reference or a token that is not a JWT stops the request, in one line
//! that names the field, before anything is sent to Google.
//!
//! Only the annotations of the image's own cloud are read: a ServiceAccount
//! whose AWS annotation is malformed still pulls from Google and Azure.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    ProviderError, ACR_CLIENT_ID_ANNOTATION, ACR_TENANT_ID_ANNOTATION, API_VERSION, ECR_ROLE_ARN_ANNOTATION,
    GOOGLE_SERVICE_ACCOUNT_ANNOTATION, ROLE_ARN_ANNOTATION,
};
use crate::acr::{ClientId, TenantId};
use crate::aws::RoleArn;
use crate::registry::{Cloud, RegistryHost};
use crate::secret::Secret;
use crate::source::ServiceAccountEmail;

/// A checked request.
#[derive(Debug)]
pub(crate) struct Request {
    pub image: Image,
    /// The pod's ServiceAccount token (pod identity); `None` for node identity.
    pub token: Option<PodToken>,
    /// The service account the ServiceAccount's annotation names.
    pub impersonate: Option<ServiceAccountEmail>,
    /// The Azure identity a pod pulls from ACR as (its ServiceAccount's
    /// `kubernetes.azure.com/acr-client-id`, as Azure's plugin reads it).
    pub acr_client_id: Option<ClientId>,
    /// Its tenant (`kubernetes.azure.com/acr-tenant-id`), if named.
    pub acr_tenant_id: Option<TenantId>,
    /// The IAM role a pod pulls from ECR as: its ServiceAccount's
    /// `eks.amazonaws.com/ecr-role-arn`, else its `eks.amazonaws.com/role-arn`.
    pub ecr_role: Option<EcrRole>,
}

/// The role a pod pulls from ECR as, and the annotation that named it (for
/// messages).
#[derive(Debug)]
pub(crate) struct EcrRole {
    pub arn: RoleArn,
    pub annotation: &'static str,
}

/// The request as the kubelet writes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    image: String,
    #[serde(default)]
    service_account_token: Option<Secret<String>>,
    #[serde(default)]
    service_account_annotations: BTreeMap<String, String>,
}

/// An image reference, as far as regcred reads it: printable ASCII, no
/// longer than any reference Docker's grammar allows (a 255-character name,
/// a 128-character tag and a digest fit with room to spare).
#[derive(Debug)]
pub(crate) struct Image(String);

const MAX_IMAGE: usize = 1024;

impl Image {
    fn parse(s: String) -> Result<Image, ProviderError> {
        let bad = |problem: String| ProviderError::BadImage { image: quoted(&s), problem };
        if s.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(bad(format!("'{}' is not allowed (image references are printable ASCII)", c.escape_default())));
        }
        if s.len() > MAX_IMAGE {
            return Err(bad(format!("{} bytes is longer than any image reference (at most {MAX_IMAGE})", s.len())));
        }
        Ok(Image(s))
    }

    /// The registry host, as Docker names it: the first path component when
    /// it looks like a host, else Docker Hub.
    pub(crate) fn host(&self) -> &str {
        let image = self.0.as_str();
        let first = image.split('/').next().unwrap_or(image);
        let is_host = image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
        if is_host {
            first.split(':').next().unwrap_or(first)
        } else {
            "docker.io"
        }
    }
}

/// A Kubernetes ServiceAccount token: a JWT, three base64url parts joined by
/// dots, a few kilobytes at most. Only its shape is checked; Google's
/// Security Token Service checks its signature.
#[derive(Debug)]
pub(crate) struct PodToken(Secret<String>);

/// Kubernetes' tokens are about a kilobyte.
const MAX_TOKEN: usize = 16 * 1024;

impl PodToken {
    /// `None` for an empty token (the kubelet sends none for node identity).
    fn parse(token: Secret<String>) -> Result<Option<PodToken>, ProviderError> {
        let t = token.expose();
        if t.is_empty() {
            return Ok(None);
        }
        // Never quote the token, not even a character of it.
        if t.len() > MAX_TOKEN {
            return Err(ProviderError::BadToken("it is longer than 16 KiB"));
        }
        let base64url = |p: &str| p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let parts: Vec<&str> = t.split('.').collect();
        if parts.len() != 3 || parts[..2].iter().any(|p| p.is_empty()) || !parts.iter().all(|p| base64url(p)) {
            return Err(ProviderError::BadToken("it is not a JWT (three base64url parts joined by dots)"));
        }
        Ok(Some(PodToken(token)))
    }

    /// The token, for the exchange at the Security Token Service.
    pub(crate) fn secret(&self) -> Secret<String> {
        self.0.clone()
    }
}

/// Parses and checks the request from the kubelet.
pub(crate) fn parse_request(input: &[u8]) -> Result<Request, ProviderError> {
    let wire: Wire = serde_json::from_slice(input).map_err(|e| {
        // serde's message quotes no input beyond a position; the token is safe.
        ProviderError::BadRequest(format!("{e} (expected JSON with apiVersion {API_VERSION} and an `image`)"))
    })?;
    if !wire.api_version.is_empty() && wire.api_version != API_VERSION {
        return Err(ProviderError::BadRequest(format!(
            "apiVersion {} is not supported; configure the provider with apiVersion {API_VERSION}",
            quoted(&wire.api_version)
        )));
    }
    if !wire.kind.is_empty() && wire.kind != "CredentialProviderRequest" {
        return Err(ProviderError::BadRequest(format!("kind {} is not CredentialProviderRequest", quoted(&wire.kind))));
    }
    let image = Image::parse(wire.image)?;
    let token = match wire.service_account_token {
        Some(token) => PodToken::parse(token)?,
        None => None,
    };
    let annotations = &wire.service_account_annotations;
    let mut request =
        Request { image, token, impersonate: None, acr_client_id: None, acr_tenant_id: None, ecr_role: None };
    // Another cloud's annotations are not this image's business.
    match request.image.host().parse::<RegistryHost>().ok().map(|h| h.cloud().clone()) {
        Some(Cloud::Google) => request.impersonate = google_annotation(annotations)?,
        Some(Cloud::Acr(_)) => {
            request.acr_client_id = azure_annotation(annotations, ACR_CLIENT_ID_ANNOTATION, "a client id (a GUID)")?;
            request.acr_tenant_id = azure_annotation(
                annotations,
                ACR_TENANT_ID_ANNOTATION,
                "a tenant id (a GUID) or the tenant's domain name",
            )?;
        }
        Some(Cloud::Ecr(_) | Cloud::EcrPublic) => request.ecr_role = ecr_annotation(annotations)?,
        None => {}
    }
    Ok(request)
}

/// The Google service account the ServiceAccount names, if any.
fn google_annotation(annotations: &BTreeMap<String, String>) -> Result<Option<ServiceAccountEmail>, ProviderError> {
    match annotations.get(GOOGLE_SERVICE_ACCOUNT_ANNOTATION) {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) => {
            value.parse().map(Some).map_err(|problem| ProviderError::BadAnnotation { value: quoted(value), problem })
        }
    }
}

/// The IAM role the ServiceAccount names for ECR: ECR's own annotation
/// wins, and only the one that names the role is read.
fn ecr_annotation(annotations: &BTreeMap<String, String>) -> Result<Option<EcrRole>, ProviderError> {
    let named = [ECR_ROLE_ARN_ANNOTATION, ROLE_ARN_ANNOTATION]
        .into_iter()
        .find_map(|key| annotations.get(key).filter(|v| !v.is_empty()).map(|value| (key, value)));
    let Some((annotation, value)) = named else { return Ok(None) };
    let arn = value.parse().map_err(|_| ProviderError::BadCloudAnnotation {
        key: annotation,
        value: quoted(value),
        expected: "an IAM role ARN such as arn:aws:iam::123456789012:role/NAME",
    })?;
    Ok(Some(EcrRole { arn, annotation }))
}

/// An Azure annotation, parsed by the same type as the flag it stands in
/// for; the error quotes the value as [`quoted`] does, never more.
fn azure_annotation<T: std::str::FromStr>(
    annotations: &BTreeMap<String, String>,
    key: &'static str,
    expected: &'static str,
) -> Result<Option<T>, ProviderError> {
    match annotations.get(key).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(value) => value.parse().map(Some).map_err(|_| ProviderError::BadCloudAnnotation {
            key,
            value: quoted(value),
            expected,
        }),
    }
}

/// A value from the request as a log line can show it: quoted, every
/// character outside printable ASCII escaped (so a look-alike shows as
/// `\u{ff20}`, a newline as `\n`), and cut short when long.
pub(crate) fn quoted(s: &str) -> String {
    const SHOWN: usize = 64;
    let head: String = s.chars().take(SHOWN).flat_map(char::escape_default).collect();
    match s.chars().nth(SHOWN) {
        Some(_) => format!("\"{head}\"... ({} bytes)", s.len()),
        None => format!("\"{head}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: &str = "puller@project-1.iam.gserviceaccount.com";

    fn request(image: &str, token: &str, annotation: &str) -> serde_json::Value {
        serde_json::json!({"apiVersion": API_VERSION, "kind": "CredentialProviderRequest", "image": image,
            "serviceAccountToken": token, "serviceAccountAnnotations": {GOOGLE_SERVICE_ACCOUNT_ANNOTATION: annotation}})
    }

    fn parse(v: &serde_json::Value) -> Result<Request, ProviderError> {
        parse_request(v.to_string().as_bytes())
    }

    #[test]
    fn requests_follow_the_published_api() {
        let r = parse(&request("europe-west1-docker.pkg.dev/p/r/i:tag", "eyJ.pod.sig", EMAIL)).unwrap();
        assert_eq!(r.image.host(), "europe-west1-docker.pkg.dev");
        assert_eq!(r.token.as_ref().unwrap().secret().expose(), "eyJ.pod.sig");
        assert_eq!(r.impersonate.unwrap().as_str(), EMAIL);
        let r = parse(&request("gcr.io/p/i", "eyJ.pod.sig", "")).unwrap();
        assert!(!format!("{r:?}").contains("eyJ.pod.sig"), "the token is redacted in Debug");
        assert!(r.impersonate.is_none(), "an empty annotation names no account");

        // Node identity: no token, no annotations.
        let r = parse_request(br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"gcr.io/p/i"}"#).unwrap();
        assert!(r.token.is_none() && r.impersonate.is_none());
        assert!(parse(&request("gcr.io/p/i", "", "")).unwrap().token.is_none(), "an empty token is no token");

        for bad in [
            &b"not json"[..],
            br#"{"kind":"CredentialProviderRequest"}"#,
            br#"{"image":""}"#,
            br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1alpha1","image":"gcr.io/x"}"#,
        ] {
            let e = parse_request(bad).unwrap_err();
            assert!(matches!(e, ProviderError::BadRequest(_) | ProviderError::BadImage { .. }), "{e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn tenant_values_are_refused_naming_the_field() {
        let e = parse(&request("gcr.io/p/i", "eyJ.pod.sig", "a@b.c#frag")).unwrap_err().to_string();
        assert!(e.starts_with("invalid iam.gke.io/gcp-service-account annotation \"a@b.c#frag\""), "{e}");
        assert!(e.contains("'#' is not allowed"), "{e}");
        let e = parse(&request("gcr.io/p/i", "eyJ.pod.sig", "puller\u{ff20}project-1.iam.gserviceaccount.com"));
        assert!(e.unwrap_err().to_string().contains("\"puller\\u{ff20}project-1"), "look-alikes are shown escaped");
        let e = parse(&request("gcr.io/p/i", "eyJ.pod.sig", &"a".repeat(5000))).unwrap_err().to_string();
        assert!(e.contains("... (5000 bytes)") && e.len() < 400, "{e}");

        for token in ["eyJ.pod.sig\n", "eyJ.pod", "eyJ..sig", "eyJ.p d.sig", "eyJ.pod.sig.x", &"a.b.".repeat(5000)] {
            let e = parse(&request("gcr.io/p/i", token, EMAIL)).unwrap_err();
            assert!(matches!(e, ProviderError::BadToken(_)), "{token:?}: {e}");
            assert!(e.to_string().starts_with("the request's serviceAccountToken is not"), "{e}");
            assert!(!e.to_string().contains("eyJ"), "{e}");
        }
        for image in ["gcr.io/p/i\n", "gcr.io/p/i x", "gсr.io/p/i", &format!("gcr.io/{}", "i".repeat(2000))] {
            let e = parse(&request(image, "eyJ.pod.sig", EMAIL)).unwrap_err();
            assert!(e.to_string().starts_with("the request's `image` "), "{image:?}: {e}");
        }
    }

    #[test]
    fn acr_annotations_are_parsed_strictly() {
        let with = |annotations: serde_json::Value| {
            parse(&serde_json::json!({"apiVersion": API_VERSION, "image": "myregistry.azurecr.io/i",
                "serviceAccountToken": "eyJ.pod.sig", "serviceAccountAnnotations": annotations}))
        };
        let r = with(serde_json::json!({ACR_CLIENT_ID_ANNOTATION: "00001111-AAAA-2222-bbbb-3333cccc4444",
            ACR_TENANT_ID_ANNOTATION: "contoso.onmicrosoft.com"}))
        .unwrap();
        assert_eq!(r.acr_client_id.unwrap().as_str(), "00001111-aaaa-2222-bbbb-3333cccc4444");
        assert_eq!(r.acr_tenant_id.unwrap().as_str(), "contoso.onmicrosoft.com");
        let r = with(serde_json::json!({ACR_CLIENT_ID_ANNOTATION: ""})).unwrap();
        assert!(r.acr_client_id.is_none() && r.acr_tenant_id.is_none());
        for (key, value) in [(ACR_CLIENT_ID_ANNOTATION, "app&x=1"), (ACR_TENANT_ID_ANNOTATION, "../common")] {
            let e = with(serde_json::json!({key: value})).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid {key} annotation \"{value}\" on the pod's ServiceAccount")), "{e}");
        }
    }

    #[test]
    fn ecr_role_annotations_are_parsed_strictly_ecr_role_arn_first() {
        const GENERAL: &str = "arn:aws:iam::111122223333:role/general";
        const ECR: &str = "arn:aws-cn:iam::111122223333:role/ecr/puller";
        let with = |annotations: serde_json::Value| {
            parse(
                &serde_json::json!({"apiVersion": API_VERSION, "image": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/i",
                "serviceAccountToken": "eyJ.pod.sig", "serviceAccountAnnotations": annotations}),
            )
        };
        let role = |r: Request| r.ecr_role.map(|role| (role.arn.to_string(), role.annotation));
        let r = with(serde_json::json!({ROLE_ARN_ANNOTATION: GENERAL})).unwrap();
        assert_eq!(role(r), Some((GENERAL.to_string(), ROLE_ARN_ANNOTATION)));
        let r = with(serde_json::json!({ROLE_ARN_ANNOTATION: GENERAL, ECR_ROLE_ARN_ANNOTATION: ECR})).unwrap();
        assert_eq!(role(r), Some((ECR.to_string(), ECR_ROLE_ARN_ANNOTATION)));
        let r = with(serde_json::json!({ROLE_ARN_ANNOTATION: GENERAL, ECR_ROLE_ARN_ANNOTATION: ""})).unwrap();
        assert_eq!(role(r), Some((GENERAL.to_string(), ROLE_ARN_ANNOTATION)), "an empty annotation names no role");
        assert!(with(serde_json::json!({})).unwrap().ecr_role.is_none());
        for key in [ROLE_ARN_ANNOTATION, ECR_ROLE_ARN_ANNOTATION] {
            for value in ["arn:aws:iam::111122223333:role/x&Action=AssumeRole", "arn:aws:iam::1:role/x", "role/x\n"] {
                let e = with(serde_json::json!({key: value})).unwrap_err();
                assert_eq!(e.exit_code(), 2);
                let e = e.to_string();
                assert!(
                    e.starts_with(&format!(
                        "invalid {key} annotation {} on the pod's ServiceAccount: expected an IAM role ARN",
                        quoted(value)
                    )),
                    "{e}"
                );
                assert_eq!(e.lines().count(), 1, "{e}");
            }
        }
    }

    /// One cloud's malformed annotation does not stop the pod's pulls from
    /// another: only the image's own cloud's annotations are read.
    #[test]
    fn only_the_images_own_clouds_annotations_are_read() {
        let annotations = serde_json::json!({
            GOOGLE_SERVICE_ACCOUNT_ANNOTATION: "not an email",
            ROLE_ARN_ANNOTATION: "arn:aws:iam::1:role/x",
            ACR_CLIENT_ID_ANNOTATION: "app&x=1",
        });
        let with = |image: &str| {
            parse(&serde_json::json!({"apiVersion": API_VERSION, "image": image,
                "serviceAccountToken": "eyJ.pod.sig", "serviceAccountAnnotations": annotations}))
        };
        for (image, bad) in [
            ("europe-west1-docker.pkg.dev/p/r/i", GOOGLE_SERVICE_ACCOUNT_ANNOTATION),
            ("111122223333.dkr.ecr.eu-west-1.amazonaws.com/i", ROLE_ARN_ANNOTATION),
            ("public.ecr.aws/a/i", ROLE_ARN_ANNOTATION),
            ("myregistry.azurecr.io/i", ACR_CLIENT_ID_ANNOTATION),
        ] {
            let e = with(image).unwrap_err().to_string();
            assert!(e.contains(bad), "{image}: its own cloud's annotation is refused: {e}");
        }
        let r = with("docker.io/library/nginx").unwrap();
        assert!(
            r.impersonate.is_none() && r.ecr_role.is_none() && r.acr_client_id.is_none(),
            "none of regcred's clouds"
        );
        // With the other clouds' annotations well-formed, each image reads its own.
        let good = serde_json::json!({
            GOOGLE_SERVICE_ACCOUNT_ANNOTATION: "puller@project-1.iam.gserviceaccount.com",
            ROLE_ARN_ANNOTATION: "arn:aws:iam::111122223333:role/puller",
            ACR_CLIENT_ID_ANNOTATION: "app&x=1",
        });
        let r = parse(&serde_json::json!({"apiVersion": API_VERSION, "image": "gcr.io/p/i",
            "serviceAccountToken": "eyJ.pod.sig", "serviceAccountAnnotations": good}))
        .unwrap();
        assert!(r.impersonate.is_some() && r.ecr_role.is_none(), "Google's image reads Google's annotation alone");
    }

    #[test]
    fn image_hosts_are_found_as_docker_names_them() {
        let host = |s: &str| Image::parse(s.to_string()).unwrap().host().to_string();
        assert_eq!(host("gcr.io/p/i:tag"), "gcr.io");
        assert_eq!(host("europe-west1-docker.pkg.dev/p/r/i@sha256:abc"), "europe-west1-docker.pkg.dev");
        assert_eq!(host("registry.example:5000/i"), "registry.example");
        assert_eq!(host("nginx"), "docker.io");
        assert_eq!(host("library/nginx:1"), "docker.io");
    }
}
