//! Registry fronts: a cloud registry's host name, over TLS, in front of a
//! plain Docker registry.
//!
//! A real node (kubelet and containerd) pulls `ACCOUNT.dkr.ecr.REGION.amazonaws.com/...`
//! and `NAME.azurecr.io/...` with the credentials regcred wrote. No
//! unauthenticated registry checks those credentials, and Docker's
//! distribution registry knows neither ECR's Basic scheme nor ACR's tokens.
//! So the kit puts a front on each name: it terminates TLS with the
//! certificate the test gives (from a CA only the node's containerd trusts),
//! lets the cloud's own rules decide each request (a [`Gate`]: `aws::front`
//! for ECR, `azure::front` for ACR), and forwards what they admit to the
//! registry that holds the images ([`Backend`], e.g. distribution's
//! `docker-registry` on `http://127.0.0.1:5443`), streaming the answer back
//! unchanged. The front adds no rule of its own and relaxes none: every
//! refusal is the gate's, in the cloud's words.
//!
//! The front is served by the kit's accept loop ([`crate::server`]), so its
//! requests are recorded, logged (never their headers) and open to
//! [`Faults`] like any emulator's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderName, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::faults::Faults;
use crate::kube::RecordedRequest;
use crate::server::{self, ErrorResponder, Peer, Recorder, Server};

/// Why a front could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("{}: no PEM certificate in the file", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} with {}: {source}", cert.display(), key.display())]
    Tls { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// The registry the front forwards to: `http://HOST:PORT`, plain HTTP and
/// unauthenticated (the front has already checked the cloud's credential).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    authority: Authority,
}

/// Why a backend URL was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}: expected http://HOST:PORT (a plain HTTP registry, no path)")]
pub struct BadBackend(String);

impl FromStr for Backend {
    type Err = BadBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadBackend(s.to_string());
        let rest = s.strip_prefix("http://").ok_or_else(bad)?;
        let authority: Authority = rest.strip_suffix('/').unwrap_or(rest).parse().map_err(|_| bad())?;
        // Credentials in the URL would be sent to the backend, which takes none.
        if authority.as_str().contains('@') || authority.as_str().is_empty() {
            return Err(bad());
        }
        Ok(Backend { authority })
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

/// The front's TLS server configuration: a certificate chain and its key.
#[derive(Clone)]
pub struct TlsIdentity {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity(<key redacted>)")
    }
}

impl TlsIdentity {
    /// Reads a PEM certificate chain (leaf first) and its PEM private key
    /// (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE
    /// KEY`), as `openssl req`/`openssl x509` write them.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<TlsIdentity, FrontError> {
        fn read(path: &Path) -> impl Fn(rustls_pki_types::pem::Error) -> FrontError + '_ {
            move |source| FrontError::Read { path: path.to_path_buf(), source }
        }
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert).map_err(read(cert))?.collect::<Result<_, _>>().map_err(read(cert))?;
        if chain.is_empty() {
            return Err(FrontError::NoCertificate { path: cert.to_path_buf() });
        }
        let private = PrivateKeyDer::from_pem_file(key).map_err(read(key))?;
        // The provider is named rather than taken from the process default,
        // which is unset (or ambiguous) when several providers are linked in.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = |source| FrontError::Tls { cert: cert.to_path_buf(), key: key.to_path_buf(), source };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(tls)?;
        // The accept loop speaks HTTP/1.1 only; say so, so that a client
        // offering h2 (containerd's Go client does) does not pick it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsIdentity { config: Arc::new(config) })
    }
}

/// Where and how a front serves.
#[derive(Clone, Debug)]
pub struct FrontConfig {
    /// The address the registry's name resolves to on the node, e.g. `127.0.0.2:443`.
    pub listen: SocketAddr,
    pub tls: TlsIdentity,
    pub backend: Backend,
}

/// What a cloud's registry does with a request.
pub(crate) enum Verdict {
    /// The credential allows it: the backend answers.
    Forward,
    /// The registry answers itself: a refusal, or one of its own endpoints
    /// (ACR's token server).
    Answer(Response),
}

/// A cloud registry's authentication and authorization rules.
pub(crate) trait Gate: Send + Sync + 'static {
    fn admit(&self, req: &Request<Bytes>) -> Verdict;
}

/// What a registry API path names, the way distribution routes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegistryPath<'a> {
    /// `/v2/`: the version check.
    Base,
    /// A repository's manifests, blobs, blob uploads or tag list.
    Repository { name: &'a str, kind: Resource },
    /// Anything else under `/v2/` (`_catalog`).
    Other,
}

/// The kind of object a repository path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    Manifest,
    Blob,
    Upload,
    Tags,
}

impl<'a> RegistryPath<'a> {
    /// Parses a request path; `None` outside `/v2`. The repository name is
    /// everything between `/v2/` and the last `/manifests/`, `/blobs/` or
    /// `/tags/list` (a name may itself contain `manifests`).
    pub(crate) fn parse(path: &'a str) -> Option<RegistryPath<'a>> {
        let rest = path.strip_prefix("/v2")?;
        if rest.is_empty() || rest == "/" {
            return Some(RegistryPath::Base);
        }
        let rest = rest.strip_prefix('/')?;
        let repository = |name: &'a str, kind| {
            Some(if name.is_empty() { RegistryPath::Other } else { RegistryPath::Repository { name, kind } })
        };
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return repository(name, Resource::Tags);
        }
        if let Some((name, _)) = rest.rsplit_once("/blobs/uploads") {
            return repository(name, Resource::Upload);
        }
        if let Some((name, _)) = rest.rsplit_once("/blobs/") {
            return repository(name, Resource::Blob);
        }
        if let Some((name, _)) = rest.rsplit_once("/manifests/") {
            return repository(name, Resource::Manifest);
        }
        Some(RegistryPath::Other)
    }
}

/// A running registry front. Dropping it stops the server and every open
/// connection.
pub struct RegistryFront {
    host: String,
    backend: Backend,
    faults: Faults,
    recorder: Arc<Recorder>,
    server: Server,
}

impl RegistryFront {
    /// The registry's host name, as image references and Docker credentials
    /// name it (`ACCOUNT.dkr.ecr.REGION.amazonaws.com`, `NAME.azurecr.io`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The address the front listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The registry the front forwards to.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorder.all()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.recorder.clear()
    }

    /// The fault injector of this front.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }
}

#[derive(Clone)]
struct FrontState {
    gate: Arc<dyn Gate>,
    backend: Backend,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Starts a front for `host` whose requests `gate` decides; `name` is its
/// name in log lines.
pub(crate) async fn start(
    name: &'static str,
    host: String,
    config: FrontConfig,
    gate: Arc<dyn Gate>,
) -> Result<RegistryFront, FrontError> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| FrontError::Listen { addr: config.listen, source })?;
    let state = FrontState {
        gate,
        backend: config.backend.clone(),
        client: Client::builder(TokioExecutor::new()).build_http(),
    };
    let router = Router::new().fallback(handle).with_state(state);
    let faults = Faults::default();
    let recorder = Arc::new(Recorder::default());
    let error: ErrorResponder = Arc::new(fault_response);
    let peer = Peer { name, faults: faults.clone(), recorder: recorder.clone(), error };
    let acceptor = tokio_rustls::TlsAcceptor::from(config.tls.config.clone());
    let server = server::serve_tls_on(listener, acceptor, router, peer);
    Ok(RegistryFront { host, backend: config.backend, faults, recorder, server })
}

async fn handle(State(state): State<FrontState>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    // The accept loop has read the whole body already; this only re-buffers it.
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return registry_error(StatusCode::BAD_REQUEST, "UNKNOWN", "the request body could not be read");
    };
    let req = Request::from_parts(parts, body);
    match state.gate.admit(&req) {
        Verdict::Answer(response) => response,
        Verdict::Forward => forward(&state, req).await,
    }
}

/// Headers that belong to one connection, not to the message (RFC 9110,
/// section 7.6.1): neither passed on to the backend nor back to the client.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

async fn forward(state: &FrontState, req: Request<Bytes>) -> Response {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = format!("{}{path}", state.backend);
    parts.uri = match uri.parse() {
        Ok(u) => u,
        Err(_) => return registry_error(StatusCode::BAD_REQUEST, "UNKNOWN", "invalid request target"),
    };
    parts.version = http::Version::HTTP_11;
    // The client's credential is the cloud's and has been checked; the
    // backend takes none, and must not see one.
    parts.headers.remove(http::header::AUTHORIZATION);
    strip_hop_by_hop(&mut parts.headers);
    // The Host header stays the registry's name, and the scheme is said, so
    // that any URL the backend builds (a `Location`) points at the front.
    parts.headers.insert(HeaderName::from_static("x-forwarded-proto"), http::HeaderValue::from_static("https"));
    match state.client.request(Request::from_parts(parts, Full::new(body))).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            // Streamed: a layer goes through without being held in memory.
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            tracing::warn!(target: "regcred_testkit", "registry backend {} unreachable: {e}", state.backend);
            registry_error(StatusCode::BAD_GATEWAY, "UNAVAILABLE", "the kit's backend registry is unreachable")
        }
    }
}

/// The Docker registry's error document (distribution's `errcode`), which
/// ECR and ACR both answer on `/v2/` paths.
pub(crate) fn registry_error(status: StatusCode, code: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header("docker-distribution-api-version", "registry/2.0")
        .body(Body::from(json!({"errors": [{"code": code, "message": message}]}).to_string()))
        .expect("valid response")
}

/// The body an injected `Fault::Status` gets when the test gave none: the
/// registry error code for that status.
fn fault_response(status: StatusCode, _path: &str) -> Response {
    let code = match status.as_u16() {
        401 => "UNAUTHORIZED",
        403 => "DENIED",
        404 => "NOT_FOUND",
        429 => "TOOMANYREQUESTS",
        500..=599 => "UNAVAILABLE",
        _ => "UNKNOWN",
    };
    registry_error(status, code, status.canonical_reason().unwrap_or("error"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{Backend, FrontError, TlsIdentity};

    fn data(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
    }

    #[test]
    fn tls_identities_load_pkcs8_and_rsa_keys_and_name_what_is_wrong() {
        TlsIdentity::from_pem_files(&data("front.crt"), &data("front.key")).expect("PKCS#8 key");
        TlsIdentity::from_pem_files(&data("front.crt"), &data("front-rsa.key")).expect("PKCS#1 RSA key");
        let missing = TlsIdentity::from_pem_files(&data("missing.crt"), &data("front.key")).unwrap_err();
        assert!(matches!(&missing, FrontError::Read { path, .. } if path.ends_with("missing.crt")), "{missing}");
        // A key where the certificate should be holds no certificate.
        let swapped = TlsIdentity::from_pem_files(&data("front.key"), &data("front.key")).unwrap_err();
        assert!(matches!(swapped, FrontError::NoCertificate { .. }), "{swapped}");
        // The CA's certificate with the leaf's key: a pair that does not match.
        let mismatched = TlsIdentity::from_pem_files(&data("front-ca.crt"), &data("front.key")).unwrap_err();
        assert!(matches!(mismatched, FrontError::Tls { .. }), "{mismatched}");
    }

    #[test]
    fn registry_paths_name_the_repository_and_what_in_it() {
        use super::{RegistryPath as P, Resource as R};
        let repo = |name, kind| Some(P::Repository { name, kind });
        assert_eq!(P::parse("/v2/"), Some(P::Base));
        assert_eq!(P::parse("/v2"), Some(P::Base));
        assert_eq!(P::parse("/v2/team/app/manifests/1"), repo("team/app", R::Manifest));
        assert_eq!(P::parse("/v2/app/manifests/sha256:ab"), repo("app", R::Manifest));
        assert_eq!(P::parse("/v2/app/blobs/sha256:ab"), repo("app", R::Blob));
        assert_eq!(P::parse("/v2/app/blobs/uploads/"), repo("app", R::Upload));
        assert_eq!(P::parse("/v2/app/blobs/uploads/1234"), repo("app", R::Upload));
        assert_eq!(P::parse("/v2/app/tags/list"), repo("app", R::Tags));
        assert_eq!(P::parse("/v2/manifests/manifests/1"), repo("manifests", R::Manifest));
        assert_eq!(P::parse("/v2/_catalog"), Some(P::Other));
        assert_eq!(P::parse("/v2//manifests/1"), Some(P::Other));
        assert_eq!(P::parse("/v1/"), None);
        assert_eq!(P::parse("/v2x/"), None);
        assert_eq!(P::parse("/oauth2/token"), None);
    }

    #[test]
    fn backends_are_plain_http_host_and_port() {
        let b: Backend = "http://127.0.0.1:5443".parse().expect("backend");
        assert_eq!(b.to_string(), "http://127.0.0.1:5443");
        assert_eq!("http://127.0.0.1:5443/".parse::<Backend>().expect("trailing slash").to_string(), b.to_string());
        for bad in
            ["https://127.0.0.1:5443", "127.0.0.1:5443", "http://127.0.0.1:5443/v2/", "http://u:p@host:1", "http://"]
        {
            assert!(bad.parse::<Backend>().is_err(), "{bad} was accepted");
        }
    }
}
