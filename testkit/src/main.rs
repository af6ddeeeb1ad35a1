//! `regcred-testkit`: run the emulators by hand.
//!
//! `serve` starts the Kubernetes, Google and AWS emulators and prints the
//! environment a regcred (or curl) session needs to use them. `google`
//! starts the Google emulator alone, where a node's pods and containerd
//! expect Google (testkit/control-plane/node runs it). `azure` starts the
//! Azure emulator (Entra ID, IMDS, an ACR token server) with one identity
//! allowed to pull. The demo and the
//! benchmark are `xtask` commands (testkit/xtask).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use regcred_testkit::{Aws, Azure, Google, KubeApi};

#[derive(Parser)]
#[command(
    name = "regcred-testkit",
    version,
    about = "Local emulators of the Kubernetes API and Google's token endpoints, for trying and testing regcred"
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
    },
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
    match cli.command {
        Command::Serve { dir, token_lifetime, namespace, kube_token, subject_token, allow_impersonation } => {
            init_logging();
            let google = Google::start().await;
            for t in &subject_token {
                google.accept_subject_token(t);
            }
            for email in &allow_impersonation {
                google.allow_impersonation(email);
            }
            exit(serve(dir, token_lifetime, &namespace, kube_token.as_deref(), google).await)
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
            init_logging();
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
        } => {
            init_logging();
            let oidc = trust_oidc_issuer.zip(oidc_jwks);
            let identities = AzureIdentities { federated: federated_service_account, system: system_identity };
            exit(azure_alone(listen, dir, refresh_token_lifetime, oidc, identities).await)
        }
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
) -> std::io::Result<()> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    std::fs::create_dir_all(&dir)?;
    let azure =
        Azure::start_on(listen).await.map_err(|e| std::io::Error::new(e.kind(), format!("listen on {listen}: {e}")))?;
    azure.set_refresh_token_lifetime(refresh_token_lifetime);
    let issuer = match oidc {
        Some((issuer, jwks)) => {
            let keys: serde_json::Value = serde_json::from_slice(&std::fs::read(&jwks)?)
                .map_err(|e| invalid(format!("{}: not a JSON Web Key Set: {e}", jwks.display())))?;
            azure.trust_issuer(&issuer, &keys);
            issuer
        }
        None => azure.cluster_issuer(),
    };
    let app = azure.create_app();
    azure.allow_pull(&app);
    for sa in &identities.federated {
        let (namespace, name) = sa
            .split_once(':')
            .ok_or_else(|| invalid(format!("--federated-service-account {sa:?}: expected NAMESPACE:NAME")))?;
        azure.add_federated_credential(&app, &issuer, &format!("system:serviceaccount:{namespace}:{name}"));
    }
    let system = identities.system.then(|| azure.enable_system_identity());
    if let Some(id) = &system {
        azure.allow_pull(id);
    }
    let about = serde_json::json!({
        "url": azure.url(),
        "tenant_id": azure.tenant_id(),
        "client_id": app,
        "system_identity_client_id": system,
        "login_server": azure.login_server(),
        "token_uri": azure.token_uri(),
        "imds_endpoint": azure.imds_endpoint(),
        "oidc_issuer": issuer,
    });
    std::fs::write(dir.join("azure.json"), about.to_string())?;
    eprintln!(
        "regcred-testkit: Azure emulator on {} for {} (tenant {})",
        azure.url(),
        azure.login_server(),
        azure.tenant_id()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    eprintln!("regcred-testkit: stopping");
    Ok(())
}

fn exit(result: std::io::Result<()>) -> std::process::ExitCode {
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
) -> std::io::Result<()> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    std::fs::create_dir_all(&dir)?;
    let google = Google::start_on(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("listen on {listen}: {e}")))?;
    google.set_token_lifetime(token_lifetime);
    if let Some((key, cert, issuer)) = registry {
        google
            .sign_registry_tokens(&std::fs::read_to_string(key)?, &std::fs::read_to_string(cert)?, &issuer)
            .map_err(invalid)?;
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
        let jwks: serde_json::Value = serde_json::from_slice(&std::fs::read(&jwks)?)
            .map_err(|e| invalid(format!("{}: not a JSON Web Key Set: {e}", jwks.display())))?;
        google.trust_oidc_issuer(&issuer, &jwks, &[]);
    }
    google.write_key_file(&dir.join("key.json"));
    let about = serde_json::json!({
        "sts_audience": google.sts_audience(),
        "url": google.url(),
        "service_account": google.service_account_email(),
        "project_id": google.project_id(),
        "token_lifetime_seconds": token_lifetime.as_secs(),
    });
    std::fs::write(dir.join("google.json"), about.to_string())?;
    eprintln!("regcred-testkit: Google emulator on {} as {}", google.url(), google.service_account_email());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    eprintln!("regcred-testkit: stopping");
    Ok(())
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
