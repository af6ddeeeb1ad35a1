//! `regcred-testkit`: run the emulators by hand.
//!
//! * `serve` starts the Kubernetes and Google emulators and prints the
//!   environment a regcred (or kubectl, or curl) session needs to use them.
//! * `demo` is a newcomer's first command: it starts the emulators, runs a
//!   real `regcred run` against them with short-lived tokens, and narrates each
//!   credential rotation as it lands in the Secret.
//! * `bench` measures the release `regcred` against the emulators (fan-out
//!   cycle time, requests per namespace, new-namespace latency, peak RSS,
//!   idle CPU) and prints a Markdown report.

mod bench;
mod demo;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use regcred_testkit::{Google, KubeApi};

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
    /// Start both emulators and serve until Ctrl-C.
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
    /// Run regcred against the emulators and show it keeping a Secret fresh.
    Demo {
        /// How long to let regcred run.
        #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Lifetime of the access tokens, short so that rotations happen quickly.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        token_lifetime: Duration,
        /// Keep the temporary directory (kubeconfig, key, regcred's log) afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// Benchmark the release regcred against the emulators; prints a Markdown report.
    Bench(bench::Options),
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("regcred_testkit=info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
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
            match serve(dir, token_lifetime, &namespace, kube_token.as_deref(), google).await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("regcred-testkit: {e}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Demo { duration, token_lifetime, keep } => demo::run(duration, token_lifetime, keep).await,
        Command::Bench(opts) => bench::run(opts).await,
    }
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
    if namespace != "default" {
        kube.create_namespace(namespace, &[]);
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
    println!("export KUBECONFIG={}", kubeconfig.display());
    println!("export GCE_METADATA_HOST={}", google.metadata_host());
    println!("# Service-account key (--key-file or GOOGLE_APPLICATION_CREDENTIALS): {}", key.display());
    println!("# authorized_user credentials: {}", adc.display());
    println!("# Serving; Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    eprintln!("regcred-testkit: stopping");
    Ok(())
}
