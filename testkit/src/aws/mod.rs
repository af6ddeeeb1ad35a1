//! Emulators of the AWS endpoints regcred's ECR support talks to, all
//! served by one HTTP server (each has its own host at AWS; regcred takes
//! each URL as an override):
//!
//! * `POST /` with `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken`
//!   (ECR) or `SpencerFrontendService.GetAuthorizationToken` (ECR Public),
//!   AWS JSON 1.1, **SigV4-verified** against the credentials the kit issued;
//! * `POST /` with a form body: STS `AssumeRoleWithWebIdentity` (the web
//!   identity JWT verified against a trusted issuer's JWKS) and `AssumeRole`
//!   (SigV4-verified), answering XML;
//! * `PUT /latest/api/token`, `GET /latest/meta-data/iam/security-credentials/[ROLE]`:
//!   IMDSv2;
//! * `GET /v1/credentials`: the EKS Pod Identity agent.
//!
//! The registry itself, `ACCOUNT.dkr.ecr.REGION.amazonaws.com`, is a
//! separate TLS front ([`front`], [`Aws::start_registry_front`]) that takes
//! the ECR tokens issued here.
//!
//! Errors use AWS's real shapes: JSON `{"__type", "message"}` with
//! `x-amzn-ErrorType` for ECR, `<ErrorResponse>` XML for STS. Every key and
//! token the kit issues is random and recorded.

pub mod front;
mod sigv4;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use crate::faults::Faults;
use crate::front::{FrontConfig, FrontError, RegistryFront};
use crate::google::sts::OidcProvider;
use crate::kube::RecordedRequest;
use crate::server::{self, Peer, Recorder, Server};

const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
const ECR_PUBLIC_TARGET: &str = "SpencerFrontendService.GetAuthorizationToken";
/// The account every identity of the kit belongs to (AWS's documentation
/// example account).
pub const ACCOUNT_ID: &str = "111122223333";
const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// One set of credentials the kit issued (or its IAM user's static key).
#[derive(Clone, Debug)]
pub struct IssuedKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub expires_at: Option<SystemTime>,
    /// `"static"`, `"web-identity"`, `"assume-role"`, `"imds"` or `"pod-identity"`.
    pub source: String,
    /// The user or role the key acts as.
    pub principal: String,
}

/// One ECR authorization token the kit issued.
#[derive(Clone, Debug)]
pub struct IssuedEcrToken {
    /// The password of `AWS:PASSWORD`.
    pub password: String,
    pub expires_at: SystemTime,
    /// `"ecr"` or `"ecr-public"`.
    pub service: String,
    /// The region the request was signed for.
    pub region: String,
    /// The key that signed the request, and the principal it acts as.
    pub access_key_id: String,
    pub principal: String,
}

impl IssuedEcrToken {
    /// `authorizationData.authorizationToken` as GetAuthorizationToken
    /// answers it: base64 of `AWS:PASSWORD`, which is also the whole
    /// credential of an HTTP Basic `Authorization` header.
    pub fn authorization_token(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", self.password))
    }
}

struct State {
    keys: HashMap<String, IssuedKey>,
    ecr_tokens: Vec<IssuedEcrToken>,
    ecr_lifetime: Duration,
    credentials_lifetime: Duration,
    oidc: Option<OidcProvider>,
    roles: HashSet<String>,
    imds_tokens: HashMap<String, SystemTime>,
    instance_role: String,
    pod_identity_token: String,
}

struct Shared {
    static_key: IssuedKey,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mints and records an ECR (or ECR Public) authorization token for a
    /// request `key` signed for `region`.
    fn issue_ecr_token(&self, service: &str, region: &str, key: &IssuedKey) -> IssuedEcrToken {
        // Shaped like ECR's: base64 of a JSON document starting `{"payload":"`.
        let password = format!("eyJwYXlsb2FkIjoi{}", random_b64(600).replace(['+', '/', '='], ""));
        let mut st = self.state();
        let token = IssuedEcrToken {
            password,
            expires_at: SystemTime::now() + st.ecr_lifetime,
            service: service.into(),
            region: region.into(),
            access_key_id: key.access_key_id.clone(),
            principal: key.principal.clone(),
        };
        st.ecr_tokens.push(token.clone());
        token
    }

    /// Mints and records temporary credentials for `principal`.
    fn issue_key(&self, source: &str, principal: &str) -> IssuedKey {
        let mut st = self.state();
        let key = IssuedKey {
            access_key_id: format!("ASIA{}", random_upper(16)),
            secret_access_key: random_b64(30),
            session_token: Some(format!("IQoJb3JpZ2luX2Vj{}", random_b64(300))),
            expires_at: Some(SystemTime::now() + st.credentials_lifetime),
            source: source.to_string(),
            principal: principal.to_string(),
        };
        st.keys.insert(key.access_key_id.clone(), key.clone());
        key
    }
}

fn random_upper(n: usize) -> String {
    (0..n).map(|_| b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[rand::random_range(0..32usize)] as char).collect()
}

fn random_b64(bytes: usize) -> String {
    let b: Vec<u8> = rand::random_iter().take(bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The running AWS emulator on `127.0.0.1:<random port>`. Dropping it stops
/// the server.
pub struct Aws {
    shared: Arc<Shared>,
    faults: Faults,
    recorder: Arc<Recorder>,
    server: Server,
}

impl Aws {
    /// Starts the emulator with one IAM user whose static key it accepts, on
    /// `127.0.0.1:<random port>`.
    pub async fn start() -> Aws {
        Aws::start_with(server::bind().await)
    }

    /// Starts the emulator on `addr` (a node's IMDS: `169.254.169.254:80`).
    pub async fn start_on(addr: std::net::SocketAddr) -> std::io::Result<Aws> {
        Ok(Aws::start_with(tokio::net::TcpListener::bind(addr).await?))
    }

    fn start_with(listener: tokio::net::TcpListener) -> Aws {
        let static_key = IssuedKey {
            access_key_id: format!("AKIA{}", random_upper(16)),
            secret_access_key: random_b64(30),
            session_token: None,
            expires_at: None,
            source: "static".into(),
            principal: format!("arn:aws:iam::{ACCOUNT_ID}:user/regcred"),
        };
        let mut keys = HashMap::new();
        keys.insert(static_key.access_key_id.clone(), static_key.clone());
        let shared = Arc::new(Shared {
            static_key,
            state: Mutex::new(State {
                keys,
                ecr_tokens: Vec::new(),
                ecr_lifetime: Duration::from_secs(12 * 3600),
                credentials_lifetime: Duration::from_secs(3600),
                oidc: None,
                roles: HashSet::new(),
                imds_tokens: HashMap::new(),
                instance_role: "regcred-node".into(),
                pod_identity_token: format!("eyJpod-identity.{}", random_upper(24)),
            }),
        });
        let faults = Faults::default();
        let recorder = Arc::new(Recorder::default());
        let router = Router::new().fallback(dispatch).with_state(shared.clone());
        let peer =
            Peer { name: "aws", faults: faults.clone(), recorder: recorder.clone(), error: Arc::new(fault_response) };
        let server = server::serve_on(listener, router, peer);
        Aws { shared, faults, recorder, server }
    }

    /// `http://127.0.0.1:PORT`: the URL of every emulated endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// The IAM user's static key: `(access key ID, secret access key)`.
    pub fn static_key(&self) -> (String, String) {
        (self.shared.static_key.access_key_id.clone(), self.shared.static_key.secret_access_key.clone())
    }

    /// Makes STS trust `issuer` (a cluster's ServiceAccount issuer, as an
    /// IAM OIDC identity provider) with the keys of `jwks`, for web
    /// identity tokens whose `aud` is `audience` (`sts.amazonaws.com` for IRSA).
    pub fn trust_oidc_issuer(&self, issuer: &str, jwks: &Value, audience: &str) {
        self.shared.state().oidc = Some(OidcProvider::new(issuer, jwks, vec![audience.to_string()]));
    }

    /// Lets callers assume `role_arn` (its trust policy allows them).
    pub fn allow_role(&self, role_arn: &str) {
        self.shared.state().roles.insert(role_arn.to_string());
    }

    /// The token the Pod Identity agent accepts as `Authorization`.
    pub fn pod_identity_token(&self) -> String {
        self.shared.state().pod_identity_token.clone()
    }

    /// The instance profile's role name IMDS reports.
    pub fn instance_role(&self) -> String {
        self.shared.state().instance_role.clone()
    }

    /// Lifetime of new ECR tokens (AWS's: 12 h).
    pub fn set_ecr_token_lifetime(&self, d: Duration) {
        self.shared.state().ecr_lifetime = d;
    }

    /// Lifetime of new temporary credentials (default 1 h).
    pub fn set_credentials_lifetime(&self, d: Duration) {
        self.shared.state().credentials_lifetime = d;
    }

    /// Every ECR token issued, in order.
    pub fn issued_ecr_tokens(&self) -> Vec<IssuedEcrToken> {
        self.shared.state().ecr_tokens.clone()
    }

    /// The issued ECR token with this password, if it has not expired.
    pub fn current_ecr_token(&self, password: &str) -> Option<IssuedEcrToken> {
        let now = SystemTime::now();
        self.shared.state().ecr_tokens.iter().find(|t| t.password == password && t.expires_at > now).cloned()
    }

    /// Issues an ECR token for `region` to the IAM user, exactly as
    /// GetAuthorizationToken signed with its static key would, without the
    /// signing: for tests of what consumes the token (the registry front).
    /// It expires after the ECR token lifetime; a zero lifetime makes one
    /// that has already expired.
    pub fn issue_ecr_token(&self, region: &str) -> IssuedEcrToken {
        self.shared.issue_ecr_token("ecr", region, &self.shared.static_key)
    }

    /// The private registry of the kit's account in `region`.
    pub fn ecr_registry(&self, region: &str) -> front::EcrRegistry {
        front::EcrRegistry { account: ACCOUNT_ID.to_string(), region: region.to_string() }
    }

    /// Serves `registry` (normally [`Aws::ecr_registry`]; another account's
    /// to test cross-account refusals) over TLS in front of a plain registry:
    /// requests with an ECR token this emulator issued, as ECR checks them,
    /// reach the backend.
    pub async fn start_registry_front(
        &self,
        registry: front::EcrRegistry,
        config: FrontConfig,
    ) -> Result<RegistryFront, FrontError> {
        let host = registry.host();
        let gate = front::EcrGate::new(self.shared.clone(), registry);
        crate::front::start("ecr", host, config, Arc::new(gate)).await
    }

    /// Every key the kit issued or holds (the static one first).
    pub fn issued_keys(&self) -> Vec<IssuedKey> {
        let mut keys: Vec<IssuedKey> = self.shared.state().keys.values().cloned().collect();
        keys.sort_by_key(|k| k.source != "static");
        keys
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.recorder.all()
    }
}

/// Routes by path, method and `X-Amz-Target`.
async fn dispatch(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    match (method.as_str(), path) {
        ("PUT", "/latest/api/token") => imds_token(&shared, &headers),
        ("GET", p) if p.starts_with("/latest/") => imds_get(&shared, p, &headers),
        ("GET", "/v1/credentials") => pod_identity(&shared, &headers),
        ("POST", "/") => match headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
            Some(target) => ecr(&shared, target, &method, path, query, &headers, &body),
            None => sts(&shared, &method, path, query, &headers, &body),
        },
        _ => json_error(StatusCode::NOT_FOUND, "UnknownOperationException", ""),
    }
}

/// AWS JSON 1.1's error: `{"__type", "message"}` and `x-amzn-ErrorType`.
fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-errortype", code)
        .header("x-amzn-requestid", random_upper(8))
        .body(Body::from(json!({"__type": code, "message": message}).to_string()))
        .expect("valid response")
}

fn json_ok(v: &Value) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Body::from(v.to_string()))
        .expect("valid response")
}

/// STS's XML error.
fn xml_error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{code}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        xml_escape(message),
        random_upper(8)
    );
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Body::from(body))
        .expect("valid response")
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn text(status: StatusCode, body: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Body::from(body.to_string()))
        .expect("valid response")
}

/// Why a signed request was refused: AWS's code, HTTP status and message.
struct Refusal(StatusCode, &'static str, String);

/// Verifies a SigV4-signed request for `service`; the key it was signed with.
fn verify(
    shared: &Shared,
    service: &str,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<IssuedKey, Refusal> {
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    let Some(header) = header else {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token".into(),
        ));
    };
    let Some(auth) = sigv4::parse(header) else {
        return Err(Refusal(StatusCode::BAD_REQUEST, "IncompleteSignatureException", format!("Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters. Authorization={header}")));
    };
    let key = shared.state().keys.get(&auth.access_key_id).cloned();
    let Some(key) = key else {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".into(),
        ));
    };
    let sent_token = headers.get("x-amz-security-token").and_then(|v| v.to_str().ok());
    if key.session_token.as_deref() != sent_token {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".into(),
        ));
    }
    if key.expires_at.is_some_and(|e| e <= SystemTime::now()) {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "ExpiredTokenException",
            "The security token included in the request is expired".into(),
        ));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "IncompleteSignatureException",
                format!("'{required}' must be a 'SignedHeader' in the AWS Authorization."),
            ));
        }
    }
    if auth.service != service {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{service}'. "),
        ));
    }
    let amz_date = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).unwrap_or("");
    let signed_at = parse_amz_date(amz_date);
    let now = SystemTime::now();
    let skew_ok = signed_at.is_some_and(|t| {
        t.duration_since(now).unwrap_or_default() < Duration::from_secs(900)
            && now.duration_since(t).unwrap_or_default() < Duration::from_secs(900)
    });
    if !skew_ok || !amz_date.starts_with(&auth.date) {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "InvalidSignatureException",
            format!("Signature expired: {amz_date} is now earlier than the allowed window."),
        ));
    }
    let expected =
        sigv4::expected_signature(&auth, &key.secret_access_key, method.as_str(), path, query, headers, body);
    if expected != auth.signature {
        return Err(Refusal(StatusCode::FORBIDDEN, "InvalidSignatureException", SIGNATURE_MISMATCH.into()));
    }
    Ok(key)
}

/// `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 {
        return None;
    }
    let rfc = format!("{}-{}-{}T{}:{}:{}Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..15]);
    humantime::parse_rfc3339(&rfc).ok()
}

/// ECR's and ECR Public's `GetAuthorizationToken`.
fn ecr(
    shared: &Shared,
    target: &str,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let service = match target {
        ECR_TARGET => "ecr",
        ECR_PUBLIC_TARGET => "ecr-public",
        _ => return json_error(StatusCode::BAD_REQUEST, "UnknownOperationException", ""),
    };
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-amz-json-1.1") {
        return json_error(StatusCode::BAD_REQUEST, "SerializationException", "");
    }
    let key = match verify(shared, service, method, path, query, headers, body) {
        Ok(key) => key,
        Err(Refusal(status, code, message)) => return json_error(status, code, &message),
    };
    if serde_json::from_slice::<Value>(body).map(|v| !v.is_object()).unwrap_or(true) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "Start of structure or map found where not expected.",
        );
    }
    let region = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(sigv4::parse)
        .map(|a| a.region)
        .unwrap_or_default();
    let token = shared.issue_ecr_token(service, &region, &key);
    let data = json!({"authorizationToken": token.authorization_token(), "expiresAt": epoch_secs(token.expires_at)});
    if service == "ecr" {
        let mut data = data;
        data["proxyEndpoint"] = format!("https://{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com").into();
        json_ok(&json!({"authorizationData": [data]}))
    } else {
        json_ok(&json!({"authorizationData": data}))
    }
}

/// STS, by its form's `Action`.
fn sts(shared: &Shared, method: &Method, path: &str, query: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("Version") != Some("2011-06-15") {
        return xml_error(StatusCode::BAD_REQUEST, "Sender", "InvalidAction", "Could not find operation for version");
    }
    let Some(role) = get("RoleArn") else {
        return xml_error(StatusCode::BAD_REQUEST, "Sender", "ValidationError", "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null");
    };
    if get("RoleSessionName").is_none_or(str::is_empty) {
        return xml_error(StatusCode::BAD_REQUEST, "Sender", "ValidationError", "1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null");
    }
    let action = get("Action").unwrap_or("");
    let (source, caller) = match action {
        "AssumeRoleWithWebIdentity" => {
            let Some(token) = get("WebIdentityToken") else {
                return xml_error(StatusCode::BAD_REQUEST, "Sender", "ValidationError", "1 validation error detected: Value null at 'webIdentityToken' failed to satisfy constraint: Member must not be null");
            };
            let oidc = shared.state().oidc.clone();
            let Some(oidc) = oidc else {
                return xml_error(
                    StatusCode::BAD_REQUEST,
                    "Sender",
                    "InvalidIdentityToken",
                    "No OpenIDConnect provider found in your account for the token's issuer",
                );
            };
            match oidc.verify(token) {
                Ok(claims) => ("web-identity", claims["sub"].as_str().unwrap_or("").to_string()),
                Err(problem) => return xml_error(StatusCode::BAD_REQUEST, "Sender", "InvalidIdentityToken", &problem),
            }
        }
        "AssumeRole" => match verify(shared, "sts", method, path, query, headers, body) {
            Ok(key) => ("assume-role", key.principal),
            Err(Refusal(status, code, message)) => {
                let code = match code {
                    "UnrecognizedClientException" => "InvalidClientTokenId",
                    "InvalidSignatureException" => "SignatureDoesNotMatch",
                    other => other,
                };
                return xml_error(status, "Sender", code, &message);
            }
        },
        _ => {
            return xml_error(
                StatusCode::BAD_REQUEST,
                "Sender",
                "InvalidAction",
                &format!("Could not find operation {action} for version 2011-06-15"),
            )
        }
    };
    if !shared.state().roles.contains(role) {
        return xml_error(
            StatusCode::FORBIDDEN,
            "Sender",
            "AccessDenied",
            &format!("Not authorized to perform sts:{action}"),
        );
    }
    let session = get("RoleSessionName").unwrap_or("");
    let assumed = role.replacen(":iam::", ":sts::", 1).replacen(":role/", ":assumed-role/", 1) + "/" + session;
    tracing::debug!(caller, "assumed {assumed}");
    let key = shared.issue_key(source, &assumed);
    let result = format!(
        "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <{action}Result>\n    <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>\n    <AssumedRoleUser>\n      <Arn>{assumed}</Arn>\n    </AssumedRoleUser>\n  </{action}Result>\n</{action}Response>\n",
        key.access_key_id,
        key.secret_access_key,
        key.session_token.as_deref().unwrap_or(""),
        rfc3339(key.expires_at.expect("temporary"))
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/xml")
        .body(Body::from(result))
        .expect("valid response")
}

/// The credentials JSON IMDS and the Pod Identity agent answer.
fn credentials_json(key: &IssuedKey) -> Value {
    json!({
        "Code": "Success",
        "LastUpdated": rfc3339(SystemTime::now()),
        "Type": "AWS-HMAC",
        "AccessKeyId": key.access_key_id,
        "SecretAccessKey": key.secret_access_key,
        "Token": key.session_token,
        "Expiration": rfc3339(key.expires_at.expect("temporary")),
    })
}

/// IMDSv2's session token.
fn imds_token(shared: &Shared, headers: &HeaderMap) -> Response {
    let ttl = headers.get("x-aws-ec2-metadata-token-ttl-seconds").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let Some(ttl) = ttl.filter(|t| (1..=21600).contains(t)) else {
        return text(StatusCode::BAD_REQUEST, "");
    };
    let token = random_b64(42);
    shared.state().imds_tokens.insert(token.clone(), SystemTime::now() + Duration::from_secs(ttl));
    text(StatusCode::OK, &token)
}

/// IMDS's GETs: 401 without a current session token (IMDSv2 only).
fn imds_get(shared: &Shared, path: &str, headers: &HeaderMap) -> Response {
    let token = headers.get("x-aws-ec2-metadata-token").and_then(|v| v.to_str().ok());
    let valid = token.is_some_and(|t| shared.state().imds_tokens.get(t).is_some_and(|e| *e > SystemTime::now()));
    if !valid {
        return text(StatusCode::UNAUTHORIZED, "");
    }
    let role = shared.state().instance_role.clone();
    match path.strip_prefix("/latest/meta-data/iam/security-credentials/") {
        Some("") => text(StatusCode::OK, &role),
        Some(r) if r == role => {
            let key =
                shared.issue_key("imds", &format!("arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}/i-0123456789abcdef0"));
            json_ok(&credentials_json(&key))
        }
        _ => text(StatusCode::NOT_FOUND, ""),
    }
}

/// The EKS Pod Identity agent: the pod's token as `Authorization`.
fn pod_identity(shared: &Shared, headers: &HeaderMap) -> Response {
    let sent = headers.get("authorization").and_then(|v| v.to_str().ok());
    if sent.is_none() {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"code": "InvalidTokenException", "message": "Service account token cannot be empty"})
                    .to_string(),
            ))
            .expect("valid response");
    }
    if sent != Some(shared.state().pod_identity_token.as_str()) {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"code": "InvalidTokenException", "message": "Service account token cannot be validated"})
                    .to_string(),
            ))
            .expect("valid response");
    }
    let key = shared.issue_key("pod-identity", &format!("arn:aws:sts::{ACCOUNT_ID}:assumed-role/regcred-pod/eks-pod"));
    let mut v = credentials_json(&key);
    v["AccountId"] = ACCOUNT_ID.into();
    json_ok(&v)
}

/// The body an injected `Fault::Status` gets when the test gave none:
/// what ECR answers (its throttling is a 400 `ThrottlingException`).
fn fault_response(code: StatusCode, path: &str) -> Response {
    if path.starts_with("/latest/") {
        return text(code, "");
    }
    let name = match code.as_u16() {
        400 | 429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "ServerException",
    };
    let message = if name == "ThrottlingException" { "Rate exceeded" } else { "" };
    json_error(code, name, message)
}
