//! Emulators of the Azure endpoints an ACR credential comes from, all served
//! by one HTTP server (the product reaches each through an endpoint setting:
//! the authority host, the IMDS URL, the registry's URL):
//!
//! * `POST /{tenant}/oauth2/v2.0/token`: Microsoft Entra ID's (Azure AD's)
//!   v2 token endpoint, client credentials grant with a client assertion
//!   (workload identity federation: the assertion is a Kubernetes service
//!   account token checked against the app's federated credentials) or a
//!   client secret — [`aad`];
//! * `GET /metadata/identity/oauth2/token`: the Instance Metadata Service's
//!   managed identity endpoint — [`imds`];
//! * `POST /oauth2/exchange`, `GET|POST /oauth2/token`, `GET /v2/`: the
//!   registry's own token server, which exchanges an Azure AD access token
//!   for an ACR refresh token and that for an ACR access token — [`acr`].
//!
//! The registry itself, `https://NAME.azurecr.io`, is a separate TLS front
//! ([`Azure::start_registry_front`], `front`) that serves the same token
//! server and takes its access tokens.
//!
//! The kit stands for one tenant, one registry and the identities the test
//! creates in them. It accepts what Azure would accept and answers errors
//! with Azure's JSON shapes (`AADSTS...` errors from Entra ID, IMDS's OAuth
//! errors, the registry's `{"errors": [...]}`). Every token it issues is a
//! JWT signed by the kit's own key, unique, and recorded as an
//! [`AzureToken`].

mod aad;
mod acr;
mod front;
mod imds;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use axum::Router;
use http::StatusCode;
use rsa::PrivateKey;
use serde_json::{json, Value};

use crate::faults::Faults;
use crate::front::{FrontConfig, FrontError, RegistryFront};
use crate::google::{jwt, OidcProvider};
use crate::kube::RecordedRequest;
use crate::server::{self, Peer, Recorder, Server};

/// The resource (AAD v1, IMDS) whose tokens ACR's exchange accepts; AAD v2
/// asks for its scope `https://containerregistry.azure.net/.default`.
pub const ACR_RESOURCE: &str = "https://containerregistry.azure.net";
/// The audience Entra ID requires of a federated token by default.
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The Docker username that tells ACR the password is a refresh token.
pub const ACR_USERNAME: &str = "00000000-0000-0000-0000-000000000000";

/// One token the kit issued.
#[derive(Clone, Debug)]
pub struct AzureToken {
    /// The token itself (a JWT).
    pub token: String,
    /// `"client_assertion"`, `"client_secret"` or `"managed_identity"` (Azure
    /// AD access tokens), `"acr_refresh"` (from `/oauth2/exchange`) or
    /// `"acr_access"` (from `/oauth2/token`).
    pub kind: String,
    /// The identity's client (application) id.
    pub client_id: String,
    /// The token's audience: the resource of an AAD token, the registry's
    /// login server of an ACR token.
    pub audience: String,
    pub expires_at: SystemTime,
}

/// An app registration (or a user-assigned managed identity's service
/// principal): what may authenticate as it.
#[derive(Clone, Debug, Default)]
struct App {
    /// `(issuer, subject, audience)` of each federated identity credential.
    federated: Vec<(String, String, String)>,
    secrets: Vec<String>,
}

pub(crate) struct AzureState {
    token_lifetime: Duration,
    imds_token_lifetime: Duration,
    refresh_token_lifetime: Duration,
    apps: HashMap<String, App>,
    /// Issuers whose tokens may be federated, with their keys.
    issuers: Vec<OidcProvider>,
    /// Client ids of the VM's managed identities; the first is the
    /// system-assigned one when `system_identity` is set.
    vm_identities: Vec<String>,
    system_identity: Option<String>,
    /// Client ids holding AcrPull on the registry.
    pullers: Vec<String>,
    issued: Vec<AzureToken>,
}

/// Everything the handlers need.
pub(crate) struct Shared {
    key: PrivateKey,
    key_id: String,
    tenant_id: String,
    login_server: String,
    state: Mutex<AzureState>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, AzureState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sign(&self, claims: &Value) -> String {
        jwt::sign(&self.key, Some(&self.key_id), claims)
    }

    /// Issues and records an Azure AD access token for `resource`.
    fn issue_aad(&self, kind: &str, client_id: &str, resource: &str, lifetime: Duration) -> AzureToken {
        let now = now_secs();
        let exp = now + lifetime.as_secs();
        let token = self.sign(&json!({
            "aud": resource,
            "iss": format!("https://sts.windows.net/{}/", self.tenant_id),
            "iat": now,
            "nbf": now,
            "exp": exp,
            "appid": client_id,
            "idtyp": "app",
            "oid": guid(),
            "sub": client_id,
            "tid": self.tenant_id,
            "uti": random_b64(16),
            "ver": "1.0",
        }));
        self.record(token, kind, client_id, resource, exp)
    }

    fn record(&self, token: String, kind: &str, client_id: &str, audience: &str, exp: u64) -> AzureToken {
        let t = AzureToken {
            token,
            kind: kind.to_string(),
            client_id: client_id.to_string(),
            audience: audience.to_string(),
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
        };
        self.state().issued.push(t.clone());
        t
    }

    /// The issued token with this value, if it has not expired.
    fn valid_token(&self, token: &str) -> Option<AzureToken> {
        let now = SystemTime::now();
        self.state().issued.iter().find(|t| t.token == token).filter(|t| t.expires_at > now).cloned()
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

fn random_b64(n: usize) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = rand::random_iter().take(n).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A random GUID, as Azure names tenants, apps and identities.
fn guid() -> String {
    let hex: String = (0..32).map(|_| char::from_digit(rand::random_range(0..16u32), 16).expect("hex")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn json_body(status: StatusCode, v: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header(http::header::CACHE_CONTROL, "no-store, no-cache")
        .body(Body::from(v.to_string()))
        .expect("valid response")
}

/// The running Azure emulator on `127.0.0.1:<random port>`. Dropping it
/// stops the server.
pub struct Azure {
    shared: Arc<Shared>,
    faults: Faults,
    recorder: Arc<Recorder>,
    server: Server,
}

impl Azure {
    /// Starts the emulator for a fresh tenant and a registry `NAME.azurecr.io`
    /// with a random name, with a freshly generated RSA-2048 signing key.
    pub async fn start() -> Azure {
        Azure::start_with(server::bind().await, None).await
    }

    /// Starts the emulator on `addr` (a node's IMDS: `169.254.169.254:80`).
    pub async fn start_on(addr: std::net::SocketAddr) -> std::io::Result<Azure> {
        Ok(Azure::start_with(tokio::net::TcpListener::bind(addr).await?, None).await)
    }

    /// Starts the emulator on `addr` for the registry `login_server`
    /// (`NAME.azurecr.io`), a name known before it starts (a node's
    /// certificate and `/etc/hosts` name it).
    pub async fn start_on_for(addr: std::net::SocketAddr, login_server: &str) -> std::io::Result<Azure> {
        Ok(Azure::start_with(tokio::net::TcpListener::bind(addr).await?, Some(login_server.to_string())).await)
    }

    async fn start_with(listener: tokio::net::TcpListener, login_server: Option<String>) -> Azure {
        let key = tokio::task::spawn_blocking(|| PrivateKey::new(&mut rand::rng(), 2048).expect("RSA key generation"))
            .await
            .expect("key generation task");
        let login_server = login_server.unwrap_or_else(|| {
            let name: String = (0..10).map(|_| (b'a' + rand::random_range(0..26u8)) as char).collect();
            format!("regcred{name}.azurecr.io")
        });
        let shared = Arc::new(Shared {
            key,
            key_id: random_b64(20),
            tenant_id: guid(),
            login_server,
            state: Mutex::new(AzureState {
                token_lifetime: Duration::from_secs(3599),
                imds_token_lifetime: Duration::from_secs(86_399),
                refresh_token_lifetime: Duration::from_secs(3 * 3600),
                apps: HashMap::new(),
                issuers: Vec::new(),
                vm_identities: Vec::new(),
                system_identity: None,
                pullers: Vec::new(),
                issued: Vec::new(),
            }),
        });
        let faults = Faults::default();
        let recorder = Arc::new(Recorder::default());
        let router = Router::new().fallback(dispatch).with_state(shared.clone());
        let peer =
            Peer { name: "azure", faults: faults.clone(), recorder: recorder.clone(), error: Arc::new(fault_response) };
        let server = server::serve_on(listener, router, peer);
        let azure = Azure { shared, faults, recorder, server };
        azure.trust_issuer(&azure.cluster_issuer(), &azure.cluster_jwks());
        azure
    }

    /// The signing keys of [`Azure::cluster_issuer`], as a JSON Web Key Set.
    pub fn cluster_jwks(&self) -> Value {
        use base64::Engine as _;
        use rsa::traits::PublicKeyParts as _;
        let public = self.shared.key.to_public_key();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let trim = |b: Box<[u8]>| b.iter().copied().skip_while(|x| *x == 0).collect::<Vec<u8>>();
        json!({"keys": [{
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": format!("{}-cluster", self.shared.key_id),
            "n": b64(&trim(public.n_bytes())),
            "e": b64(&trim(public.e_bytes())),
        }]})
    }

    /// `http://127.0.0.1:PORT`: the authority host (`AZURE_AUTHORITY_HOST`)
    /// and the registry's URL in place of `https://NAME.azurecr.io`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The tenant the kit stands for.
    pub fn tenant_id(&self) -> String {
        self.shared.tenant_id.clone()
    }

    /// The v2 token endpoint of the kit's tenant.
    pub fn token_uri(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.url(), self.shared.tenant_id)
    }

    /// The managed identity endpoint (IMDS), in place of
    /// `http://169.254.169.254/metadata/identity/oauth2/token`.
    pub fn imds_endpoint(&self) -> String {
        format!("{}/metadata/identity/oauth2/token", self.url())
    }

    /// The registry's login server, `NAME.azurecr.io`: the `service` its
    /// token server expects and the `aud` of its tokens.
    pub fn login_server(&self) -> String {
        self.shared.login_server.clone()
    }

    /// Serves the registry, `https://NAME.azurecr.io`, over TLS in front of a
    /// plain registry: its token server, and the images for requests with an
    /// access token from it that grants them.
    pub async fn start_registry_front(&self, config: FrontConfig) -> Result<RegistryFront, FrontError> {
        let gate = front::AcrGate::new(self.shared.clone());
        crate::front::start("acr", self.login_server(), config, Arc::new(gate)).await
    }

    /// Registers an app (a service principal) and returns its client id.
    pub fn create_app(&self) -> String {
        let id = guid();
        self.shared.state().apps.insert(id.clone(), App::default());
        id
    }

    /// Adds a federated identity credential to the app `client_id`, as
    /// `az identity federated-credential create --issuer ISSUER --subject
    /// SUBJECT` does (audience `api://AzureADTokenExchange`). The issuer's
    /// tokens must also be verifiable: see [`Azure::trust_issuer`].
    pub fn add_federated_credential(&self, client_id: &str, issuer: &str, subject: &str) {
        let mut st = self.shared.state();
        let app = st.apps.entry(client_id.to_string()).or_default();
        app.federated.push((issuer.to_string(), subject.to_string(), FEDERATED_AUDIENCE.to_string()));
    }

    /// Adds a client secret to the app `client_id` and returns it.
    pub fn add_client_secret(&self, client_id: &str) -> String {
        // The shape of Entra ID's generated secrets: a 3-character prefix, `8Q~`, random text.
        let secret = format!("kit8Q~{}", random_b64(30).replace('-', "_"));
        self.shared.state().apps.entry(client_id.to_string()).or_default().secrets.push(secret.clone());
        secret
    }

    /// Entra ID fetches an issuer's signing keys from its OIDC discovery
    /// document; the kit takes them from the test: `jwks` as the issuer's
    /// `jwks_uri` serves it.
    pub fn trust_issuer(&self, issuer: &str, jwks: &Value) {
        let provider = OidcProvider::new(issuer, jwks, vec![FEDERATED_AUDIENCE.to_string()]);
        self.shared.state().issuers.push(provider);
    }

    /// The kit's own issuer of service account tokens (a stand-in for a
    /// cluster's), trusted from the start: `url() + "/oidc"`.
    pub fn cluster_issuer(&self) -> String {
        format!("{}/oidc", self.url())
    }

    /// A service account token from [`Azure::cluster_issuer`] for
    /// `system:serviceaccount:NAMESPACE:NAME` with audience
    /// `api://AzureADTokenExchange`, valid for `lifetime` (what the AKS
    /// workload identity webhook projects into the pod).
    pub fn service_account_token(&self, namespace: &str, name: &str, lifetime: Duration) -> String {
        let now = now_secs();
        self.sign_service_account_token(&json!({
            "aud": [FEDERATED_AUDIENCE],
            "iss": self.cluster_issuer(),
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime.as_secs(),
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": guid()}},
        }))
    }

    /// Signs arbitrary claims as [`Azure::cluster_issuer`] would.
    pub fn sign_service_account_token(&self, claims: &Value) -> String {
        jwt::sign(&self.shared.key, Some(&format!("{}-cluster", self.shared.key_id)), claims)
    }

    /// A user-assigned managed identity attached to the VM: its client id.
    pub fn assign_user_identity(&self) -> String {
        let id = guid();
        self.shared.state().vm_identities.push(id.clone());
        id
    }

    /// Enables the VM's system-assigned managed identity: its client id.
    pub fn enable_system_identity(&self) -> String {
        let id = guid();
        let mut st = self.shared.state();
        st.system_identity = Some(id.clone());
        st.vm_identities.push(id.clone());
        id
    }

    /// Grants `client_id` the AcrPull role on the registry.
    pub fn allow_pull(&self, client_id: &str) {
        self.shared.state().pullers.push(client_id.to_string());
    }

    /// Lifetime of the Azure AD access tokens the token endpoint issues
    /// (Entra ID: 60 to 90 minutes).
    pub fn set_token_lifetime(&self, d: Duration) {
        self.shared.state().token_lifetime = d;
    }

    /// Lifetime of the ACR refresh tokens (ACR: 3 hours).
    pub fn set_refresh_token_lifetime(&self, d: Duration) {
        self.shared.state().refresh_token_lifetime = d;
    }

    /// An ACR refresh token, signed by the kit, with an arbitrary `exp`
    /// claim (or none): for an injected `/oauth2/exchange` answer.
    pub fn refresh_token_with_exp(&self, exp: Option<Value>) -> String {
        let mut claims = json!({
            "jti": guid(),
            "sub": "injected",
            "iat": now_secs(),
            "iss": "Azure Container Registry",
            "aud": self.shared.login_server,
            "version": "1.0",
            "grant_type": "refresh_token",
            "tenant": self.shared.tenant_id,
        });
        if let Some(exp) = exp {
            claims["exp"] = exp;
        }
        self.shared.sign(&claims)
    }

    /// Every token issued, oldest first.
    pub fn issued_tokens(&self) -> Vec<AzureToken> {
        self.shared.state().issued.clone()
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorder.all()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.recorder.clear()
    }

    /// The fault injector of this emulator.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }
}

/// Routes by path to the emulated service.
async fn dispatch(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path();
    if path == imds::PATH {
        imds::token(&shared, &method, &uri, &headers)
    } else if path == "/oauth2/exchange" {
        acr::exchange(&shared, &method, &headers, &body)
    } else if path == "/oauth2/token" {
        acr::token(&shared, &method, &uri, &headers, &body)
    } else if path == "/v2/" || path == "/v2" {
        acr::challenge(&shared, None)
    } else if let Some(tenant) = path.strip_suffix("/oauth2/v2.0/token").and_then(|t| t.strip_prefix('/')) {
        aad::token(&shared, tenant, &method, &headers, &body)
    } else {
        json_body(StatusCode::NOT_FOUND, &json!({"error": "not_found", "error_description": "Not Found"}))
    }
}

/// The body an injected `Fault::Status` gets when the test gave none: the
/// error shape of the service behind `path`.
fn fault_response(code: StatusCode, path: &str) -> Response {
    let c = code.as_u16();
    if path == imds::PATH {
        let (error, desc) = match c {
            429 => ("too_many_requests", "Too many requests"),
            500..=599 => ("unknown_error", "Internal server error"),
            _ => ("invalid_request", "Bad request"),
        };
        json_body(code, &json!({"error": error, "error_description": desc}))
    } else if path.starts_with("/oauth2/") || path.starts_with("/v2") {
        let (error, message) = match c {
            401 => ("UNAUTHORIZED", "authentication required"),
            429 => ("TOOMANYREQUESTS", "too many requests"),
            500..=599 => ("UNAVAILABLE", "service unavailable"),
            _ => ("UNKNOWN", code.canonical_reason().unwrap_or("error")),
        };
        acr::errors(code, error, message)
    } else {
        let (error, number, desc) = match c {
            429 => ("temporarily_unavailable", 90_033, "A transient error has occurred. Please try again."),
            500..=599 => ("temporarily_unavailable", 90_033, "A transient error has occurred. Please try again."),
            401 => ("invalid_client", 7_000_215, "Invalid client secret provided."),
            _ => ("invalid_request", 90_014, "The request body must contain the following parameter: 'grant_type'."),
        };
        aad::error(c, error, number, desc)
    }
}
