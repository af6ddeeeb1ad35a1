//! The registry fronts over real TLS: a client that trusts only the test CA
//! (`tests/data/`) pulls a manifest from a small fake backend registry
//! through ECR's and ACR's rules, and is refused as those registries refuse.
//! Every test also checks what reached the backend: nothing, when refused.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use common::Resp;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use regcred_testkit::aws::front::EcrRegistry;
use regcred_testkit::{Aws, Azure, FrontConfig, RegistryFront, TlsIdentity};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};

const REGION: &str = "us-east-1";
const MANIFEST_PATH: &str = "/v2/team/app/manifests/1";
const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
const DIGEST: &str = "sha256:2b3c0c7f3b6b8a3f8c4a7b1f9e0d5c6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// A plain registry standing for distribution: `/v2/` and one manifest,
/// with the headers a registry sends; it keeps the headers of every request
/// it gets.
struct Backend {
    url: String,
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Backend {
    async fn start() -> Backend {
        let seen: Arc<Mutex<Vec<(String, HeaderMap)>>> = Arc::default();
        let record = seen.clone();
        let router = axum::Router::new().fallback(move |req: Request<Body>| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((req.uri().path().to_string(), req.headers().clone()));
                let base = Response::builder().header("docker-distribution-api-version", "registry/2.0");
                match (req.method().clone(), req.uri().path()) {
                    (Method::GET, "/v2/") => base.header("content-type", "application/json").body(Body::from("{}")),
                    (m @ (Method::GET | Method::HEAD), MANIFEST_PATH) => {
                        let base = base
                            .header("content-type", MANIFEST_TYPE)
                            .header("content-length", MANIFEST.len())
                            .header("docker-content-digest", DIGEST);
                        base.body(if m == Method::GET { Body::from(MANIFEST) } else { Body::empty() })
                    }
                    _ => base.status(404).body(Body::from(r#"{"errors":[{"code":"NOT_FOUND"}]}"#)),
                }
                .unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Backend { url, seen, _task: task }
    }

    fn requests(&self) -> Vec<(String, HeaderMap)> {
        self.seen.lock().unwrap().clone()
    }
}

fn front_config(backend: &Backend) -> FrontConfig {
    FrontConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: TlsIdentity::from_pem_files(&data("front.crt"), &data("front.key")).expect("test certificate"),
        backend: backend.url.parse().unwrap(),
    }
}

/// One request over TLS to `addr` for `host` (SNI and certificate name),
/// trusting only the test CA.
async fn request(addr: SocketAddr, host: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    request_with_body(addr, host, method, path, headers, "").await
}

async fn request_with_body(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(data("front-ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(host.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender.send_request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

async fn get(front: &RegistryFront, path: &str, authorization: Option<&str>) -> Resp {
    let headers: Vec<(&str, &str)> = authorization.map(|a| ("authorization", a)).into_iter().collect();
    request(front.addr(), front.host(), "GET", path, &headers).await
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", common::b64(&format!("{user}:{password}")))
}

/// A registry error document: its codes and messages.
fn errors(r: &Resp) -> Vec<(String, String)> {
    r.json()["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {}", r.body))
        .iter()
        .map(|e| (e["code"].as_str().unwrap().to_string(), e["message"].as_str().unwrap().to_string()))
        .collect()
}

async fn ecr_front(aws: &Aws, backend: &Backend) -> RegistryFront {
    aws.start_registry_front(aws.ecr_registry(REGION), front_config(backend)).await.expect("ECR front")
}

#[tokio::test]
async fn ecr_front_challenges_a_request_without_credentials_with_basic() {
    let (aws, backend) = (Aws::start().await, Backend::start().await);
    let front = ecr_front(&aws, &backend).await;
    assert_eq!(front.host(), "111122223333.dkr.ecr.us-east-1.amazonaws.com");
    for path in ["/v2/", MANIFEST_PATH] {
        let r = get(&front, path, None).await;
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"https://111122223333.dkr.ecr.us-east-1.amazonaws.com/\",service=\"ecr.amazonaws.com\"")
        );
        assert_eq!(r.body.trim(), "Not Authorized");
    }
    // A bearer token is no ECR credential either.
    let r = get(&front, MANIFEST_PATH, Some("Bearer abc")).await;
    assert_eq!(r.status, 401);
    assert!(backend.requests().is_empty(), "an unauthenticated request reached the backend");
}

#[tokio::test]
async fn ecr_front_forwards_a_pull_with_a_current_token() {
    let (aws, backend) = (Aws::start().await, Backend::start().await);
    let front = ecr_front(&aws, &backend).await;
    let token = aws.issue_ecr_token(REGION);
    // The authorizationToken is the whole Basic credential, as ECR's docs use it.
    let authorization = format!("Basic {}", token.authorization_token());
    assert_eq!(authorization, basic("AWS", &token.password));

    let ping = get(&front, "/v2/", Some(&authorization)).await;
    assert_eq!((ping.status, ping.body.as_str()), (200, "{}"));
    let r = get(&front, MANIFEST_PATH, Some(&authorization)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, MANIFEST);
    assert_eq!(r.header("docker-content-digest"), Some(DIGEST));
    assert_eq!(r.header("content-type"), Some(MANIFEST_TYPE));
    let head = request(front.addr(), front.host(), "HEAD", MANIFEST_PATH, &[("authorization", &authorization)]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(MANIFEST.len().to_string().as_str()));
    assert_eq!(head.header("docker-content-digest"), Some(DIGEST));

    let seen = backend.requests();
    assert_eq!(seen.len(), 3);
    for (path, headers) in &seen {
        assert!(headers.get("authorization").is_none(), "{path}: the backend was sent the ECR token");
        assert_eq!(headers.get("host").unwrap(), front.host());
        assert_eq!(headers.get("x-forwarded-proto").unwrap(), "https");
    }
    assert_eq!(front.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [200, 200, 200]);
}

#[tokio::test]
async fn ecr_front_refuses_an_expired_token_as_ecr_does() {
    let (aws, backend) = (Aws::start().await, Backend::start().await);
    let front = ecr_front(&aws, &backend).await;
    aws.set_ecr_token_lifetime(std::time::Duration::ZERO);
    let token = aws.issue_ecr_token(REGION);
    let r = get(&front, MANIFEST_PATH, Some(&basic("AWS", &token.password))).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        errors(&r),
        [("DENIED".into(), "Your authorization token has expired. Reauthenticate and try again.".into())]
    );
    assert!(backend.requests().is_empty());
}

#[tokio::test]
async fn ecr_front_refuses_tokens_it_cannot_read_and_other_users() {
    let (aws, backend) = (Aws::start().await, Backend::start().await);
    let front = ecr_front(&aws, &backend).await;
    let elsewhere = aws.issue_ecr_token("us-west-2");
    let r = get(&front, MANIFEST_PATH, Some(&basic("AWS", &elsewhere.password))).await;
    assert_eq!(r.status, 400, "a token of another region: {}", r.body);
    let r = get(&front, "/v2/", Some(&basic("AWS", "eyJwYXlsb2FkIjoinot-a-token"))).await;
    assert_eq!(r.status, 400, "a password ECR did not issue: {}", r.body);
    let current = aws.issue_ecr_token(REGION);
    let r = get(&front, MANIFEST_PATH, Some(&basic("oauth2accesstoken", &current.password))).await;
    assert_eq!(r.status, 401, "another user name: {}", r.body);
    assert!(r.header("www-authenticate").is_some_and(|c| c.starts_with("Basic ")));
    assert!(backend.requests().is_empty());
}

#[tokio::test]
async fn ecr_front_denies_a_principal_of_another_account_and_pushes() {
    let (aws, backend) = (Aws::start().await, Backend::start().await);
    let other = EcrRegistry { account: "444455556666".into(), region: REGION.into() };
    let theirs = aws.start_registry_front(other, front_config(&backend)).await.unwrap();
    let token = aws.issue_ecr_token(REGION);
    let authorization = basic("AWS", &token.password);
    let r = get(&theirs, MANIFEST_PATH, Some(&authorization)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        errors(&r),
        [(
            "DENIED".into(),
            "User: arn:aws:iam::111122223333:user/regcred is not authorized to perform: ecr:BatchGetImage on \
             resource: arn:aws:ecr:us-east-1:444455556666:repository/team/app because no resource-based policy \
             allows the ecr:BatchGetImage action"
                .into()
        )]
    );

    let ours = ecr_front(&aws, &backend).await;
    let push =
        request(ours.addr(), ours.host(), "POST", "/v2/team/app/blobs/uploads/", &[("authorization", &authorization)])
            .await;
    assert_eq!(push.status, 403, "{}", push.body);
    let (code, message) = errors(&push).remove(0);
    assert_eq!(code, "DENIED");
    assert!(
        message.ends_with("because no identity-based policy allows the ecr:InitiateLayerUpload action"),
        "{message}"
    );
    assert!(backend.requests().is_empty());
}

async fn acr_front(backend: &Backend) -> (Azure, RegistryFront) {
    let azure = Azure::start().await;
    let front = azure.start_registry_front(front_config(backend)).await.expect("ACR front");
    (azure, front)
}

/// The Entra ID token `/oauth2/exchange` takes, of a new app with a client
/// secret, which holds AcrPull on the registry if `may_pull`.
async fn aad_token(azure: &Azure, may_pull: bool) -> String {
    let app = azure.create_app();
    let secret = azure.add_client_secret(&app);
    if may_pull {
        azure.allow_pull(&app);
    }
    let form = serde_urlencoded::to_string([
        ("grant_type", "client_credentials"),
        ("client_id", app.as_str()),
        ("client_secret", secret.as_str()),
        ("scope", "https://containerregistry.azure.net/.default"),
    ])
    .unwrap();
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let r = common::send("POST", &azure.token_uri(), &headers, Some(&form)).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

async fn post_form(front: &RegistryFront, path: &str, form: &[(&str, &str)]) -> Resp {
    let body = serde_urlencoded::to_string(form).unwrap();
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    request_with_body(front.addr(), front.host(), "POST", path, &headers, &body).await
}

/// An ACR refresh token from the front's `/oauth2/exchange`.
async fn refresh_token(azure: &Azure, front: &RegistryFront, aad_token: &str) -> String {
    let r = post_form(
        front,
        "/oauth2/exchange",
        &[
            ("grant_type", "access_token"),
            ("service", front.host()),
            ("tenant", &azure.tenant_id()),
            ("access_token", aad_token),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["refresh_token"].as_str().unwrap().to_string()
}

/// An ACR access token for `scope` from the front's `/oauth2/token`.
async fn access_token(front: &RegistryFront, refresh: &str, scope: &str) -> String {
    let r = post_form(
        front,
        "/oauth2/token",
        &[("grant_type", "refresh_token"), ("service", front.host()), ("scope", scope), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn acr_front_challenges_for_a_bearer_token_naming_the_scope() {
    let backend = Backend::start().await;
    let (_azure, front) = acr_front(&backend).await;
    let host = front.host().to_string();
    assert!(host.ends_with(".azurecr.io"), "{host}");

    let ping = get(&front, "/v2/", None).await;
    assert_eq!(ping.status, 401, "{}", ping.body);
    let challenge = format!("Bearer realm=\"https://{host}/oauth2/token\",service=\"{host}\"");
    assert_eq!(ping.header("www-authenticate"), Some(challenge.as_str()));

    let r = get(&front, MANIFEST_PATH, None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let scoped = format!("{challenge},scope=\"repository:team/app:pull\"");
    assert_eq!(r.header("www-authenticate"), Some(scoped.as_str()));
    let error = &r.json()["errors"][0];
    assert_eq!(error["code"], "UNAUTHORIZED");
    assert_eq!(error["detail"], serde_json::json!([{"Type": "repository", "Name": "team/app", "Action": "pull"}]));
    // ECR's credential is no ACR credential.
    let r = get(&front, MANIFEST_PATH, Some(&basic("AWS", "eyJwYXlsb2FkIjoi"))).await;
    assert_eq!(r.header("www-authenticate"), Some(scoped.as_str()));
    assert!(backend.requests().is_empty(), "an unauthenticated request reached the backend");
}

#[tokio::test]
async fn acr_front_pulls_with_an_access_token_from_its_own_token_server() {
    let backend = Backend::start().await;
    let (azure, front) = acr_front(&backend).await;
    let refresh = refresh_token(&azure, &front, &aad_token(&azure, true).await).await;
    let access = access_token(&front, &refresh, "repository:team/app:pull").await;
    let authorization = format!("Bearer {access}");

    let r = get(&front, MANIFEST_PATH, Some(&authorization)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, MANIFEST);
    assert_eq!(r.header("docker-content-digest"), Some(DIGEST));
    let head = request(front.addr(), front.host(), "HEAD", MANIFEST_PATH, &[("authorization", &authorization)]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some(MANIFEST.len().to_string().as_str()));
    let ping = get(&front, "/v2/", Some(&authorization)).await;
    assert_eq!(ping.status, 200, "{}", ping.body);

    // The way containerd asks, once its POST with the password grant is
    // refused: GET with the refresh token as Basic password.
    let query = format!("/oauth2/token?service={}&scope=repository%3Ateam%2Fapp%3Apull", front.host());
    let r = get(&front, &query, Some(&basic("00000000-0000-0000-0000-000000000000", &refresh))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let again = format!("Bearer {}", r.json()["access_token"].as_str().unwrap());
    assert_eq!(get(&front, MANIFEST_PATH, Some(&again)).await.status, 200);

    let seen = backend.requests();
    assert_eq!(seen.len(), 4, "{seen:?}");
    for (path, headers) in &seen {
        assert!(headers.get("authorization").is_none(), "{path}: the backend was sent the ACR token");
    }
    // The front's tokens are the emulator's: recorded like any other.
    assert_eq!(azure.issued_tokens().iter().filter(|t| t.kind == "acr_access").count(), 2);
}

#[tokio::test]
async fn acr_front_refuses_a_token_that_does_not_grant_pull_on_the_repository() {
    let backend = Backend::start().await;
    let (azure, front) = acr_front(&backend).await;
    let refresh = refresh_token(&azure, &front, &aad_token(&azure, true).await).await;
    let host = front.host().to_string();
    let scoped =
        format!("Bearer realm=\"https://{host}/oauth2/token\",service=\"{host}\",scope=\"repository:team/app:pull\"");

    let other = access_token(&front, &refresh, "repository:team/other:pull").await;
    let r = get(&front, MANIFEST_PATH, Some(&format!("Bearer {other}"))).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.header("www-authenticate"), Some(scoped.as_str()));
    assert_eq!(
        errors(&r),
        [
            ("DENIED".into(), "requested access to the resource is denied".into()),
            (
                "UNAUTHORIZED".into(),
                "authentication required, visit https://aka.ms/acr/authorization for more information.".into()
            ),
        ]
    );

    // A refresh token is not an access token: no token at all, to the registry.
    let r = get(&front, MANIFEST_PATH, Some(&format!("Bearer {refresh}"))).await;
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some(scoped.as_str())));
    assert_eq!(errors(&r)[0].0, "UNAUTHORIZED", "{}", r.body);
    assert_eq!(get(&front, "/v2/", Some(&format!("Bearer {refresh}"))).await.status, 401);

    // The kit grants pull only: a push is sent back for push.
    let pull = format!("Bearer {}", access_token(&front, &refresh, "repository:team/app:pull,push").await);
    let push =
        request(front.addr(), front.host(), "POST", "/v2/team/app/blobs/uploads/", &[("authorization", &pull)]).await;
    assert_eq!(push.status, 401, "{}", push.body);
    assert!(push.header("www-authenticate").unwrap().ends_with(",scope=\"repository:team/app:pull,push\""));

    // An identity without AcrPull gets a token that grants nothing.
    let refresh = refresh_token(&azure, &front, &aad_token(&azure, false).await).await;
    let nothing = access_token(&front, &refresh, "repository:team/app:pull").await;
    let r = get(&front, MANIFEST_PATH, Some(&format!("Bearer {nothing}"))).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(errors(&r)[0].0, "DENIED");
    assert!(backend.requests().is_empty(), "a refused request reached the backend");
}
