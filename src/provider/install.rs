//! `regcred install-credential-provider`: puts the credential provider on a
//! node, from a DaemonSet whose image holds nothing but regcred.
//!
//! It copies its own executable to `BIN_DIR/regcred`, hard-links it under
//! the name of every further entry of the kubelet's
//! `CredentialProviderConfig` (`regcred-ecr`, `regcred-acr`: the kubelet
//! runs each entry's `name` from its bin dir, and names are unique; see
//! [`kubelet`]), and writes that config ([`kubelet::config`]), all
//! atomically (a reader, the kubelet included, sees the old file or the new
//! one), then checks that each file runs and accepts its entry's flags by
//! running it with `--dry-run`. Then it stays, putting the files back if
//! they are removed or changed, so the DaemonSet's pod stays Running, until
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

use super::kubelet::{self, CloudIdentity, Clouds, Identity, TokenAudience, ACR_TOKEN_AUDIENCE, ECR_TOKEN_AUDIENCE};
use super::PoolProvider;
use crate::atomic_write::{link_atomically, write_atomically, WriteOutcome};
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

    /// Pod identity for Google's images: the workload identity pool provider
    /// that pods' ServiceAccount tokens are exchanged at
    /// (//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER);
    /// the kubelet asks for tokens with audience `https:` + this. Without it,
    /// node identity: pulls use the node's credentials.
    #[arg(long, env = "REGCRED_WORKLOAD_IDENTITY_PROVIDER", value_name = "RESOURCE")]
    pub workload_identity_provider: Option<PoolProvider>,

    /// Also send Amazon ECR images (*.dkr.ecr.*.amazonaws.com[.cn],
    /// *.dkr.ecr-fips.*.amazonaws.com, public.ecr.aws) to regcred, answered
    /// with the node's AWS identity (IMDS, or AWS_* variables in the
    /// kubelet's config). Beside --workload-identity-provider they get an
    /// entry of their own (regcred-ecr) that asks for no token.
    #[arg(long, env = "REGCRED_MATCH_ECR")]
    pub match_ecr: bool,

    /// Per-pod identity for Amazon ECR images: an entry (regcred-ecr) for
    /// which the kubelet hands regcred a token for the pod's ServiceAccount
    /// (audience --ecr-token-audience), exchanged at AWS STS
    /// (AssumeRoleWithWebIdentity) for the role its
    /// eks.amazonaws.com/ecr-role-arn annotation names, else its
    /// eks.amazonaws.com/role-arn. A pod whose ServiceAccount names no role
    /// gets no credential from regcred, never the node's.
    #[arg(long, env = "REGCRED_ECR_POD_IDENTITY", conflicts_with = "match_ecr")]
    pub ecr_pod_identity: bool,

    /// Audience of the pod tokens for --ecr-pod-identity: a client id of the
    /// cluster's IAM OIDC identity provider.
    #[arg(long, env = "REGCRED_ECR_TOKEN_AUDIENCE", value_name = "AUDIENCE", default_value = ECR_TOKEN_AUDIENCE, requires = "ecr_pod_identity", conflicts_with = "match_ecr")]
    pub ecr_token_audience: TokenAudience,

    /// Also send Azure Container Registry images (*.azurecr.io, *.azurecr.cn,
    /// *.azurecr.us) to regcred, answered with the node's Azure identity (the
    /// kubelet identity through IMDS, or AZURE_* variables in the kubelet's
    /// config). Beside --workload-identity-provider they get an entry of
    /// their own (regcred-acr) that asks for no token.
    #[arg(long, env = "REGCRED_MATCH_ACR")]
    pub match_acr: bool,

    /// Per-pod identity for Azure Container Registry images: an entry
    /// (regcred-acr) for which the kubelet hands regcred a token for the
    /// pod's ServiceAccount (audience --acr-token-audience), presented to
    /// Microsoft Entra ID as the federated credential of the identity its
    /// kubernetes.azure.com/acr-client-id annotation names, in the tenant
    /// its kubernetes.azure.com/acr-tenant-id names (else
    /// --azure-tenant-id after `--`). A pod whose ServiceAccount names no
    /// identity gets no credential from regcred, never the node's.
    #[arg(long, env = "REGCRED_ACR_POD_IDENTITY", conflicts_with = "match_acr")]
    pub acr_pod_identity: bool,

    /// Audience of the pod tokens for --acr-pod-identity: the audience the
    /// identities' federated credentials were created with (a sovereign
    /// cloud's, or a custom one).
    #[arg(long, env = "REGCRED_ACR_TOKEN_AUDIENCE", value_name = "AUDIENCE", default_value = ACR_TOKEN_AUDIENCE, requires = "acr_pod_identity", conflicts_with = "match_acr")]
    pub acr_token_audience: TokenAudience,

    /// Check the installed files this often and put them back when they are
    /// missing or changed; 0 never checks again.
    #[arg(long, env = "REGCRED_RECHECK_INTERVAL", value_name = "DURATION", default_value = "1m", value_parser = parse_duration)]
    pub recheck_interval: Duration,

    /// Exit 0 once installed instead of staying (an init container, or a
    /// node's bootstrap script).
    #[arg(long, env = "REGCRED_EXIT_AFTER_INSTALL")]
    pub exit_after_install: bool,

    /// Check the flags, including each entry's PROVIDER_ARGS (with `regcred
    /// credential-provider PROVIDER_ARGS --dry-run`), and exit without
    /// writing anything.
    #[arg(long, env = "REGCRED_DRY_RUN")]
    pub dry_run: bool,

    /// Log line format.
    #[arg(long, env = "REGCRED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Further flags of `regcred credential-provider`, after `--`, written
    /// into every entry's `args` as given: for node identity a credentials
    /// file on the node (--key-file=/etc/kubernetes/regcred/key.json),
    /// --impersonate, --registry, --azure-tenant-id, endpoints.
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Installed {
    /// Each file in the bin dir, in the config's order.
    pub(crate) binaries: Vec<WriteOutcome>,
    pub(crate) config: WriteOutcome,
}

impl Installed {
    /// Whether the pass found every file as it should be.
    fn unchanged(&self) -> bool {
        self.binaries.iter().chain([&self.config]).all(|o| *o == WriteOutcome::Unchanged)
    }
}

/// One file in the bin dir: an entry's `name`, run with its `args`.
#[derive(Debug)]
struct Binary {
    path: PathBuf,
    /// `credential-provider` and its flags, as the kubelet will run them.
    args: Vec<String>,
}

/// The validated settings.
#[derive(Debug)]
struct Plan {
    /// `regcred`: the copy of this executable.
    main: Binary,
    /// `regcred-ecr`, `regcred-acr`: hard links to `main`, one inode on the
    /// node's disk however many entries run it.
    links: Vec<Binary>,
    config_path: PathBuf,
    config: Vec<u8>,
}

/// A cloud's identity from its two flags, which clap keeps apart.
fn cloud_identity(node: bool, pod: bool, audience: &TokenAudience) -> Option<CloudIdentity> {
    match (node, pod) {
        (_, true) => Some(CloudIdentity::Pod(audience.clone())),
        (true, false) => Some(CloudIdentity::Node),
        (false, false) => None,
    }
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
        let clouds = Clouds {
            google: match &args.workload_identity_provider {
                None => Identity::Node,
                Some(p) => Identity::Pod { pool_provider: p.clone() },
            },
            ecr: cloud_identity(args.match_ecr, args.ecr_pod_identity, &args.ecr_token_audience),
            acr: cloud_identity(args.match_acr, args.acr_pod_identity, &args.acr_token_audience),
        };
        let config = kubelet::config(&clouds, &args.provider_args);
        let binary = |p: &kubelet::Provider| Binary { path: args.bin_dir.join(p.name.as_str()), args: p.args.clone() };
        Ok(Plan {
            main: binary(&config.google),
            links: config.others.iter().map(binary).collect(),
            config_path: args.config.clone(),
            config: kubelet::to_json(&config),
        })
    }

    /// `/DIR/regcred created, /DIR/regcred-ecr unchanged`: each binary and
    /// what a pass did to it, for the log.
    fn describe(&self, done: &Installed) -> String {
        let each = self.binaries().zip(&done.binaries);
        each.map(|(b, o)| format!("{} {}", b.path.display(), describe(*o))).collect::<Vec<_>>().join(", ")
    }

    /// Every file in the bin dir, `regcred` first.
    fn binaries(&self) -> impl Iterator<Item = &Binary> {
        std::iter::once(&self.main).chain(&self.links)
    }

    /// One pass: the paths, the binaries, the check that each runs with its
    /// entry's flags, then the config, so that the kubelet never finds a
    /// config naming a binary that is not there.
    fn install(&self) -> Result<Installed, InstallError> {
        self.check_paths()?;
        let own = own_executable().map_err(InstallError::OwnExecutable)?;
        let mut binaries = vec![self.write("bin-dir", &self.main.path, 0o755, &own)?];
        for link in &self.links {
            let outcome =
                link_atomically(&self.main.path, &link.path).map_err(|e| write_error("bin-dir", &link.path, e))?;
            binaries.push(outcome);
        }
        for binary in self.binaries() {
            check_provider_args(&binary.path, &binary.args)?;
        }
        let config = self.write("config", &self.config_path, 0o644, &self.config)?;
        Ok(Installed { binaries, config })
    }

    /// Before anything is written: each file's directory exists and is a
    /// directory (the bin dir not through a symbolic link), and no file is
    /// a directory or a symbolic link.
    fn check_paths(&self) -> Result<(), InstallError> {
        let binaries = self.binaries().map(|b| ("bin-dir", &b.path));
        for (flag, path) in binaries.chain([("config", &self.config_path)]) {
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
        write_atomically(path, mode, bytes).map_err(|e| write_error(flag, path, e))
    }
}

/// What a failed write of `path` (a file of `--flag`) tells the user: the
/// flag and what to change when it is the node's setup, else the disk's
/// error.
fn write_error(flag: &'static str, path: &Path, e: io::Error) -> InstallError {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let named = if flag == "bin-dir" { dir } else { path };
    let problem = |p: String| InstallError::Path { flag, path: named.to_path_buf(), problem: p };
    match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => problem(format!(
            "cannot write {}: {e}; the installer needs write access to {} (root, and a read-write hostPath mount)",
            path.display(),
            dir.display()
        )),
        io::ErrorKind::IsADirectory => problem(format!("{} is a directory; remove it, or name a file", path.display())),
        _ => InstallError::Write { path: path.to_path_buf(), source: e },
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
        for binary in plan.binaries() {
            check_provider_args(&own, &binary.args)?;
        }
        println!("regcred: the flags and environment are valid; nothing was done (--dry-run)");
        return Ok(());
    }
    // A pass takes milliseconds and nothing else runs in this process but
    // the signal handler: no need for a blocking thread.
    let done = plan.install()?;
    info!(
        binaries = plan.describe(&done),
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
        if !again.unchanged() {
            warn!(
                binaries = plan.describe(&again),
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

    const POOL: &str = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/kubelet";

    fn config(p: &Plan) -> serde_json::Value {
        serde_json::from_slice(&p.config).unwrap()
    }

    #[test]
    fn flags_become_the_config_the_kubelet_reads() {
        let p = plan(&["--bin-dir", "/b", "--config", "/c/p.json", "--", "--key-file=/k.json"]).unwrap();
        assert_eq!(p.main.path, PathBuf::from("/b/regcred"));
        assert_eq!(p.main.args, ["credential-provider", "--key-file=/k.json"]);
        assert!(p.links.is_empty());
        let v = config(&p);
        assert_eq!(v["providers"][0]["args"], serde_json::json!(p.main.args));
        assert!(v["providers"][0].get("tokenAttributes").is_none());

        let p = plan(&["--bin-dir", "/b", "--config", "/c", "--workload-identity-provider", POOL]).unwrap();
        let v = config(&p);
        assert_eq!(v["providers"][0]["tokenAttributes"]["serviceAccountTokenAudience"], format!("https:{POOL}"));
    }

    #[test]
    fn ecr_images_are_matched_only_when_asked() {
        let images = |argv: &[&str]| config(&plan(&[&["--bin-dir", "/b", "--config", "/c"], argv].concat()).unwrap());
        assert_eq!(
            images(&[])["providers"][0]["matchImages"],
            serde_json::json!(["gcr.io", "*.gcr.io", "*-docker.pkg.dev"])
        );
        let with_ecr = images(&["--match-ecr"])["providers"][0]["matchImages"].clone();
        assert_eq!(with_ecr[3], "*.dkr.ecr.*.amazonaws.com");
        assert_eq!(with_ecr.as_array().unwrap().last().unwrap(), "public.ecr.aws");
        // Beside Google's pod identity: an entry of its own, asking for no
        // token (the conflict between the two flags is lifted).
        let p =
            plan(&["--bin-dir", "/b", "--config", "/c", "--match-ecr", "--workload-identity-provider", POOL]).unwrap();
        let v = config(&p);
        assert_eq!(v["providers"][0]["matchImages"].as_array().unwrap().len(), 3, "Google's images alone");
        assert_eq!(v["providers"][1]["name"], "regcred-ecr");
        assert_eq!(v["providers"][1]["matchImages"][3], "public.ecr.aws");
        assert!(v["providers"][1].get("tokenAttributes").is_none(), "node identity: no token");
        assert_eq!(p.links.iter().map(|b| b.path.clone()).collect::<Vec<_>>(), [PathBuf::from("/b/regcred-ecr")]);
    }

    #[test]
    fn acr_images_are_matched_only_when_asked() {
        let images = |argv: &[&str]| {
            let p = plan(&[&["--bin-dir", "/b", "--config", "/c"], argv].concat()).unwrap();
            config(&p)["providers"][0]["matchImages"].clone()
        };
        let google = serde_json::json!(["gcr.io", "*.gcr.io", "*-docker.pkg.dev"]);
        assert_eq!(
            images(&["--match-acr"]),
            serde_json::json!([google[0], google[1], google[2], "*.azurecr.io", "*.azurecr.cn", "*.azurecr.us"])
        );
        let both = images(&["--match-ecr", "--match-acr"]);
        assert_eq!(both.as_array().unwrap().len(), 3 + 4 + 3);
        assert_eq!(both.as_array().unwrap().last().unwrap(), "*.azurecr.us");
        let p =
            plan(&["--bin-dir", "/b", "--config", "/c", "--match-acr", "--workload-identity-provider", POOL]).unwrap();
        let v = config(&p);
        assert_eq!(v["providers"][1]["name"], "regcred-acr");
        assert!(v["providers"][1].get("tokenAttributes").is_none());
    }

    #[test]
    fn each_clouds_pod_identity_is_an_entry_and_a_file_of_its_own() {
        let p = plan(&[
            "--bin-dir",
            "/b",
            "--config",
            "/c",
            "--workload-identity-provider",
            POOL,
            "--ecr-pod-identity",
            "--acr-pod-identity",
            "--",
            "--azure-tenant-id=contoso.onmicrosoft.com",
        ])
        .unwrap();
        let names: Vec<_> = p.binaries().map(|b| b.path.display().to_string()).collect();
        assert_eq!(names, ["/b/regcred", "/b/regcred-ecr", "/b/regcred-acr"]);
        let args: Vec<_> = p.binaries().map(|b| b.args.clone()).collect();
        assert_eq!(args[1], ["credential-provider", "--azure-tenant-id=contoso.onmicrosoft.com"]);
        assert_eq!(args[2], args[1], "the clouds' entries run the same flags; the image's host picks the cloud");
        let v = config(&p);
        let audiences: Vec<_> =
            (0..3).map(|i| v["providers"][i]["tokenAttributes"]["serviceAccountTokenAudience"].clone()).collect();
        assert_eq!(
            audiences,
            [format!("https:{POOL}"), "sts.amazonaws.com".into(), "api://AzureADTokenExchange".into()]
        );
        for (i, name) in ["regcred", "regcred-ecr", "regcred-acr"].into_iter().enumerate() {
            assert_eq!(v["providers"][i]["name"], name, "the entry's name is its file's");
        }

        // Each audience can be set, for a cloud whose exchange expects another.
        let p = plan(&[
            "--bin-dir",
            "/b",
            "--config",
            "/c",
            "--ecr-pod-identity",
            "--ecr-token-audience=sts.amazonaws.com.cn",
            "--acr-pod-identity",
            "--acr-token-audience",
            "api://AzureADTokenExchangeChina",
        ])
        .unwrap();
        let v = config(&p);
        assert!(v["providers"][0].get("tokenAttributes").is_none(), "Google's images stay node identity");
        assert_eq!(v["providers"][1]["tokenAttributes"]["serviceAccountTokenAudience"], "sts.amazonaws.com.cn");
        assert_eq!(
            v["providers"][2]["tokenAttributes"]["serviceAccountTokenAudience"],
            "api://AzureADTokenExchangeChina"
        );
    }

    /// One cloud, one identity: node and pod identity for the same images
    /// would let any pod pull with the node's identity when its own is
    /// refused (the kubelet tries every entry's credential). An audience
    /// without its cloud's pod identity would be ignored: refused too.
    #[test]
    fn contradictory_flags_are_usage_errors() {
        let base = ["x", "--bin-dir", "/b", "--config", "/c"];
        for (argv, needle) in [
            (&["--match-ecr", "--ecr-pod-identity"][..], "'--match-ecr' cannot be used with '--ecr-pod-identity'"),
            (&["--acr-pod-identity", "--match-acr"], "'--acr-pod-identity' cannot be used with '--match-acr'"),
            (&["--ecr-token-audience=sts.amazonaws.com"], "--ecr-pod-identity"),
            // clap requires no argument that conflicts with one given: the
            // audience conflicts with node identity itself.
            (&["--match-ecr", "--ecr-token-audience=x"], "cannot be used with"),
            (&["--match-acr", "--acr-token-audience=x"], "cannot be used with"),
            (&["--acr-token-audience=api://x", "--ecr-pod-identity"], "--acr-pod-identity"),
            (&["--ecr-pod-identity", "--ecr-token-audience="], "it is empty"),
            (&["--acr-pod-identity", "--acr-token-audience=api://a b"], "' ' is not allowed"),
        ] {
            let e = match Cli::try_parse_from([&base[..], argv].concat()) {
                Ok(_) => panic!("{argv:?} accepted"),
                Err(e) => e,
            };
            assert_eq!(e.exit_code(), 2, "{argv:?}");
            let message = e.to_string();
            assert!(message.contains(needle), "{argv:?}: {message}");
        }
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
