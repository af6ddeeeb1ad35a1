//! An Amazon ECR private registry, `ACCOUNT.dkr.ecr.REGION.amazonaws.com`,
//! as a [`Gate`] for the kit's registry front: which requests ECR lets
//! through to the images, and what it answers the others.
//!
//! ECR takes no bearer tokens: every request carries HTTP Basic
//! `AWS:PASSWORD`, the decoded `authorizationToken` of GetAuthorizationToken
//! (ECR User Guide, "Private registry authentication", registry_auth.html;
//! API reference, `AuthorizationData`). The answers, and where each comes
//! from:
//!
//! * no credential (or not Basic): `401`, `WWW-Authenticate: Basic
//!   realm="https://HOST/",service="ecr.amazonaws.com"`, body `Not
//!   Authorized`, as `curl -v https://ACCOUNT.dkr.ecr.REGION.amazonaws.com/v2/`
//!   shows (the challenge is quoted in mayflower/docker-ls#28; the body and
//!   `Docker-Distribution-Api-Version` in a published transcript,
//!   wom.icu/today-i-learned/2023-09-11). ECR answers this as plain text,
//!   not the registry's JSON error document;
//! * a user name other than `AWS`: the same `401` (Hack4Eugene/SpeedUpAmerica#294:
//!   `docker login` to ECR with Docker Hub credentials, "failed with status:
//!   401 Unauthorized");
//! * a password ECR cannot use, or a token issued for another region: `400
//!   Bad Request` (aws/aws-cli#4962, a mangled password; aws/aws-cli#5317,
//!   where the maintainer reproduced it by logging in to a registry of
//!   another region). The User Guide also lists "authenticated to a different
//!   region" among the causes of HTTP 403 on *push*; the kit answers 400 on
//!   every path, as observed for `/v2/`. Clients show only the status; the
//!   body is not documented;
//! * an expired token: `403`, `{"errors":[{"code":"DENIED","message":"Your
//!   authorization token has expired. Reauthenticate and try again."}]}`
//!   (User Guide, "Troubleshooting errors with Docker commands", HTTP 403 /
//!   "Your token has expired"; the message as Docker prints it, `denied:
//!   ...`, in aws/aws-cli#6580);
//! * a token of a principal of another account, on a repository: `403`
//!   `DENIED` "User: ARN is not authorized to perform: ecr:BatchGetImage on
//!   resource: arn:aws:ecr:REGION:ACCOUNT:repository/NAME because no
//!   resource-based policy allows the ecr:BatchGetImage action"
//!   (bottlerocket-os/bottlerocket-update-operator#157). The kit's
//!   repositories have no repository policies;
//! * a push or delete: `403` `DENIED` "... because no identity-based policy
//!   allows the ecr:InitiateLayerUpload action" (User Guide, "Troubleshooting
//!   Amazon ECR error messages", HTTP 403 "User [arn] is not authorized to
//!   perform [operation]"): the kit's identities hold pull permissions only
//!   (as `AmazonEC2ContainerRegistryReadOnly` grants them), and the front
//!   is for pulling.
//!
//! An ECR token's permissions are its principal's (registry_auth.html: "An
//! authorization token's permission scope matches that of the IAM principal
//! used to retrieve the authentication token"), so a current token of this
//! account and region may pull every repository.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};

use super::Shared;
use crate::front::{registry_error, Gate, RegistryPath, Resource, Verdict};

/// The challenge's `service`, the same for every ECR registry.
const SERVICE: &str = "ecr.amazonaws.com";
const EXPIRED: &str = "Your authorization token has expired. Reauthenticate and try again.";

/// A private ECR registry: an account's registry in one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EcrRegistry {
    /// The 12-digit account ID.
    pub account: String,
    pub region: String,
}

impl EcrRegistry {
    /// `ACCOUNT.dkr.ecr.REGION.amazonaws.com`.
    pub fn host(&self) -> String {
        format!("{}.dkr.ecr.{}.amazonaws.com", self.account, self.region)
    }
}

/// The ECR action (IAM permission) a request needs: `None` for the version
/// check and paths that name no repository, which need only a valid token.
fn action<'a>(method: &Method, path: RegistryPath<'a>) -> Option<(&'a str, &'static str)> {
    let RegistryPath::Repository { name, kind } = path else { return None };
    let reading = method == Method::GET || method == Method::HEAD;
    let action = match kind {
        Resource::Manifest if reading => "ecr:BatchGetImage",
        Resource::Manifest | Resource::Blob if method == Method::DELETE => "ecr:BatchDeleteImage",
        Resource::Manifest => "ecr:PutImage",
        Resource::Tags => "ecr:ListImages",
        Resource::Blob if method == Method::GET => "ecr:GetDownloadUrlForLayer",
        Resource::Blob if method == Method::HEAD => "ecr:BatchCheckLayerAvailability",
        Resource::Upload | Resource::Blob if method == Method::POST => "ecr:InitiateLayerUpload",
        Resource::Upload | Resource::Blob if method == Method::PATCH => "ecr:UploadLayerPart",
        Resource::Upload | Resource::Blob => "ecr:CompleteLayerUpload",
    };
    Some((name, action))
}

/// The actions a pull needs, which the kit's identities hold.
fn is_pull(action: &str) -> bool {
    matches!(
        action,
        "ecr:BatchGetImage" | "ecr:GetDownloadUrlForLayer" | "ecr:BatchCheckLayerAvailability" | "ecr:ListImages"
    )
}

/// The account of an IAM or STS ARN (`arn:aws:iam::ACCOUNT:...`).
fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4)
}

/// The Basic credential of a request: `(user, password)`, or `None` when
/// there is no Basic `Authorization` header that decodes as one.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// ECR's registry rules, over the tokens the emulator issued.
pub(super) struct EcrGate {
    shared: Arc<Shared>,
    registry: EcrRegistry,
}

impl EcrGate {
    pub(super) fn new(shared: Arc<Shared>, registry: EcrRegistry) -> EcrGate {
        EcrGate { shared, registry }
    }

    fn not_authorized(&self) -> Response {
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header("docker-distribution-api-version", "registry/2.0")
            .header(
                http::header::WWW_AUTHENTICATE,
                format!("Basic realm=\"https://{}/\",service=\"{SERVICE}\"", self.registry.host()),
            )
            .body(Body::from("Not Authorized\n"))
            .expect("valid response")
    }

    fn denied(&self, principal: &str, action: &str, repository: &str, policy: &str) -> Response {
        let EcrRegistry { account, region } = &self.registry;
        let message = format!(
            "User: {principal} is not authorized to perform: {action} on resource: \
             arn:aws:ecr:{region}:{account}:repository/{repository} because no {policy} policy allows the {action} action"
        );
        registry_error(StatusCode::FORBIDDEN, "DENIED", &message)
    }
}

fn bad_request() -> Response {
    Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("docker-distribution-api-version", "registry/2.0")
        .body(Body::from("Bad Request\n"))
        .expect("valid response")
}

impl Gate for EcrGate {
    fn admit(&self, req: &Request<Bytes>) -> Verdict {
        let method = req.method();
        let Some(path) = RegistryPath::parse(req.uri().path()) else {
            return Verdict::Answer(registry_error(StatusCode::NOT_FOUND, "NOT_FOUND", "404 page not found"));
        };
        let Some((user, password)) = basic(req.headers()) else {
            return Verdict::Answer(self.not_authorized());
        };
        if user != "AWS" {
            return Verdict::Answer(self.not_authorized());
        }
        let token = self.shared.state().ecr_tokens.iter().find(|t| t.password == password).cloned();
        // An ECR Public token is not one private ECR can read either.
        let Some(token) = token.filter(|t| t.service == "ecr" && t.region == self.registry.region) else {
            return Verdict::Answer(bad_request());
        };
        if token.expires_at <= SystemTime::now() {
            return Verdict::Answer(registry_error(StatusCode::FORBIDDEN, "DENIED", EXPIRED));
        }
        match action(method, path) {
            Some((repository, action)) => {
                if account_of(&token.principal) != Some(self.registry.account.as_str()) {
                    return Verdict::Answer(self.denied(&token.principal, action, repository, "resource-based"));
                }
                if !is_pull(action) {
                    return Verdict::Answer(self.denied(&token.principal, action, repository, "identity-based"));
                }
                Verdict::Forward
            }
            None if method == Method::GET || method == Method::HEAD => Verdict::Forward,
            None => Verdict::Answer(registry_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                "The operation is unsupported.",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{account_of, action, RegistryPath};
    use http::Method;

    #[test]
    fn each_request_needs_the_ecr_action_of_its_api_call() {
        let action = |method, path| action(&method, RegistryPath::parse(path).unwrap());
        assert_eq!(action(Method::GET, "/v2/"), None);
        assert_eq!(action(Method::GET, "/v2/_catalog"), None);
        assert_eq!(action(Method::GET, "/v2/team/app/manifests/1"), Some(("team/app", "ecr:BatchGetImage")));
        assert_eq!(action(Method::HEAD, "/v2/app/manifests/sha256:ab"), Some(("app", "ecr:BatchGetImage")));
        assert_eq!(action(Method::GET, "/v2/app/blobs/sha256:ab"), Some(("app", "ecr:GetDownloadUrlForLayer")));
        assert_eq!(action(Method::HEAD, "/v2/app/blobs/sha256:ab"), Some(("app", "ecr:BatchCheckLayerAvailability")));
        assert_eq!(action(Method::GET, "/v2/app/tags/list"), Some(("app", "ecr:ListImages")));
        assert_eq!(action(Method::POST, "/v2/app/blobs/uploads/"), Some(("app", "ecr:InitiateLayerUpload")));
        assert_eq!(action(Method::PATCH, "/v2/app/blobs/uploads/1"), Some(("app", "ecr:UploadLayerPart")));
        assert_eq!(action(Method::PUT, "/v2/app/blobs/uploads/1"), Some(("app", "ecr:CompleteLayerUpload")));
        assert_eq!(action(Method::PUT, "/v2/app/manifests/1"), Some(("app", "ecr:PutImage")));
        assert_eq!(action(Method::DELETE, "/v2/app/manifests/1"), Some(("app", "ecr:BatchDeleteImage")));
    }

    #[test]
    fn principals_belong_to_the_account_of_their_arn() {
        assert_eq!(account_of("arn:aws:iam::111122223333:user/regcred"), Some("111122223333"));
        assert_eq!(account_of("arn:aws:sts::444455556666:assumed-role/r/s"), Some("444455556666"));
        assert_eq!(account_of("nonsense"), None);
    }
}
