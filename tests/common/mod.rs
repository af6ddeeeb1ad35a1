//! Shared set-up for the integration tests: the test kit's emulators (or, for
//! Kubernetes, a real API server: see [`backend`]), a scratch directory with a
//! kubeconfig and a key file, and a way to run the real `regcred` binary
//! against them with a clean environment.
#![allow(dead_code)]

pub mod backend;
pub mod e2e;
pub mod node;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use regcred_testkit::{Google, KubeApi};
use serde_json::Value;
use tokio::process::{Child, Command};

pub use backend::Kube;

pub const BIN: &str = env!("CARGO_BIN_EXE_regcred");

pub struct Kit {
    /// What the test does to Kubernetes, on either backend.
    pub kube: Kube,
    pub google: Google,
    pub dir: tempfile::TempDir,
    /// The kubeconfig's namespace, where regcred writes by default:
    /// `default` on the emulator, a fresh one on a real server.
    pub namespace: String,
    /// What makes this kit's names its own on a real server, where other
    /// tests (and earlier runs) share the namespaces and labels.
    suffix: String,
}

impl Kit {
    /// A kit on the Kubernetes backend the environment chooses: the
    /// emulator, or the real API server of `REGCRED_E2E_DIR`.
    pub async fn start() -> Kit {
        match backend::real_server() {
            Some(path) => Kit::with(Kube::server(&path).await).await,
            None => Kit::start_emulator().await,
        }
    }

    /// A kit on the emulator whatever the environment says, for tests about
    /// the emulator's fault injection and request log. In the files that
    /// also run on a real server such tests live in a module
    /// `emulator_only`, which that pass leaves out (`--skip emulator_only::`):
    /// the runner reports them as filtered out there, not as passed.
    pub async fn start_emulator() -> Kit {
        Kit::with(Kube::emulator().await).await
    }

    async fn with(kube: Kube) -> Kit {
        let suffix = if kube.is_real() { unique_suffix() } else { String::new() };
        let namespace = format!("default{suffix}");
        if kube.is_real() {
            kube.create_namespace(&namespace, &[]).await;
        }
        let google = Google::start().await;
        let dir = tempfile::tempdir().unwrap();
        kube.write_kubeconfig(&dir.path().join("kubeconfig"), &namespace);
        google.write_key_file(&dir.path().join("key.json"));
        Kit { kube, google, dir, namespace, suffix }
    }

    /// The emulator behind this kit (fault injection, the request log,
    /// compaction). Panics on a real server: such a test starts its kit with
    /// [`Kit::start_emulator`].
    pub fn emulator(&self) -> &KubeApi {
        self.on_emulator().expect("this test needs the emulator: start it with Kit::start_emulator")
    }

    /// The emulator, if the kit runs on it: for checks only it can make.
    pub fn on_emulator(&self) -> Option<&KubeApi> {
        match &self.kube {
            Kube::Emulator(emulator) => Some(emulator),
            Kube::Server { .. } => None,
        }
    }

    /// `base` on the emulator; on a real server, a name no other test uses
    /// (for namespaces, which stay taken after their deletion, and for the
    /// label values namespace selectors look for).
    pub fn name(&self, base: &str) -> String {
        format!("{base}{}", self.suffix)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `regcred ARGS` with only the kit in reach: no inherited Google or
    /// Kubernetes settings from the machine running the tests.
    pub fn command(&self, args: &[&str]) -> Command {
        isolated(args, self.dir.path(), &self.google)
    }

    /// `regcred SUBCOMMAND --key-file KEY ARGS`: the kit's service-account key.
    pub fn keyed(&self, subcommand: &str, args: &[&str]) -> Command {
        let key = self.key_file();
        let mut all = vec![subcommand, "--key-file", &key];
        all.extend_from_slice(args);
        self.command(&all)
    }

    /// `regcred ARGS` with these variables set (a cloud emulator's
    /// endpoints, a test's identity).
    pub fn command_with<V: AsRef<std::ffi::OsStr>>(&self, args: &[&str], env: &[(&str, V)]) -> Command {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs to completion with a deadline.
    pub async fn run(&self, args: &[&str]) -> Output {
        finish(self.command(args).spawn().unwrap()).await
    }

    /// `regcred once --key-file KEY ARGS`, the shape most tests need.
    pub async fn once(&self, args: &[&str]) -> Output {
        finish(self.keyed("once", args).spawn().unwrap()).await
    }

    /// Starts `regcred run --key-file KEY ARGS` in the background.
    pub fn daemon(&self, args: &[&str]) -> Child {
        self.keyed("run", args).spawn().unwrap()
    }

    pub fn key_file(&self) -> String {
        self.path("key.json").display().to_string()
    }

    /// The auths document stored in a Secret under `key`.
    pub async fn secret_doc(&self, ns: &str, name: &str, key: &str) -> Option<Value> {
        let secret = self.kube.secret(ns, name).await?;
        let b64 = secret["data"][key].as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    /// Every access token the kit has issued.
    pub fn issued(&self) -> Vec<String> {
        self.google.issued_tokens().into_iter().map(|t| t.access_token).collect()
    }
}

/// `-r<pid>-<n>-<time>`: unique among this run's kits and, by the time part,
/// against earlier runs on the same server.
fn unique_suffix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    format!("-r{}-{}-{:x}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), millis % 0x100000)
}

#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `regcred ARGS` with a clean environment: `home` as HOME, its `kubeconfig`
/// as KUBECONFIG, `google`'s metadata server, PATH, and nothing else from the
/// machine running the tests; output piped, killed when dropped.
pub fn isolated(args: &[&str], home: &Path, google: &Google) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("KUBECONFIG", home.join("kubeconfig"))
        .env("GCE_METADATA_HOST", google.metadata_host())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Waits (at most 60 s) for a regcred process to exit; what it printed.
pub async fn finish(child: Child) -> Output {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("regcred finished within 60s")
        .unwrap();
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The password of the `gcr.io` entry.
pub fn password(doc: &Value) -> String {
    doc["auths"]["gcr.io"]["password"].as_str().unwrap_or_default().to_string()
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub async fn wait_for<T>(timeout: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGTERM and waits for the exit code.
pub async fn terminate(mut child: Child) -> (Option<i32>, String) {
    let pid = child.id().expect("running") as i32;
    // SAFETY: kill(2) on a child process we own; no memory is involved.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("exits promptly").unwrap();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt as _;
        let _ = e.read_to_string(&mut stderr).await;
    }
    (status.code(), stderr)
}

pub fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// A free TCP port on 127.0.0.1 for the admin server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET http://127.0.0.1:PORT/PATH with a tiny HTTP/1.0 client: status and body.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await.ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}
