//! `regcred-testkit`: run the emulators by hand.
//!
//! `serve` starts the Kubernetes, Google and AWS emulators and prints the
//! environment a regcred (or curl) session needs to use them. `google`
//! starts the Google emulator alone, where a node's pods and containerd
//! expect Google (testkit/control-plane/node runs it). `azure` starts the
//! Azure emulator (Entra ID, IMDS, an ACR token server) with one identity
//! allowed to pull, and `aws` the AWS emulator (STS, ECR's
//! GetAuthorizationToken, IMDSv2, the Pod Identity agent); either may also
//! serve its registry's own host name over TLS in front of a plain registry
//! (`--registry-front`). Each standalone emulator writes a JSON file saying
//! where it is and who it knows, once it is ready. The demo and the
//! benchmark are `xtask` commands (testkit/xtask).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use regcred_testkit::{Aws, Azure, Backend, FrontConfig, FrontError, Google, KubeApi, RegistryFront, TlsIdentity};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "regcred-testkit",
    version,
    about = "Local emulators of the Kubernetes API and of Google's, AWS's and Azure's credential endpoints and registries, for trying and testing regcred"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the Kubernetes, Google and AWS emulators and serve until Ctrl-C.
    Serve {
        /// Directory to write `kubeconfig`, `key.json` and `adc.json` into (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Lifetime of the access tokens the Google emulator issues.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        token_lifetime: Duration,
        /// Namespace of the kubeconfig's context.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Require this bearer token from Kubernetes clients (written into the kubeconfig).
        #[arg(long)]
        kube_token: Option<String>,
        /// A subject token the emulated STS accepts (workload identity federation); repeatable.
        #[arg(long)]
        subject_token: Vec<String>,
        /// A service account the emulated IAM Credentials lets callers impersonate; repeatable.
        #[arg(long)]
        allow_impersonation: Vec<String>,
    },
    /// Start the Google emulator alone, on a given address, optionally as the
    /// token endpoint of a Docker registry (`auth: token`), and serve until
    /// SIGINT or SIGTERM.
    Google {
        /// Address to listen on (a node's metadata server: 169.254.169.254:80).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Directory to write `key.json` and `google.json` (the account, the
        /// URL and the project) into (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Lifetime of the access tokens the emulator issues.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        token_lifetime: Duration,
        /// PKCS#8 PEM key that signs registry tokens (serves `/v2/token`).
        #[arg(long, requires_all = ["registry_cert", "registry_issuer"])]
        registry_key: Option<PathBuf>,
        /// PEM certificate of `--registry-key`, as the registry's `rootcertbundle` holds it.
        #[arg(long, requires = "registry_key")]
        registry_cert: Option<PathBuf>,
        /// The registry's `auth.token.issuer`.
        #[arg(long, requires = "registry_key")]
        registry_issuer: Option<String>,
        /// `REPOSITORY` (the emulator's own service account may pull it) or
        /// `REPOSITORY=IDENTITY`; repeatable.
        #[arg(long)]
        allow_pull: Vec<String>,
        /// A service account the emulated IAM Credentials lets callers impersonate; repeatable.
        #[arg(long)]
        allow_impersonation: Vec<String>,
        /// Make STS's workload identity provider an OIDC provider for this
        /// issuer (a cluster's ServiceAccount issuer), with `--oidc-jwks`.
        #[arg(long, requires = "oidc_jwks")]
        trust_oidc_issuer: Option<String>,
        /// The issuer's JSON Web Key Set (a file, as its `jwks_uri` serves it).
        #[arg(long, requires = "trust_oidc_issuer")]
        oidc_jwks: Option<PathBuf>,
    },
    /// Start the Azure emulator alone (Entra ID's token endpoint, IMDS's
    /// managed identity endpoint, an ACR registry's token server) with one
    /// app that may pull, and serve until SIGINT or SIGTERM.
    Azure {
        /// Address to listen on (a node's IMDS: 169.254.169.254:80).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Directory to write `azure.json` (tenant, client id, login server,
        /// URLs) into (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Lifetime of the ACR refresh tokens (ACR's own: 3h).
        #[arg(long, default_value = "3h", value_parser = humantime::parse_duration)]
        refresh_token_lifetime: Duration,
        /// Federate the app with this issuer (a cluster's ServiceAccount
        /// issuer), whose keys `--oidc-jwks` holds; the kit's own issuer
        /// is trusted without it.
        #[arg(long, requires = "oidc_jwks")]
        trust_oidc_issuer: Option<String>,
        /// The issuer's JSON Web Key Set (a file, as its `jwks_uri` serves it).
        #[arg(long, requires = "trust_oidc_issuer")]
        oidc_jwks: Option<PathBuf>,
        /// `NAMESPACE:NAME` of a service account whose tokens the app
        /// accepts (a federated identity credential); repeatable.
        #[arg(long)]
        federated_service_account: Vec<String>,
        /// Give the VM a system-assigned managed identity that may pull.
        #[arg(long)]
        system_identity: bool,
        /// The registry's login server, NAME.azurecr.io (default: a random
        /// name), for a certificate or /etc/hosts made before it starts.
        #[arg(long, value_parser = login_server)]
        login_server: Option<String>,
        #[command(flatten)]
        front: FrontArgs,
    },
    /// Start the AWS emulator alone (STS, ECR's GetAuthorizationToken,
    /// IMDSv2, the EKS Pod Identity agent) with one IAM user, one role that
    /// may be assumed, and serve until SIGINT or SIGTERM.
    Aws {
        /// Address to listen on: every endpoint (AWS_ENDPOINT_URL_STS,
        /// AWS_ENDPOINT_URL_ECR, the IMDS endpoint) is this one URL.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Directory to write `aws.json` (account, region, registry, URL,
        /// role, static key) into (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// The registry's region: `--registry-front` serves
        /// ACCOUNT.dkr.ecr.REGION.amazonaws.com and takes tokens of this region.
        #[arg(long, default_value = "us-east-1", value_parser = region)]
        region: String,
        /// Lifetime of the ECR authorization tokens (ECR's own: 12h).
        #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
        ecr_token_lifetime: Duration,
        /// Make STS trust this issuer (a cluster's ServiceAccount issuer, as an
        /// IAM OIDC identity provider) for AssumeRoleWithWebIdentity, with
        /// `--oidc-jwks`.
        #[arg(long, requires = "oidc_jwks")]
        trust_oidc_issuer: Option<String>,
        /// The issuer's JSON Web Key Set (a file, as its `jwks_uri` serves it).
        #[arg(long, requires = "trust_oidc_issuer")]
        oidc_jwks: Option<PathBuf>,
        /// The audience STS requires of web identity tokens (IRSA's).
        #[arg(long, default_value = "sts.amazonaws.com")]
        audience: String,
        #[command(flatten)]
        front: FrontArgs,
    },
}

/// The registry front `azure` and `aws` may serve: the registry's own host
/// name over TLS, letting through to a plain registry what the cloud would.
#[derive(clap::Args)]
struct FrontArgs {
    /// Also serve the registry itself over TLS on this address (where the
    /// node's /etc/hosts sends the registry's name, e.g. 127.0.0.2:443).
    #[arg(long, requires_all = ["registry_cert", "registry_key", "registry_backend"])]
    registry_front: Option<SocketAddr>,
    /// The front's PEM certificate chain (leaf first), for the registry's name.
    #[arg(long, requires = "registry_front")]
    registry_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8 or RSA) of `--registry-cert`.
    #[arg(long, requires = "registry_front")]
    registry_key: Option<PathBuf>,
    /// The plain, unauthenticated registry that holds the images, http://HOST:PORT.
    #[arg(long, requires = "registry_front")]
    registry_backend: Option<Backend>,
}

impl FrontArgs {
    /// The front's configuration, if one was asked for (clap sees to it that
    /// the four flags come together or not at all).
    fn config(self) -> Result<Option<FrontConfig>, FrontError> {
        let (Some(listen), Some(cert), Some(key), Some(backend)) =
            (self.registry_front, self.registry_cert, self.registry_key, self.registry_backend)
        else {
            return Ok(None);
        };
        Ok(Some(FrontConfig { listen, tls: TlsIdentity::from_pem_files(&cert, &key)?, backend }))
    }
}

/// An AWS region as ECR host names spell it: `us-east-1`, `eu-west-1`.
fn region(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split('-').collect();
    let ok = parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| s.to_string()).ok_or_else(|| format!("{s:?} is not an AWS region such as us-east-1"))
}

/// `NAME.azurecr.io`, NAME 5 to 50 lowercase letters and digits (ACR's rule
/// for registry names).
fn login_server(s: &str) -> Result<String, String> {
    let name = s.strip_suffix(".azurecr.io").unwrap_or("");
    let ok = (5..=50).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("{s:?} is not NAME.azurecr.io with NAME 5-50 lowercase letters and digits"))
}

/// Why a standalone emulator could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: not a JSON Web Key Set: {source}", path.display())]
    Jwks { path: PathBuf, source: serde_json::Error },
    #[error("--federated-service-account {0:?}: expected NAMESPACE:NAME")]
    ServiceAccount(String),
    #[error("--registry-key: {0}")]
    RegistrySigner(String),
    #[error("registry front: {0}")]
    Front(#[from] FrontError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("regcred_testkit=info"));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve { dir, token_lifetime, namespace, kube_token, subject_token, allow_impersonation } => {
            let google = Google::start().await;
            for t in &subject_token {
                google.accept_subject_token(t);
            }
            for email in &allow_impersonation {
                google.allow_impersonation(email);
            }
            exit(serve(dir, token_lifetime, &namespace, kube_token.as_deref(), google).await.map_err(StartError::from))
        }
        Command::Google {
            listen,
            dir,
            token_lifetime,
            registry_key,
            registry_cert,
            registry_issuer,
            allow_pull,
            allow_impersonation,
            trust_oidc_issuer,
            oidc_jwks,
        } => {
            let registry = match (registry_key, registry_cert, registry_issuer) {
                (Some(k), Some(c), Some(i)) => Some((k, c, i)),
                _ => None,
            };
            let oidc = trust_oidc_issuer.zip(oidc_jwks);
            exit(google_alone(listen, dir, token_lifetime, registry, &allow_pull, &allow_impersonation, oidc).await)
        }
        Command::Azure {
            listen,
            dir,
            refresh_token_lifetime,
            trust_oidc_issuer,
            oidc_jwks,
            federated_service_account,
            system_identity,
            login_server,
            front,
        } => {
            let oidc = trust_oidc_issuer.zip(oidc_jwks);
            let identities = AzureIdentities { federated: federated_service_account, system: system_identity };
            exit(azure_alone(listen, dir, refresh_token_lifetime, oidc, identities, login_server, front).await)
        }
        Command::Aws { listen, dir, region, ecr_token_lifetime, trust_oidc_issuer, oidc_jwks, audience, front } => {
            let oidc = trust_oidc_issuer.zip(oidc_jwks).map(|(issuer, jwks)| (issuer, jwks, audience));
            exit(aws_alone(listen, dir, &region, ecr_token_lifetime, oidc, front).await)
        }
    }
}

/// Reads a JSON Web Key Set file.
fn read_jwks(path: &Path) -> Result<Value, StartError> {
    let bytes = std::fs::read(path).map_err(|source| StartError::Read { path: path.to_path_buf(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| StartError::Jwks { path: path.to_path_buf(), source })
}

/// The address a standalone emulator failed to listen on.
fn listening(addr: SocketAddr) -> impl FnOnce(std::io::Error) -> StartError {
    move |source| StartError::Listen { addr, source }
}

/// The end of every standalone emulator's start-up: writes `about` to
/// `DIR/FILE` (last, so that the file's existence says everything is
/// listening), logs `banner`, and serves until SIGINT or SIGTERM.
async fn serve_alone(dir: &Path, file: &str, about: Value, banner: String) -> Result<(), StartError> {
    std::fs::write(dir.join(file), about.to_string())?;
    eprintln!("regcred-testkit: {banner}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    eprintln!("regcred-testkit: stopping");
    Ok(())
}

/// Starts `front` if asked for, by `start`; the front's address for the
/// JSON file.
async fn start_front<F>(
    front: FrontArgs,
    start: impl FnOnce(FrontConfig) -> F,
) -> Result<Option<RegistryFront>, StartError>
where
    F: std::future::Future<Output = Result<RegistryFront, FrontError>>,
{
    match front.config()? {
        Some(config) => Ok(Some(start(config).await?)),
        None => Ok(None),
    }
}

/// The JSON fields of a running front.
fn front_about(front: &Option<RegistryFront>) -> Value {
    match front {
        Some(f) => json!({"address": f.addr().to_string(), "host": f.host(), "backend": f.backend().to_string()}),
        None => Value::Null,
    }
}

/// The identities `regcred-testkit azure` creates.
struct AzureIdentities {
    /// `NAMESPACE:NAME` service accounts the app is federated with.
    federated: Vec<String>,
    /// Whether the VM has a system-assigned identity.
    system: bool,
}

async fn azure_alone(
    listen: SocketAddr,
    dir: PathBuf,
    refresh_token_lifetime: Duration,
    oidc: Option<(String, PathBuf)>,
    identities: AzureIdentities,
    login_server: Option<String>,
    front: FrontArgs,
) -> Result<(), StartError> {
    std::fs::create_dir_all(&dir)?;
    let azure = match &login_server {
        Some(name) => Azure::start_on_for(listen, name).await,
        None => Azure::start_on(listen).await,
    }
    .map_err(listening(listen))?;
    azure.set_refresh_token_lifetime(refresh_token_lifetime);
    let issuer = match oidc {
        Some((issuer, jwks)) => {
            azure.trust_issuer(&issuer, &read_jwks(&jwks)?);
            issuer
        }
        None => azure.cluster_issuer(),
    };
    let app = azure.create_app();
    azure.allow_pull(&app);
    for sa in &identities.federated {
        let (namespace, name) = sa.split_once(':').ok_or_else(|| StartError::ServiceAccount(sa.clone()))?;
        azure.add_federated_credential(&app, &issuer, &format!("system:serviceaccount:{namespace}:{name}"));
    }
    let system = identities.system.then(|| azure.enable_system_identity());
    if let Some(id) = &system {
        azure.allow_pull(id);
    }
    let front = start_front(front, |config| azure.start_registry_front(config)).await?;
    let about = json!({
        "url": azure.url(),
        "tenant_id": azure.tenant_id(),
        "client_id": app,
        "system_identity_client_id": system,
        "login_server": azure.login_server(),
        "token_uri": azure.token_uri(),
        "imds_endpoint": azure.imds_endpoint(),
        "oidc_issuer": issuer,
        "registry_front": front_about(&front),
    });
    let banner =
        format!("Azure emulator on {} for {} (tenant {})", azure.url(), azure.login_server(), azure.tenant_id());
    serve_alone(&dir, "azure.json", about, banner).await
}

async fn aws_alone(
    listen: SocketAddr,
    dir: PathBuf,
    region: &str,
    ecr_token_lifetime: Duration,
    oidc: Option<(String, PathBuf, String)>,
    front: FrontArgs,
) -> Result<(), StartError> {
    std::fs::create_dir_all(&dir)?;
    let aws = Aws::start_on(listen).await.map_err(listening(listen))?;
    aws.set_ecr_token_lifetime(ecr_token_lifetime);
    // The role pods assume with their ServiceAccount token (IRSA's
    // `eks.amazonaws.com/role-arn`), or the IAM user with AssumeRole.
    let role_arn = format!("arn:aws:iam::{}:role/regcred", regcred_testkit::aws::ACCOUNT_ID);
    aws.allow_role(&role_arn);
    let (issuer, audience) = match oidc {
        Some((issuer, jwks, audience)) => {
            aws.trust_oidc_issuer(&issuer, &read_jwks(&jwks)?, &audience);
            (Some(issuer), Some(audience))
        }
        None => (None, None),
    };
    let registry = aws.ecr_registry(region);
    let host = registry.host();
    let front = start_front(front, |config| aws.start_registry_front(registry, config)).await?;
    let (key_id, secret) = aws.static_key();
    let about = json!({
        "url": aws.url(),
        "account_id": regcred_testkit::aws::ACCOUNT_ID,
        "region": region,
        "registry": host,
        "role_arn": role_arn,
        "access_key_id": key_id,
        "secret_access_key": secret,
        "oidc_issuer": issuer,
        "audience": audience,
        "ecr_token_lifetime_seconds": ecr_token_lifetime.as_secs(),
        "registry_front": front_about(&front),
    });
    serve_alone(&dir, "aws.json", about, format!("AWS emulator on {} for {host}", aws.url())).await
}

fn exit(result: Result<(), StartError>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regcred-testkit: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn google_alone(
    listen: SocketAddr,
    dir: PathBuf,
    token_lifetime: Duration,
    registry: Option<(PathBuf, PathBuf, String)>,
    allow_pull: &[String],
    allow_impersonation: &[String],
    oidc: Option<(String, PathBuf)>,
) -> Result<(), StartError> {
    std::fs::create_dir_all(&dir)?;
    let google = Google::start_on(listen).await.map_err(listening(listen))?;
    google.set_token_lifetime(token_lifetime);
    if let Some((key, cert, issuer)) = registry {
        google
            .sign_registry_tokens(&std::fs::read_to_string(key)?, &std::fs::read_to_string(cert)?, &issuer)
            .map_err(StartError::RegistrySigner)?;
    }
    for entry in allow_pull {
        match entry.split_once('=') {
            Some((repo, identity)) => google.allow_pull(repo, identity),
            None => google.allow_pull(entry, &google.service_account_email()),
        }
    }
    for email in allow_impersonation {
        google.allow_impersonation(email);
    }
    if let Some((issuer, jwks)) = oidc {
        google.trust_oidc_issuer(&issuer, &read_jwks(&jwks)?, &[]);
    }
    google.write_key_file(&dir.join("key.json"));
    let about = json!({
        "sts_audience": google.sts_audience(),
        "url": google.url(),
        "service_account": google.service_account_email(),
        "project_id": google.project_id(),
        "token_lifetime_seconds": token_lifetime.as_secs(),
    });
    let banner = format!("Google emulator on {} as {}", google.url(), google.service_account_email());
    serve_alone(&dir, "google.json", about, banner).await
}

async fn serve(
    dir: PathBuf,
    token_lifetime: Duration,
    namespace: &str,
    kube_token: Option<&str>,
    google: Google,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let kube = match kube_token {
        Some(t) => KubeApi::start_with_token(t).await,
        None => KubeApi::start().await,
    };
    // The namespaces the README's examples write into, so that they work as
    // printed against the emulator; plus the kubeconfig's own.
    for ns in ["ci", "gitpod", "apps", namespace] {
        if kube.namespace(ns).is_none() {
            kube.create_namespace(ns, &[]);
        }
    }
    google.set_token_lifetime(token_lifetime);
    let kubeconfig = dir.join("kubeconfig");
    let key = dir.join("key.json");
    let adc = dir.join("adc.json");
    kube.write_kubeconfig(&kubeconfig, namespace);
    google.write_key_file(&key);
    std::fs::write(&adc, google.authorized_user_json())?;
    println!("# Kubernetes API emulator: {}", kube.url());
    println!(
        "# Google emulator:         {} (token endpoint {}, metadata server, STS /v1/token, IAM Credentials)",
        google.url(),
        google.token_uri()
    );
    println!("# Service account:         {}", google.service_account_email());
    println!("# STS audience:            {}", google.sts_audience());
    println!("# STS endpoint:            {}", google.sts_uri());
    println!("# IAM Credentials:         {}", google.iam_credentials_uri());
    println!("# Token lifetime:          {}", humantime::format_duration(token_lifetime));
    // AWS's endpoints, by the variables the AWS SDKs and regcred read, and
    // the emulator's IAM user's static key (no IRSA file to point at here).
    let aws = Aws::start().await;
    let (key_id, secret) = aws.static_key();
    println!("# AWS emulator:            {} (ECR, ECR Public, STS, IMDSv2, Pod Identity /v1/credentials)", aws.url());
    for var in [
        "AWS_ENDPOINT_URL_ECR",
        "AWS_ENDPOINT_URL_ECR_PUBLIC",
        "AWS_ENDPOINT_URL_STS",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    ] {
        println!("export {var}={}", aws.url());
    }
    println!("export AWS_ACCESS_KEY_ID={key_id} AWS_SECRET_ACCESS_KEY={secret}");
    println!("export KUBECONFIG={}", kubeconfig.display());
    println!("export GCE_METADATA_HOST={}", google.metadata_host());
    println!("# Service-account key (--key-file or GOOGLE_APPLICATION_CREDENTIALS): {}", key.display());
    println!("# authorized_user credentials: {}", adc.display());
    println!("# Serving; Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    eprintln!("regcred-testkit: stopping");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn regions_and_login_servers_are_checked_when_parsed() {
        assert!(super::region("us-east-1").is_ok() && super::region("ap-southeast-2").is_ok());
        assert!(super::region("us-gov-west-1").is_ok());
        for bad in ["", "us-east", "US-EAST-1", "us-east-1.", "us--1"] {
            assert!(super::region(bad).is_err(), "{bad}");
        }
        assert!(super::login_server("regcrednode.azurecr.io").is_ok());
        for bad in ["node.azurecr.io", "Regcred.azurecr.io", "regcred-node.azurecr.io", "regcrednode.azurecr.cn"] {
            assert!(super::login_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_registry_front_needs_its_certificate_key_and_backend() {
        use clap::Parser as _;
        let base = ["regcred-testkit", "aws", "--dir", "/tmp/x"];
        let front = ["--registry-front", "127.0.0.2:443"];
        let rest =
            ["--registry-cert", "c.pem", "--registry-key", "k.pem", "--registry-backend", "http://127.0.0.1:5443"];
        assert!(super::Cli::try_parse_from(base).is_ok());
        assert!(super::Cli::try_parse_from(base.iter().chain(&front).chain(&rest)).is_ok());
        assert!(super::Cli::try_parse_from(base.iter().chain(&front)).is_err(), "a front without a certificate");
        assert!(super::Cli::try_parse_from(base.iter().chain(&rest)).is_err(), "a certificate without a front");
        let bad_backend = ["--registry-backend", "https://127.0.0.1:5443"];
        let args: Vec<&str> = base.iter().chain(&front).chain(&rest[..4]).chain(&bad_backend).copied().collect();
        assert!(super::Cli::try_parse_from(args).is_err(), "an https backend");
    }
}
