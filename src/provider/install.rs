//! `regcred install-credential-provider`: puts the credential provider on a
//! node, from a DaemonSet whose image holds nothing but regcred.
//!
//! It copies its own executable to `BIN_DIR/regcred` and writes the
//! kubelet's `CredentialProviderConfig` ([`kubelet::config`]), both
//! atomically (a reader, the kubelet included, sees the old file or the new
//! one), then checks that the copy runs and accepts the provider's flags by
//! running it with `--dry-run`. Then it stays, putting the files back if they
//! are removed or changed, so the DaemonSet's pod stays Running, until
//! SIGTERM.
//!
//! It runs as root with the node's directories mounted, so its paths are
//! taken literally: absolute, without `..`, and checked before anything is
//! written. A symbolic link as the bin dir, or where a file goes, is
//! refused: in a container it resolves inside the container, not on the
//! node the kubelet reads.

use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::kubelet::{self, Identity, PROVIDER_NAME};
use super::PoolProvider;
use crate::atomic_write::{write_atomically, WriteOutcome};
use crate::schedule::parse_duration;
use crate::telemetry::LogFormat;

/// Flags of `install-credential-provider`.
#[derive(Clone, Debug, clap::Args)]
pub struct InstallArgs {
    /// The kubelet's --image-credential-provider-bin-dir (a hostPath volume
    /// in a DaemonSet): regcred copies itself to DIR/regcred.
    #[arg(long, env = "REGCRED_BIN_DIR", value_name = "DIR")]
    pub bin_dir: PathBuf,

    /// The kubelet's --image-credential-provider-config: regcred writes its
    /// CredentialProviderConfig there (JSON, which the kubelet reads like YAML).
    /// The directory must exist.
    #[arg(long, env = "REGCRED_PROVIDER_CONFIG", value_name = "FILE")]
    pub config: PathBuf,

    /// Pod identity: the workload identity pool provider that pods'
    /// ServiceAccount tokens are exchanged at
    /// (//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER);
    /// the kubelet asks for tokens with audience `https:` + this. Without it,
    /// node identity: pulls use the node's credentials.
    #[arg(long, env = "REGCRED_WORKLOAD_IDENTITY_PROVIDER", value_name = "RESOURCE")]
    pub workload_identity_provider: Option<PoolProvider>,

    /// Also send Amazon ECR images (*.dkr.ecr.*.amazonaws.com[.cn],
    /// *.dkr.ecr-fips.*.amazonaws.com, public.ecr.aws) to regcred, answered
    /// with the node's AWS identity (IMDS, or AWS_* variables in the
    /// kubelet's config). Node identity only: the installer writes per-pod identity for
    /// Google alone so far.
    #[arg(long, env = "REGCRED_MATCH_ECR", conflicts_with = "workload_identity_provider")]
    pub match_ecr: bool,

    /// Also send Azure Container Registry images (*.azurecr.io, *.azurecr.cn,
    /// *.azurecr.us) to regcred, answered with the node's Azure identity (the
    /// kubelet identity through IMDS, or AZURE_* variables in the kubelet's
    /// config). Node identity only: the installer writes per-pod identity for
    /// Google alone so far.
    #[arg(long, env = "REGCRED_MATCH_ACR", conflicts_with = "workload_identity_provider")]
    pub match_acr: bool,

    /// Check the installed files this often and put them back when they are
    /// missing or changed; 0 never checks again.
    #[arg(long, env = "REGCRED_RECHECK_INTERVAL", value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub recheck_interval: Duration,

    /// Exit 0 once installed instead of staying (an init container, or a
    /// node's bootstrap script).
    #[arg(long, env = "REGCRED_EXIT_AFTER_INSTALL")]
    pub exit_after_install: bool,

    /// Check the flags, including PROVIDER_ARGS (with `regcred
    /// credential-provider PROVIDER_ARGS --dry-run`), and exit without
    /// writing anything.
    #[arg(long, env = "REGCRED_DRY_RUN")]
    pub dry_run: bool,

    /// Log line format.
    #[arg(long, env = "REGCRED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Further flags of `regcred credential-provider`, after `--`, written
    /// into the config's `args` as given: for node identity a credentials file
    /// on the node (--key-file=/etc/kubernetes/regcred/key.json),
    /// --impersonate, --registry, endpoints.
    #[arg(last = true, value_name = "PROVIDER_ARGS")]
    pub provider_args: Vec<String>,
}

/// Why the provider could not be installed. Messages name the path and
/// what to change.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("--{flag} {}: {problem}", path.display())]
    Path { flag: &'static str, path: PathBuf, problem: String },
    #[error("--recheck-interval must be 0 (never) or at least 1s")]
    RecheckInterval,
    #[error("cannot read regcred's own executable to copy it: {0}")]
    OwnExecutable(io::Error),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("the installed {} does not run: {source}; is {} mounted noexec on the node?", path.display(), path.parent().unwrap_or(Path::new("/")).display())]
    Run { path: PathBuf, source: io::Error },
    #[error("the credential provider's flags are refused ({command}): {message}")]
    ProviderArgs { command: String, message: String },
}

impl InstallError {
    /// 2 when a flag, a path or its permissions must change; 1 when the
    /// node's disk failed.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            InstallError::OwnExecutable(_) | InstallError::Write { .. } => 1,
            _ => 2,
        }
    }
}

/// What one pass did to each file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Installed {
    pub(crate) binary: WriteOutcome,
    pub(crate) config: WriteOutcome,
}

/// The validated settings.
#[derive(Debug)]
struct Plan {
    binary: PathBuf,
    config_path: PathBuf,
    config: Vec<u8>,
    /// `credential-provider` and its flags, as the kubelet will run them.
    provider_args: Vec<String>,
}

impl Plan {
    fn new(args: &InstallArgs) -> Result<Plan, InstallError> {
        let path_error = |flag, path: &Path, problem: &str| InstallError::Path {
            flag,
            path: path.to_path_buf(),
            problem: problem.to_string(),
        };
        let has_parent = |p: &Path| p.components().any(|c| c == Component::ParentDir);
        if !args.bin_dir.is_absolute() {
            return Err(path_error("bin-dir", &args.bin_dir, "expected an absolute path, as the kubelet's flag takes"));
        }
        if has_parent(&args.bin_dir) {
            return Err(path_error(
                "bin-dir",
                &args.bin_dir,
                "expected a path without `..`: give the directory itself",
            ));
        }
        if !args.config.is_absolute() || args.config.file_name().is_none() {
            return Err(path_error("config", &args.config, "expected the absolute path of a file"));
        }
        if has_parent(&args.config) {
            return Err(path_error("config", &args.config, "expected a path without `..`: give the file itself"));
        }
        if !args.recheck_interval.is_zero() && args.recheck_interval < Duration::from_secs(1) {
            return Err(InstallError::RecheckInterval);
        }
        let identity = match &args.workload_identity_provider {
            None => Identity::Node,
            Some(p) => Identity::Pod { pool_provider: p.clone() },
        };
        let mut config = kubelet::config(&identity, &args.provider_args);
        if args.match_ecr {
            config.providers[0].match_images.extend_from_slice(super::ECR_PATTERNS);
        }
        if args.match_acr {
            config.providers[0].match_images.extend_from_slice(super::ACR_PATTERNS);
        }
        let provider_args = config.providers[0].args.clone();
        Ok(Plan {
            binary: args.bin_dir.join(PROVIDER_NAME),
            config_path: args.config.clone(),
            config: kubelet::to_json(&config),
            provider_args,
        })
    }

    /// One pass: the paths, the binary, the check that it runs with the
    /// config's flags, then the config, so that the kubelet never finds a
    /// config naming a binary that is not there.
    fn install(&self) -> Result<Installed, InstallError> {
        self.check_paths()?;
        let own = own_executable().map_err(InstallError::OwnExecutable)?;
        let binary = self.write("bin-dir", &self.binary, 0o755, &own)?;
        check_provider_args(&self.binary, &self.provider_args)?;
        let config = self.write("config", &self.config_path, 0o644, &self.config)?;
        Ok(Installed { binary, config })
    }

    /// Before anything is written: each file's directory exists and is a
    /// directory (the bin dir not through a symbolic link), and neither file
    /// is a directory or a symbolic link.
    fn check_paths(&self) -> Result<(), InstallError> {
        for (flag, path) in [("bin-dir", &self.binary), ("config", &self.config_path)] {
            let dir = path.parent().unwrap_or(Path::new("/"));
            let named = if flag == "bin-dir" { dir } else { path };
            let problem = |p: String| Err(InstallError::Path { flag, path: named.to_path_buf(), problem: p });
            let what = if flag == "bin-dir" { String::new() } else { format!("the directory {} ", dir.display()) };
            match std::fs::symlink_metadata(dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return problem(format!(
                        "{what}does not exist on this node; create it, or mount the host directory there (a hostPath volume)"
                    ))
                }
                Err(e) => return problem(format!("cannot read {}: {e}", dir.display())),
                Ok(m) if m.file_type().is_symlink() && flag == "bin-dir" => {
                    return problem("is a symbolic link; give the directory it points to, as the kubelet's --image-credential-provider-bin-dir names it".into())
                }
                Ok(_) if !dir.is_dir() => return problem(format!("{} is not a directory", dir.display())),
                Ok(_) => {}
            }
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.is_dir() => {
                    return problem(format!("{} is a directory; remove it, or name a file", path.display()))
                }
                Ok(m) if m.file_type().is_symlink() => {
                    return problem(format!(
                        "{} is a symbolic link; remove it (the installer writes a regular file there)",
                        path.display()
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn write(&self, flag: &'static str, path: &Path, mode: u32, bytes: &[u8]) -> Result<WriteOutcome, InstallError> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let named = if flag == "bin-dir" { dir } else { path };
        let problem = |p: String| InstallError::Path { flag, path: named.to_path_buf(), problem: p };
        write_atomically(path, mode, bytes).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => problem(format!(
                "cannot write {}: {e}; the installer needs write access to {} (root, and a read-write hostPath mount)",
                path.display(),
                dir.display()
            )),
            io::ErrorKind::IsADirectory => {
                problem(format!("{} is a directory; remove it, or name a file", path.display()))
            }
            _ => InstallError::Write { path: path.to_path_buf(), source: e },
        })
    }
}

/// This process's executable. `/proc/self/exe` is it even if its file was
/// replaced since it started.
fn own_executable() -> io::Result<Vec<u8>> {
    std::fs::read("/proc/self/exe").or_else(|_| std::fs::read(std::env::current_exe()?))
}

/// Runs `binary PROVIDER_ARGS --dry-run` with an empty environment: the
/// flags the kubelet will pass must be ones regcred accepts, and the copy on
/// the node must run at all.
fn check_provider_args(binary: &Path, provider_args: &[String]) -> Result<(), InstallError> {
    let out = std::process::Command::new(binary)
        .args(provider_args)
        .arg("--dry-run")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| InstallError::Run { path: binary.to_path_buf(), source })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no message");
    Err(InstallError::ProviderArgs {
        command: format!("regcred {}", provider_args.join(" ")),
        message: last.strip_prefix("regcred: error: ").unwrap_or(last).to_string(),
    })
}

fn describe(outcome: WriteOutcome) -> &'static str {
    match outcome {
        WriteOutcome::Created => "created",
        WriteOutcome::Updated => "updated",
        WriteOutcome::Unchanged => "unchanged",
    }
}

/// Installs, then keeps the files in place until `shutdown` flips (or
/// returns at once with `--exit-after-install`).
pub(crate) async fn run(args: InstallArgs, mut shutdown: watch::Receiver<bool>) -> Result<(), InstallError> {
    let plan = Plan::new(&args)?;
    if args.dry_run {
        let own = std::env::current_exe().map_err(InstallError::OwnExecutable)?;
        check_provider_args(&own, &plan.provider_args)?;
        println!("regcred: the flags and environment are valid; nothing was done (--dry-run)");
        return Ok(());
    }
    // A pass takes milliseconds and nothing else runs in this process but
    // the signal handler: no need for a blocking thread.
    let done = plan.install()?;
    info!(
        binary = %plan.binary.display(),
        binary_outcome = describe(done.binary),
        config = %plan.config_path.display(),
        config_outcome = describe(done.config),
        "credential provider installed; the kubelet needs --image-credential-provider-bin-dir={} --image-credential-provider-config={}",
        args.bin_dir.display(),
        plan.config_path.display(),
    );
    if args.exit_after_install {
        return Ok(());
    }
    loop {
        let recheck = async {
            if args.recheck_interval.is_zero() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(args.recheck_interval).await;
        };
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            () = recheck => {}
        }
        let again = plan.install()?;
        if again != (Installed { binary: WriteOutcome::Unchanged, config: WriteOutcome::Unchanged }) {
            warn!(
                binary = describe(again.binary),
                config = describe(again.config),
                "the installed files were missing or changed; put them back"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: InstallArgs,
    }

    fn plan(argv: &[&str]) -> Result<Plan, InstallError> {
        Plan::new(&Cli::try_parse_from([&["x"], argv].concat()).unwrap().args)
    }

    #[test]
    fn flags_become_the_config_the_kubelet_reads() {
        let p = plan(&["--bin-dir", "/b", "--config", "/c/p.json", "--", "--key-file=/k.json"]).unwrap();
        assert_eq!(p.binary, PathBuf::from("/b/regcred"));
        assert_eq!(p.provider_args, ["credential-provider", "--key-file=/k.json"]);
        let v: serde_json::Value = serde_json::from_slice(&p.config).unwrap();
        assert_eq!(v["providers"][0]["args"], serde_json::json!(p.provider_args));
        assert!(v["providers"][0].get("tokenAttributes").is_none());

        let pool = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kubelet";
        let p = plan(&["--bin-dir", "/b", "--config", "/c", "--workload-identity-provider", pool]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&p.config).unwrap();
        assert_eq!(v["providers"][0]["tokenAttributes"]["serviceAccountTokenAudience"], format!("https:{pool}"));
    }

    #[test]
    fn ecr_images_are_matched_only_when_asked_and_only_for_node_identity() {
        let images = |argv: &[&str]| {
            let p = plan(&[&["--bin-dir", "/b", "--config", "/c"], argv].concat()).unwrap();
            serde_json::from_slice::<serde_json::Value>(&p.config).unwrap()["providers"][0]["matchImages"].clone()
        };
        assert_eq!(images(&[]), serde_json::json!(["gcr.io", "*.gcr.io", "*-docker.pkg.dev"]));
        let with_ecr = images(&["--match-ecr"]);
        assert_eq!(with_ecr[3], "*.dkr.ecr.*.amazonaws.com");
        assert_eq!(with_ecr.as_array().unwrap().last().unwrap(), "public.ecr.aws");
        let pool = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kubelet";
        let refused = Cli::try_parse_from([
            "x",
            "--bin-dir",
            "/b",
            "--config",
            "/c",
            "--match-ecr",
            "--workload-identity-provider",
            pool,
        ]);
        assert!(refused.is_err());
    }

    #[test]
    fn acr_images_are_matched_only_when_asked_and_only_for_node_identity() {
        let images = |argv: &[&str]| {
            let p = plan(&[&["--bin-dir", "/b", "--config", "/c"], argv].concat()).unwrap();
            serde_json::from_slice::<serde_json::Value>(&p.config).unwrap()["providers"][0]["matchImages"].clone()
        };
        let google = serde_json::json!(["gcr.io", "*.gcr.io", "*-docker.pkg.dev"]);
        assert_eq!(
            images(&["--match-acr"]),
            serde_json::json!([google[0], google[1], google[2], "*.azurecr.io", "*.azurecr.cn", "*.azurecr.us"])
        );
        let both = images(&["--match-ecr", "--match-acr"]);
        assert_eq!(both.as_array().unwrap().len(), 3 + 4 + 3);
        assert_eq!(both.as_array().unwrap().last().unwrap(), "*.azurecr.us");
        let pool = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kubelet";
        let refused = Cli::try_parse_from([
            "x",
            "--bin-dir",
            "/b",
            "--config",
            "/c",
            "--match-acr",
            "--workload-identity-provider",
            pool,
        ]);
        assert!(refused.is_err());
    }

    #[test]
    fn relative_paths_dot_dots_and_tiny_intervals_are_refused() {
        let err = |argv: &[&str]| plan(argv).unwrap_err();
        assert!(matches!(err(&["--bin-dir", "bin", "--config", "/c"]), InstallError::Path { flag: "bin-dir", .. }));
        assert!(matches!(err(&["--bin-dir", "/b", "--config", "c.json"]), InstallError::Path { flag: "config", .. }));
        let e = err(&["--bin-dir", "/b/../etc", "--config", "/c"]).to_string();
        assert_eq!(e, "--bin-dir /b/../etc: expected a path without `..`: give the directory itself");
        let e = err(&["--bin-dir", "/b", "--config", "/etc/kubernetes/../../root/x"]).to_string();
        assert!(e.starts_with("--config /etc/kubernetes/../../root/x: expected a path without `..`"), "{e}");
        assert!(matches!(
            err(&["--bin-dir", "/b", "--config", "/c", "--recheck-interval", "10ms"]),
            InstallError::RecheckInterval
        ));
        assert!(plan(&["--bin-dir", "/b", "--config", "/c", "--recheck-interval", "0"]).is_ok());
        assert_eq!(err(&["--bin-dir", "b", "--config", "/c"]).exit_code(), 2);
    }
}
