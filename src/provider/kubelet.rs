//! The kubelet's side: the `CredentialProviderConfig`
//! (`kubelet.config.k8s.io/v1`) that makes the kubelet run
//! `regcred credential-provider`. The README's examples and what
//! `install-credential-provider` writes on nodes all come from [`config`].
//!
//! One provider entry is one identity. The kubelet's rules (in
//! kubernetes/kubernetes, `pkg/credentialprovider/plugin/`, and the
//! `CredentialProviderConfig` reference on kubernetes.io) shape the layout:
//! - an entry's `name` is the file the kubelet runs from its
//!   `--image-credential-provider-bin-dir` (`RegisterCredentialProviderPlugins`
//!   and `execPlugin` in `plugin.go` join the two), and names must be unique
//!   (`validateCredentialProviderConfig` in `config.go` refuses a
//!   duplicate), so each entry gets a file of its own ([`ProviderName`]:
//!   `regcred`, `regcred-ecr`, `regcred-acr`, all the same program);
//! - `tokenAttributes` holds one `serviceAccountTokenAudience` per entry
//!   (the kubelet's `TokenRequest` names that one audience), and each cloud
//!   wants its own (Google: the pool provider; AWS STS: `sts.amazonaws.com`;
//!   Entra ID: `api://AzureADTokenExchange`), so each cloud answered with
//!   pods' identities is an entry of its own;
//! - the kubelet runs every entry whose `matchImages` match an image and
//!   keeps every answer (`externalCredentialProviderKeyring.Lookup` in
//!   `plugins.go`), then pulls with each credential in turn until one works
//!   (`kuberuntime_image.go`; the reference: "the value from the provider
//!   earlier in this list is attempted first"), so two entries for the same
//!   images would let a pod pull with the node's identity whenever its own
//!   was refused: a cloud is in one entry only;
//! - clouds answered with the node's identity need no token and share the
//!   `regcred` entry while Google's images are answered with the node's
//!   identity too; beside Google's pod identity each gets an entry without
//!   `tokenAttributes`.
//!
//! regcred tells the clouds apart by the image's host, so every entry runs
//! the same `credential-provider` flags (the Google entry adds
//! `--workload-identity-provider`); the kubelet sends an entry only the
//! images its `matchImages` match, whose patterns never overlap.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::{
    PoolProvider, ACR_CLIENT_ID_ANNOTATION, ACR_PATTERNS, ACR_TENANT_ID_ANNOTATION, API_VERSION, DEFAULT_PATTERNS,
    ECR_PATTERNS, ECR_ROLE_ARN_ANNOTATION, GOOGLE_SERVICE_ACCOUNT_ANNOTATION, ROLE_ARN_ANNOTATION,
};

/// The name of the entry for Google's images, which is also the file name
/// the kubelet runs in its `--image-credential-provider-bin-dir`.
pub(crate) const PROVIDER_NAME: &str = "regcred";

/// How long the kubelet caches an answer that carries no `cacheDuration`.
/// regcred always sends one, so this only matters to the kubelet's
/// validation, which requires the field.
pub(crate) const DEFAULT_CACHE_DURATION: &str = "10m";

/// The audience AWS STS expects in a web identity token: the client id
/// EKS registers for its clusters' IAM OIDC providers, and the audience of
/// the `tokenAttributes` configs published for AWS's own
/// `ecr-credential-provider` (kubernetes/cloud-provider-aws).
pub(crate) const ECR_TOKEN_AUDIENCE: &str = "sts.amazonaws.com";

/// The audience Microsoft Entra ID expects in a federated credential's
/// token in Azure's public cloud (what the AKS workload identity webhook
/// projects, and `az identity federated-credential create`'s default).
pub(crate) const ACR_TOKEN_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Whose identity Google's images are pulled with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Identity {
    /// No `tokenAttributes`: regcred finds the node's credentials.
    Node,
    /// `tokenAttributes`: the kubelet hands regcred a token for the pod's
    /// ServiceAccount, which regcred exchanges at this workload identity pool
    /// provider.
    Pod { pool_provider: PoolProvider },
}

/// Whose identity another cloud's images (ECR's, ACR's) are pulled with,
/// when the kubelet sends them to regcred at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CloudIdentity {
    /// The node's: no token.
    Node,
    /// Each pod's: a token for its ServiceAccount with this audience, which
    /// regcred exchanges for the identity the ServiceAccount's annotation
    /// names.
    Pod(TokenAudience),
}

/// What the kubelet sends to regcred, and as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Clouds {
    /// Google's registries, always sent.
    pub(crate) google: Identity,
    /// Amazon ECR's, when sent.
    pub(crate) ecr: Option<CloudIdentity>,
    /// Azure Container Registry's, when sent.
    pub(crate) acr: Option<CloudIdentity>,
}

/// The audience of the ServiceAccount tokens the kubelet requests for an
/// entry (`tokenAttributes.serviceAccountTokenAudience`, which the kubelet
/// requires to be non-empty): an identifier such as `sts.amazonaws.com` or
/// a URI such as `api://AzureADTokenExchange`, printable ASCII without
/// spaces, at most 1024 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenAudience(String);

const MAX_AUDIENCE: usize = 1024;

impl FromStr for TokenAudience {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("expected an audience such as sts.amazonaws.com; it is empty".into());
        }
        if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!("'{}' is not allowed (printable ASCII without spaces)", c.escape_default()));
        }
        if s.len() > MAX_AUDIENCE {
            return Err(format!("{} bytes is too long (at most {MAX_AUDIENCE})", s.len()));
        }
        Ok(TokenAudience(s.to_string()))
    }
}

impl fmt::Display for TokenAudience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An entry's name, and so the file name of its copy of regcred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum ProviderName {
    /// `regcred`: Google's images, and the node identity's of other clouds
    /// while Google's images use it too.
    #[serde(rename = "regcred")]
    Regcred,
    /// `regcred-ecr`: ECR's images on an entry of their own.
    #[serde(rename = "regcred-ecr")]
    Ecr,
    /// `regcred-acr`: ACR's images on an entry of their own.
    #[serde(rename = "regcred-acr")]
    Acr,
}

impl ProviderName {
    /// The file name in the kubelet's bin dir.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProviderName::Regcred => PROVIDER_NAME,
            ProviderName::Ecr => "regcred-ecr",
            ProviderName::Acr => "regcred-acr",
        }
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The whole file (`kubelet.config.k8s.io/v1`): its `providers` are
/// [`CredentialProviderConfig::google`], then the others.
#[derive(Debug, PartialEq)]
pub(crate) struct CredentialProviderConfig {
    /// `regcred`: Google's images' entry, always there, and first.
    pub(crate) google: Provider,
    /// `regcred-ecr`, `regcred-acr`: clouds on entries of their own.
    pub(crate) others: Vec<Provider>,
}

impl CredentialProviderConfig {
    /// Every entry, in the file's order.
    pub(crate) fn providers(&self) -> impl Iterator<Item = &Provider> {
        std::iter::once(&self.google).chain(&self.others)
    }
}

impl Serialize for CredentialProviderConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut s = serializer.serialize_struct("CredentialProviderConfig", 3)?;
        s.serialize_field("apiVersion", "kubelet.config.k8s.io/v1")?;
        s.serialize_field("kind", "CredentialProviderConfig")?;
        s.serialize_field("providers", &self.providers().collect::<Vec<_>>())?;
        s.end()
    }
}

/// One `providers` entry.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Provider {
    pub(crate) name: ProviderName,
    pub(crate) api_version: &'static str,
    pub(crate) match_images: Vec<&'static str>,
    pub(crate) default_cache_duration: &'static str,
    pub(crate) args: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token_attributes: Option<TokenAttributes>,
}

/// KEP-4412's `tokenAttributes`: which token the kubelet requests for the pod.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenAttributes {
    pub(crate) service_account_token_audience: String,
    /// `ServiceAccount`: pods of different ServiceAccounts never share a
    /// credential (the kubelet's cache key holds the ServiceAccount's
    /// namespace, name, UID and the annotations it passed).
    pub(crate) cache_type: &'static str,
    /// `true`: a pod without a ServiceAccount (a static pod) gets nothing
    /// from a pod-identity entry; the kubelet does not run it without a
    /// token, so the node's identity is never its fallback.
    pub(crate) require_service_account: bool,
    /// Passed when present, never required: with a required key missing
    /// the kubelet skips the entry silently (`pluginProvider.provide` in
    /// `plugin.go` logs it at `-v=5` only), and the pull fails with the
    /// registry's own 401. Optional keys let regcred refuse in one line,
    /// which the kubelet logs as an error, naming the annotation the
    /// ServiceAccount lacks; either way the kubelet pulls without a
    /// credential from this entry.
    pub(crate) optional_service_account_annotation_keys: Vec<&'static str>,
}

/// The ServiceAccount annotations regcred reads for ECR images: the role
/// in `eks.amazonaws.com/ecr-role-arn`, else in `eks.amazonaws.com/role-arn`.
/// AWS's own plugin reads the first alone
/// (`cmd/ecr-credential-provider/main.go`, `buildCredentialsProvider`, in
/// kubernetes/cloud-provider-aws), and its configs declare it optional;
/// regcred also reads IRSA's.
const ECR_ANNOTATIONS: &[&str] = &[ECR_ROLE_ARN_ANNOTATION, ROLE_ARN_ANNOTATION];

/// The ServiceAccount annotations regcred reads for ACR images: the
/// identity's client id, and its tenant (else the provider's own
/// `--azure-tenant-id` / `AZURE_TENANT_ID`). Azure's own plugin refuses a
/// token without both (its tests in `pkg/credentialprovider/` of
/// kubernetes-sigs/cloud-provider-azure), and configs written for it list
/// both as required; regcred lists them as optional (see
/// [`TokenAttributes::optional_service_account_annotation_keys`]).
const ACR_ANNOTATIONS: &[&str] = &[ACR_CLIENT_ID_ANNOTATION, ACR_TENANT_ID_ANNOTATION];

/// `tokenAttributes` for tokens with `audience`, passing `annotations`.
fn token_attributes(audience: String, annotations: &[&'static str]) -> TokenAttributes {
    TokenAttributes {
        service_account_token_audience: audience,
        cache_type: "ServiceAccount",
        require_service_account: true,
        optional_service_account_annotation_keys: annotations.to_vec(),
    }
}

/// The config that runs `regcred credential-provider` for `clouds`, then
/// `extra_args` (further `credential-provider` flags, such as `--key-file`)
/// in every entry. Google's token audience is the pool provider's default
/// allowed audience: `https:` followed by its resource name.
pub(crate) fn config(clouds: &Clouds, extra_args: &[String]) -> CredentialProviderConfig {
    let entry = |name, match_images: &[&'static str], args: Vec<String>, token_attributes| Provider {
        name,
        api_version: API_VERSION,
        match_images: match_images.to_vec(),
        default_cache_duration: DEFAULT_CACHE_DURATION,
        args: args.into_iter().chain(extra_args.iter().cloned()).collect(),
        token_attributes,
    };
    let plain = || vec!["credential-provider".to_string()];
    let mut google = match &clouds.google {
        Identity::Node => entry(ProviderName::Regcred, DEFAULT_PATTERNS, plain(), None),
        Identity::Pod { pool_provider } => {
            let args = vec!["credential-provider".to_string(), format!("--workload-identity-provider={pool_provider}")];
            let attributes = token_attributes(format!("https:{pool_provider}"), &[GOOGLE_SERVICE_ACCOUNT_ANNOTATION]);
            entry(ProviderName::Regcred, DEFAULT_PATTERNS, args, Some(attributes))
        }
    };
    let mut others = Vec::new();
    for (identity, name, patterns, annotations) in [
        (&clouds.ecr, ProviderName::Ecr, ECR_PATTERNS, ECR_ANNOTATIONS),
        (&clouds.acr, ProviderName::Acr, ACR_PATTERNS, ACR_ANNOTATIONS),
    ] {
        match identity {
            None => {}
            // Node identity beside Google's node identity: the same entry.
            Some(CloudIdentity::Node) if google.token_attributes.is_none() => {
                google.match_images.extend_from_slice(patterns)
            }
            // Beside Google's pod identity the entry would send these images
            // a token for Google's pool provider: an entry of their own.
            Some(CloudIdentity::Node) => others.push(entry(name, patterns, plain(), None)),
            Some(CloudIdentity::Pod(audience)) => {
                let attributes = token_attributes(audience.to_string(), annotations);
                others.push(entry(name, patterns, plain(), Some(attributes)))
            }
        }
    }
    CredentialProviderConfig { google, others }
}

/// The file's bytes: indented JSON, which the kubelet reads like YAML.
pub(crate) fn to_json(config: &CredentialProviderConfig) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(config).expect("the config serialises");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const POOL: &str = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kubelet";
    const GOOGLE_IMAGES: [&str; 3] = ["gcr.io", "*.gcr.io", "*-docker.pkg.dev"];
    const ECR_IMAGES: [&str; 4] = [
        "*.dkr.ecr.*.amazonaws.com",
        "*.dkr.ecr.*.amazonaws.com.cn",
        "*.dkr.ecr-fips.*.amazonaws.com",
        "public.ecr.aws",
    ];
    const ACR_IMAGES: [&str; 3] = ["*.azurecr.io", "*.azurecr.cn", "*.azurecr.us"];

    fn pod(audience: &str) -> CloudIdentity {
        CloudIdentity::Pod(audience.parse().unwrap())
    }

    fn google_pod() -> Identity {
        Identity::Pod { pool_provider: POOL.parse().unwrap() }
    }

    fn written(clouds: &Clouds, extra: &[&str]) -> Value {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        serde_json::from_slice(&to_json(&config(clouds, &extra))).unwrap()
    }

    #[test]
    fn pod_identity_asks_for_a_token_per_service_account() {
        let clouds = Clouds { google: google_pod(), ecr: None, acr: None };
        assert_eq!(
            written(&clouds, &["--sts-endpoint=http://sts"]),
            json!({
                "apiVersion": "kubelet.config.k8s.io/v1",
                "kind": "CredentialProviderConfig",
                "providers": [{
                    "name": "regcred",
                    "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                    "matchImages": ["gcr.io", "*.gcr.io", "*-docker.pkg.dev"],
                    "defaultCacheDuration": "10m",
                    "args": ["credential-provider", format!("--workload-identity-provider={POOL}"), "--sts-endpoint=http://sts"],
                    "tokenAttributes": {
                        "serviceAccountTokenAudience": format!("https:{POOL}"),
                        "cacheType": "ServiceAccount",
                        "requireServiceAccount": true,
                        "optionalServiceAccountAnnotationKeys": ["iam.gke.io/gcp-service-account"],
                    },
                }],
            })
        );
    }

    #[test]
    fn node_identity_has_no_token_attributes() {
        let v = written(&Clouds { google: Identity::Node, ecr: None, acr: None }, &[]);
        assert_eq!(v["providers"][0]["args"], json!(["credential-provider"]));
        assert!(v["providers"][0].get("tokenAttributes").is_none());
    }

    /// Google, ECR and ACR each with pods' identities: three entries, each
    /// with its cloud's audience and the annotations regcred reads for it.
    #[test]
    fn three_clouds_with_pod_identity_are_three_entries_with_their_own_audiences() {
        let clouds = Clouds {
            google: google_pod(),
            ecr: Some(pod("sts.amazonaws.com")),
            acr: Some(pod("api://AzureADTokenExchange")),
        };
        let entry = |name: &str, images: &[&str], args: Value, audience: String, keys: &[&str]| {
            json!({
                "name": name,
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "matchImages": images,
                "defaultCacheDuration": "10m",
                "args": args,
                "tokenAttributes": {
                    "serviceAccountTokenAudience": audience,
                    "cacheType": "ServiceAccount",
                    "requireServiceAccount": true,
                    "optionalServiceAccountAnnotationKeys": keys,
                },
            })
        };
        assert_eq!(
            written(&clouds, &["--azure-tenant-id=contoso.onmicrosoft.com"]),
            json!({
                "apiVersion": "kubelet.config.k8s.io/v1",
                "kind": "CredentialProviderConfig",
                "providers": [
                    entry(
                        "regcred",
                        &GOOGLE_IMAGES,
                        json!(["credential-provider", format!("--workload-identity-provider={POOL}"),
                               "--azure-tenant-id=contoso.onmicrosoft.com"]),
                        format!("https:{POOL}"),
                        &["iam.gke.io/gcp-service-account"],
                    ),
                    entry(
                        "regcred-ecr",
                        &ECR_IMAGES,
                        json!(["credential-provider", "--azure-tenant-id=contoso.onmicrosoft.com"]),
                        "sts.amazonaws.com".into(),
                        &["eks.amazonaws.com/ecr-role-arn", "eks.amazonaws.com/role-arn"],
                    ),
                    entry(
                        "regcred-acr",
                        &ACR_IMAGES,
                        json!(["credential-provider", "--azure-tenant-id=contoso.onmicrosoft.com"]),
                        "api://AzureADTokenExchange".into(),
                        &["kubernetes.azure.com/acr-client-id", "kubernetes.azure.com/acr-tenant-id"],
                    ),
                ],
            })
        );
    }

    /// Beside Google's pod identity, another cloud's node identity is an
    /// entry without tokenAttributes: the Google entry's token is for
    /// Google's pool provider, and must never reach AWS or Azure.
    #[test]
    fn node_identity_beside_google_pod_identity_is_an_entry_without_a_token() {
        let clouds = Clouds { google: google_pod(), ecr: Some(CloudIdentity::Node), acr: Some(CloudIdentity::Node) };
        let v = written(&clouds, &["--key-file=/k.json"]);
        let plain = |name: &str, images: &[&str]| {
            json!({
                "name": name,
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "matchImages": images,
                "defaultCacheDuration": "10m",
                "args": ["credential-provider", "--key-file=/k.json"],
            })
        };
        assert_eq!(v["providers"][0]["matchImages"], json!(GOOGLE_IMAGES));
        assert_eq!(v["providers"][1], plain("regcred-ecr", &ECR_IMAGES));
        assert_eq!(v["providers"][2], plain("regcred-acr", &ACR_IMAGES));
        assert_eq!(v["providers"].as_array().unwrap().len(), 3);
    }

    /// Every combination: which entries, with which images, asking for a
    /// token of which audience. Images are in one entry only.
    #[test]
    fn every_combination_puts_each_cloud_in_one_entry_of_one_identity() {
        let g = GOOGLE_IMAGES.to_vec();
        let e = ECR_IMAGES.to_vec();
        let a = ACR_IMAGES.to_vec();
        let cat = |parts: &[&Vec<&'static str>]| parts.iter().flat_map(|p| p.iter().copied()).collect::<Vec<_>>();
        let google = format!("https:{POOL}");
        let (sts, entra) = ("sts.amazonaws.com".to_string(), "api://AzureADTokenExchange".to_string());
        let node = || Some(CloudIdentity::Node);
        let ecr_pod = || Some(pod("sts.amazonaws.com"));
        let acr_pod = || Some(pod("api://AzureADTokenExchange"));
        type Layout = Vec<(&'static str, Vec<&'static str>, Option<String>)>;
        let cases: Vec<(Identity, Option<CloudIdentity>, Option<CloudIdentity>, Layout)> = vec![
            (Identity::Node, None, None, vec![("regcred", g.clone(), None)]),
            (Identity::Node, node(), None, vec![("regcred", cat(&[&g, &e]), None)]),
            (Identity::Node, None, node(), vec![("regcred", cat(&[&g, &a]), None)]),
            (Identity::Node, node(), node(), vec![("regcred", cat(&[&g, &e, &a]), None)]),
            (
                Identity::Node,
                ecr_pod(),
                None,
                vec![("regcred", g.clone(), None), ("regcred-ecr", e.clone(), Some(sts.clone()))],
            ),
            (
                Identity::Node,
                None,
                acr_pod(),
                vec![("regcred", g.clone(), None), ("regcred-acr", a.clone(), Some(entra.clone()))],
            ),
            (
                Identity::Node,
                ecr_pod(),
                node(),
                vec![("regcred", cat(&[&g, &a]), None), ("regcred-ecr", e.clone(), Some(sts.clone()))],
            ),
            (
                Identity::Node,
                node(),
                acr_pod(),
                vec![("regcred", cat(&[&g, &e]), None), ("regcred-acr", a.clone(), Some(entra.clone()))],
            ),
            (
                Identity::Node,
                ecr_pod(),
                acr_pod(),
                vec![
                    ("regcred", g.clone(), None),
                    ("regcred-ecr", e.clone(), Some(sts.clone())),
                    ("regcred-acr", a.clone(), Some(entra.clone())),
                ],
            ),
            (google_pod(), None, None, vec![("regcred", g.clone(), Some(google.clone()))]),
            (
                google_pod(),
                node(),
                None,
                vec![("regcred", g.clone(), Some(google.clone())), ("regcred-ecr", e.clone(), None)],
            ),
            (
                google_pod(),
                None,
                node(),
                vec![("regcred", g.clone(), Some(google.clone())), ("regcred-acr", a.clone(), None)],
            ),
            (
                google_pod(),
                node(),
                node(),
                vec![
                    ("regcred", g.clone(), Some(google.clone())),
                    ("regcred-ecr", e.clone(), None),
                    ("regcred-acr", a.clone(), None),
                ],
            ),
            (
                google_pod(),
                ecr_pod(),
                None,
                vec![("regcred", g.clone(), Some(google.clone())), ("regcred-ecr", e.clone(), Some(sts.clone()))],
            ),
            (
                google_pod(),
                None,
                acr_pod(),
                vec![("regcred", g.clone(), Some(google.clone())), ("regcred-acr", a.clone(), Some(entra.clone()))],
            ),
            (
                google_pod(),
                ecr_pod(),
                node(),
                vec![
                    ("regcred", g.clone(), Some(google.clone())),
                    ("regcred-ecr", e.clone(), Some(sts.clone())),
                    ("regcred-acr", a.clone(), None),
                ],
            ),
            (
                google_pod(),
                node(),
                acr_pod(),
                vec![
                    ("regcred", g.clone(), Some(google.clone())),
                    ("regcred-ecr", e.clone(), None),
                    ("regcred-acr", a.clone(), Some(entra.clone())),
                ],
            ),
            (
                google_pod(),
                ecr_pod(),
                acr_pod(),
                vec![
                    ("regcred", g.clone(), Some(google.clone())),
                    ("regcred-ecr", e.clone(), Some(sts.clone())),
                    ("regcred-acr", a.clone(), Some(entra.clone())),
                ],
            ),
        ];
        assert_eq!(cases.len(), 2 * 3 * 3, "every combination once");
        for (google_identity, ecr, acr, layout) in cases {
            let clouds = Clouds { google: google_identity, ecr, acr };
            let v = written(&clouds, &[]);
            let got: Layout = v["providers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let name = ["regcred", "regcred-ecr", "regcred-acr"].into_iter().find(|n| p["name"] == *n).unwrap();
                    let images = p["matchImages"].as_array().unwrap().iter().map(|i| {
                        let i = i.as_str().unwrap();
                        *g.iter().chain(&e).chain(&a).find(|k| **k == i).unwrap()
                    });
                    let audience = p["tokenAttributes"]["serviceAccountTokenAudience"].as_str().map(String::from);
                    (name, images.collect(), audience)
                })
                .collect();
            assert_eq!(got, layout, "{clouds:?}");
        }
    }

    #[test]
    fn audiences_are_printable_ascii_without_spaces() {
        for ok in ["sts.amazonaws.com", "api://AzureADTokenExchange", "api://AzureADTokenExchangeChina", "x"] {
            assert_eq!(ok.parse::<TokenAudience>().unwrap().to_string(), ok);
        }
        for (bad, why) in [
            ("", "it is empty"),
            ("sts.amazonaws.com ", "' ' is not allowed"),
            ("api://x\n", "'\\n' is not allowed"),
            ("stѕ.amazonaws.com", "is not allowed"),
        ] {
            let e = bad.parse::<TokenAudience>().unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!("a".repeat(1024).parse::<TokenAudience>().is_ok());
        assert!("a".repeat(1025).parse::<TokenAudience>().unwrap_err().contains("1025 bytes"));
    }
}
