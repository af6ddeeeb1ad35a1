//! Emulators of Google's credential endpoints, all served by one HTTP server:
//!
//! * `POST /token`: the OAuth 2.0 token endpoint (`oauth2.googleapis.com/token`)
//!   with the JWT-bearer grant (service-account keys, RFC 7523) and the
//!   refresh-token grant (`authorized_user` ADC files) — [`oauth`];
//! * `/computeMetadata/v1/...`: the GCE / GKE metadata server — [`metadata`];
//! * `POST /v1/token`: the Security Token Service (workload identity
//!   federation, RFC 8693) — [`sts`];
//! * `POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken`: IAM
//!   Service Account Credentials (impersonation) — [`iam`];
//! * `GET /v2/token`: the registry token endpoint of Container Registry and
//!   Artifact Registry, which turns a Docker credential into a registry token
//!   for Docker's distribution registry — [`registry`].
//!
//! The kit owns one service account with a freshly generated RSA-2048 key; it
//! accepts exactly what Google would accept for that account and answers
//! errors with Google's JSON shapes. Every token it hands out is random, unique
//! and recorded as an [`IssuedToken`].

mod iam;
pub(crate) mod jwt;
mod metadata;
mod oauth;
mod registry;
pub(crate) mod sts;

/// The OIDC checks STS makes, shared with the Azure AD emulator, which
/// verifies federated tokens the same way.
pub(crate) use sts::OidcProvider;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use http::StatusCode;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::{PrivateKey, PublicKey};
use serde_json::{json, Value};

use crate::faults::Faults;
use crate::kube::RecordedRequest;
use crate::server::{self, Peer, Recorder, Server};

/// One access token the kit issued.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_at: SystemTime,
    /// `"jwt-bearer"`, `"refresh-token"`, `"metadata"`, `"sts"` or `"impersonation"`.
    pub grant: String,
    /// Who the token is for: the service account email, the user of a refresh
    /// token, or the STS subject.
    pub subject: String,
    /// The scopes granted (space-separated as requested).
    pub scope: String,
}

pub(crate) struct GoogleState {
    lifetime: Duration,
    issued: Vec<IssuedToken>,
    /// Metadata-server token cache, by requested scope set.
    metadata_cache: HashMap<String, IssuedToken>,
    sts_audience: String,
    subject_tokens: HashSet<String>,
    /// The provider's OIDC configuration, when the test gave one.
    oidc: Option<sts::OidcProvider>,
    impersonation_targets: HashSet<String>,
    /// Set by [`Google::sign_registry_tokens`]; `/v2/token` is 404 without it.
    registry_signer: Option<registry::Signer>,
    /// `(repository, identity)`: who may pull from which repository.
    registry_readers: Vec<(String, String)>,
}

/// Everything the handlers need.
pub(crate) struct Shared {
    key: PrivateKey,
    public: PublicKey,
    key_id: String,
    email: String,
    client_id: String,
    project_id: String,
    project_number: String,
    base_url: String,
    oauth_client_id: String,
    oauth_client_secret: String,
    refresh_token: String,
    user_email: String,
    state: Mutex<GoogleState>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, GoogleState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn token_uri(&self) -> String {
        format!("{}/token", self.base_url)
    }

    fn lifetime(&self) -> Duration {
        self.state().lifetime
    }

    /// Mints and records a new access token valid for `lifetime`.
    fn issue(&self, grant: &str, subject: &str, scope: &str, lifetime: Duration) -> IssuedToken {
        let tok = IssuedToken {
            access_token: random_token(if grant == "sts" { "ya29.d." } else { "ya29.c." }),
            expires_at: SystemTime::now() + lifetime,
            grant: grant.to_string(),
            subject: subject.to_string(),
            scope: scope.to_string(),
        };
        self.state().issued.push(tok.clone());
        tok
    }

    /// The service-account key as its key file carries it (PKCS#8 PEM).
    fn key_pem(&self) -> String {
        self.key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 encoding").to_string()
    }

    /// The issued token with this value, if it exists and has not expired.
    fn valid_token(&self, token: &str) -> Option<IssuedToken> {
        let now = SystemTime::now();
        self.state().issued.iter().find(|t| t.access_token == token).filter(|t| t.expires_at > now).cloned()
    }
}

/// `ya29.`-style opaque token: the prefix plus 160 random base64url characters.
fn random_token(prefix: &str) -> String {
    let bytes: [u8; 120] = rand::random_iter().take(120).collect::<Vec<u8>>().try_into().expect("120");
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn random_digits(n: usize) -> String {
    (0..n)
        .map(|i| {
            let d = rand::random_range(if i == 0 { 1 } else { 0 }..10u8);
            (b'0' + d) as char
        })
        .collect()
}

fn random_hex(n: usize) -> String {
    (0..n).map(|_| char::from_digit(rand::random_range(0..16u32), 16).expect("hex")).collect()
}

/// Seconds until `t`, rounded down, never negative (what `expires_in` carries).
fn secs_until(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::now()).map(|d| d.as_secs()).unwrap_or(0)
}

fn json_body(status: StatusCode, v: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header(http::header::CACHE_CONTROL, "no-cache, no-store, max-age=0, must-revalidate")
        .body(Body::from(serde_json::to_vec_pretty(v).expect("json")))
        .expect("valid response")
}

/// The running Google emulator (token endpoint, metadata server, STS, IAM
/// Credentials) on `127.0.0.1:<random port>`. Dropping it stops the server.
pub struct Google {
    shared: Arc<Shared>,
    faults: Faults,
    recorder: Arc<Recorder>,
    server: Server,
}

impl Google {
    /// Starts the emulator with a freshly generated RSA-2048 service-account
    /// key, on `127.0.0.1:<random port>`.
    pub async fn start() -> Google {
        Google::start_with(server::bind().await).await
    }

    /// Starts the emulator on `addr`: where a node's pods expect Google's
    /// metadata server, `169.254.169.254:80`.
    pub async fn start_on(addr: std::net::SocketAddr) -> std::io::Result<Google> {
        Ok(Google::start_with(tokio::net::TcpListener::bind(addr).await?).await)
    }

    async fn start_with(listener: tokio::net::TcpListener) -> Google {
        let key = tokio::task::spawn_blocking(|| PrivateKey::new(&mut rand::rng(), 2048).expect("RSA key generation"))
            .await
            .expect("key generation task");
        let public = key.to_public_key();
        let addr = listener.local_addr().expect("local_addr");
        let project_id = format!("testkit-{}", random_digits(6));
        let user_email = "developer@example.com".to_string();
        let project_number = random_digits(12);
        let shared = Arc::new(Shared {
            key,
            public,
            key_id: random_hex(40),
            email: format!("regcred@{project_id}.iam.gserviceaccount.com"),
            client_id: random_digits(21),
            project_id,
            base_url: format!("http://{addr}"),
            oauth_client_id: format!("{}-{}.apps.googleusercontent.com", random_digits(12), random_hex(32)),
            oauth_client_secret: format!("GOCSPX-{}", random_hex(28)),
            refresh_token: format!("1//{}", random_token("0g")),
            user_email,
            state: Mutex::new(GoogleState {
                lifetime: Duration::from_secs(3600),
                issued: Vec::new(),
                metadata_cache: HashMap::new(),
                sts_audience: format!(
                    "//iam.googleapis.com/projects/{project_number}/locations/global/workloadIdentityPools/testkit-pool/providers/testkit-provider"
                ),
                subject_tokens: HashSet::new(),
                oidc: None,
                impersonation_targets: HashSet::new(),
                registry_signer: None,
                registry_readers: Vec::new(),
            }),
            project_number,
        });
        let faults = Faults::default();
        let recorder = Arc::new(Recorder::default());
        let router = Router::new().fallback(dispatch).with_state(shared.clone());
        let peer = Peer {
            name: "google",
            faults: faults.clone(),
            recorder: recorder.clone(),
            error: Arc::new(fault_response),
        };
        let server = server::serve_on(listener, router, peer);
        Google { shared, faults, recorder, server }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The OAuth token endpoint: `url() + "/token"`. Assertions must use exactly
    /// this as `aud`.
    pub fn token_uri(&self) -> String {
        self.shared.token_uri()
    }

    /// `127.0.0.1:PORT`, the value for `GCE_METADATA_HOST`.
    pub fn metadata_host(&self) -> String {
        self.server.addr.to_string()
    }

    /// The STS endpoint: `url() + "/v1/token"`.
    pub fn sts_uri(&self) -> String {
        format!("{}/v1/token", self.shared.base_url)
    }

    /// The IAM Credentials base URL (`url()`; requests go to
    /// `/v1/projects/-/serviceAccounts/{email}:generateAccessToken`).
    pub fn iam_credentials_uri(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The service account key as Google's console downloads it.
    pub fn key_file_json(&self) -> String {
        let s = &self.shared;
        let pem = s.key_pem();
        let v = json!({
            "type": "service_account",
            "project_id": s.project_id,
            "private_key_id": s.key_id,
            "private_key": pem,
            "client_email": s.email,
            "client_id": s.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": s.token_uri(),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                s.email.replace('@', "%40")
            ),
            "universe_domain": "googleapis.com",
        });
        serde_json::to_string_pretty(&v).expect("json")
    }

    /// Writes [`key_file_json`](Self::key_file_json) to `path`.
    pub fn write_key_file(&self, path: &Path) {
        std::fs::write(path, self.key_file_json()).expect("write key file");
    }

    /// An `authorized_user` ADC file body (what `gcloud auth application-default
    /// login` writes), with a refresh token this kit accepts and `token_uri`
    /// pointing at the kit.
    pub fn authorized_user_json(&self) -> String {
        let s = &self.shared;
        serde_json::to_string_pretty(&json!({
            "type": "authorized_user",
            "client_id": s.oauth_client_id,
            "client_secret": s.oauth_client_secret,
            "refresh_token": s.refresh_token,
            "quota_project_id": s.project_id,
            "token_uri": s.token_uri(),
            "universe_domain": "googleapis.com",
        }))
        .expect("json")
    }

    /// The kit's service account (`client_email` of the key file, the metadata
    /// server's default account).
    pub fn service_account_email(&self) -> String {
        self.shared.email.clone()
    }

    pub fn project_id(&self) -> String {
        self.shared.project_id.clone()
    }

    /// Signs arbitrary claims with the service account key (RS256, with `kid`),
    /// for tests that build their own assertions.
    pub fn sign_jwt(&self, claims: &Value) -> String {
        jwt::sign(&self.shared.key, Some(&self.shared.key_id), claims)
    }

    /// A valid JWT-bearer assertion for `scope`, as a correct client builds it.
    pub fn make_assertion(&self, scope: &str) -> String {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_secs();
        self.sign_jwt(&json!({
            "iss": self.shared.email,
            "scope": scope,
            "aud": self.shared.token_uri(),
            "iat": now,
            "exp": now + 3600,
        }))
    }

    /// Lifetime of newly issued access tokens (default 3600 s, Google's).
    pub fn set_token_lifetime(&self, d: Duration) {
        let mut st = self.shared.state();
        st.lifetime = d;
        st.metadata_cache.clear();
    }

    /// Every token issued so far, in order.
    pub fn issued_tokens(&self) -> Vec<IssuedToken> {
        self.shared.state().issued.clone()
    }

    /// Whether `token` was issued by the kit and has not expired.
    pub fn is_valid_token(&self, token: &str) -> bool {
        self.shared.valid_token(token).is_some()
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorder.all()
    }

    pub fn clear_requests(&self) {
        self.recorder.clear();
    }

    /// The workload identity provider STS accepts as `audience` (a provider
    /// of the kit's project).
    pub fn sts_audience(&self) -> String {
        self.shared.state().sts_audience.clone()
    }

    /// Makes STS accept `token` as a `subject_token` (standing in for the
    /// identity provider's signature and attribute-condition checks).
    pub fn accept_subject_token(&self, token: &str) {
        self.shared.state().subject_tokens.insert(token.to_string());
    }

    /// The public half of the kit's service-account key as a JSON Web Key Set
    /// (`{"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid", "n", "e"}]}`),
    /// the shape Google publishes service-account keys in. Tokens from
    /// [`Google::sign_jwt`] verify with it.
    pub fn jwks(&self) -> Value {
        use rsa::traits::PublicKeyParts as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let trim = |b: Box<[u8]>| b.iter().copied().skip_while(|x| *x == 0).collect::<Vec<u8>>();
        json!({"keys": [{
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.shared.key_id,
            "n": b64(&trim(self.shared.public.n_bytes())),
            "e": b64(&trim(self.shared.public.e_bytes())),
        }]})
    }

    /// Makes the kit's workload identity provider an OIDC provider for
    /// `issuer` with the JSON Web Key Set `jwks` (what a provider created
    /// with `--issuer-uri` and `--jwk-json-path` holds; Google fetches the
    /// same document from the issuer's discovery when no JWKS is uploaded).
    /// STS then accepts a JWT subject token as Google does: RS256 signature
    /// by a key of `jwks`, `iss` equal to `issuer`, `aud` naming one of
    /// `allowed_audiences` (empty: the provider's default audience,
    /// `https:` followed by [`Google::sts_audience`]), not expired.
    pub fn trust_oidc_issuer(&self, issuer: &str, jwks: &Value, allowed_audiences: &[&str]) {
        let mut st = self.shared.state();
        let allowed = if allowed_audiences.is_empty() {
            vec![format!("https:{}", st.sts_audience)]
        } else {
            allowed_audiences.iter().map(|a| a.to_string()).collect()
        };
        st.oidc = Some(sts::OidcProvider::new(issuer, jwks, allowed));
    }

    /// Serves `/v2/token`, signing registry tokens with `key_pem` (PKCS#8 PEM)
    /// and naming `cert_pem`, the certificate of that key that the registry's
    /// `rootcertbundle` holds, in each token's `x5c`; `issuer` is the
    /// registry's `auth.token.issuer`.
    pub fn sign_registry_tokens(&self, key_pem: &str, cert_pem: &str, issuer: &str) -> Result<(), String> {
        use rsa::pkcs8::DecodePrivateKey as _;
        let key = PrivateKey::from_pkcs8_pem(key_pem).map_err(|e| format!("registry signing key: {e}"))?;
        let body: String = cert_pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        let cert_der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("registry signing certificate: not PEM: {e}"))?;
        if cert_der.is_empty() {
            return Err("registry signing certificate: no CERTIFICATE block".into());
        }
        self.shared.state().registry_signer = Some(registry::Signer { key, cert_der, issuer: issuer.to_string() });
        Ok(())
    }

    /// Lets `identity` (a service account email, or an STS subject) pull
    /// every image under `repository` (`PROJECT/REPOSITORY` in Artifact
    /// Registry, `PROJECT` in Container Registry).
    pub fn allow_pull(&self, repository: &str, identity: &str) {
        self.shared.state().registry_readers.push((repository.to_string(), identity.to_string()));
    }

    /// Grants the kit's callers `iam.serviceAccounts.getAccessToken` on
    /// `target_email` (i.e. "Service Account Token Creator" on that account).
    pub fn allow_impersonation(&self, target_email: &str) {
        self.shared.state().impersonation_targets.insert(target_email.to_string());
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
    if path == "/token" {
        oauth::token(&shared, &method, &headers, &body)
    } else if path == "/v1/token" {
        sts::token(&shared, &method, &headers, &body)
    } else if path == "/v2/token" {
        registry::token(&shared, &method, &uri, &headers)
    } else if path.starts_with("/v1/projects/") {
        iam::handle(&shared, &method, path, &headers, &body)
    } else if path == "/" || path.starts_with("/computeMetadata") {
        metadata::handle(&shared, &method, &uri, &headers)
    } else {
        google_api_error(404, "NOT_FOUND", "The requested URL was not found on this server.")
    }
}

/// Google APIs' JSON error (`google.rpc.Status` over HTTP).
pub(crate) fn google_api_error(code: u16, status: &str, message: &str) -> Response {
    google_api_error_details(code, status, message, None)
}

pub(crate) fn google_api_error_details(code: u16, status: &str, message: &str, details: Option<Value>) -> Response {
    let mut err = json!({"code": code, "message": message, "status": status});
    if let Some(d) = details {
        err["details"] = d;
    }
    json_body(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &json!({ "error": err }))
}

/// An OAuth 2.0 error response (RFC 6749 §5.2) as Google's endpoints send it.
pub(crate) fn oauth_error(code: u16, error: &str, description: &str) -> Response {
    json_body(
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        &json!({"error": error, "error_description": description}),
    )
}

/// The body an injected `Fault::Status` gets when the test gave none.
fn fault_response(code: StatusCode, path: &str) -> Response {
    let c = code.as_u16();
    if path == "/token" || path == "/v1/token" {
        let (error, desc) = match c {
            429 => ("rate_limit_exceeded", "Rate Limit Exceeded"),
            500..=599 => ("internal_failure", "Backend Error"),
            401 => ("invalid_client", "Unauthorized"),
            _ => ("invalid_request", "Bad Request"),
        };
        oauth_error(c, error, desc)
    } else if path.starts_with("/computeMetadata") || path == "/" {
        metadata::text(code, &format!("{}\n", code.canonical_reason().unwrap_or("error")))
    } else {
        let status = match c {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ABORTED",
            429 => "RESOURCE_EXHAUSTED",
            501 => "UNIMPLEMENTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "INTERNAL",
        };
        let message = match c {
            503 => "The service is currently unavailable.",
            429 => "Quota exceeded.",
            500 => "Internal error encountered.",
            _ => code.canonical_reason().unwrap_or("error"),
        };
        google_api_error(c, status, message)
    }
}
