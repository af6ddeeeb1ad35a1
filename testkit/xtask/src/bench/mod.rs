//! `xtask bench`: how regcred's namespace fan-out scales.
//!
//! The benchmark runs the real (release) `regcred run --all-namespaces` at a
//! few cluster sizes, against the test kit's Kubernetes emulator (with a fixed
//! latency added to every request) or against a real API server
//! (`--kubeconfig`), and prints a Markdown report on stdout:
//!
//! * the duration of one fan-out cycle, read from regcred's own JSON log line
//!   (`"message":"fan-out cycle", "took":"…"`), for the first cycle (creates)
//!   and for rotation cycles (patches), which are what a running regcred does
//!   every token lifetime. Rotations are forced with short-lived tokens; the
//!   token minted for the last rotation lives an hour, so the process is idle
//!   afterwards;
//! * the Kubernetes requests one rotation costs per namespace, counted by the
//!   API server (the emulator's request log, the real server's audit log);
//! * at the largest size, how long a new namespace waits for its Secret, and
//!   the CPU regcred uses while idle;
//! * regcred's peak resident set (`VmHWM`), with fan-out and with a single
//!   `--secret`.
//!
//! Google's endpoints are always the test kit's emulator, inside this
//! process. The harness does nothing while a cycle runs (it waits on
//! regcred's log pipe), so the CPU this process uses during a cycle is the
//! emulators'; it is reported next to regcred's. Progress goes to stderr, the
//! report to stdout.

mod cluster;
mod proc;
mod process;
mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use regcred_testkit::Google;

use cluster::{Cluster, Counts};
use proc::{CpuSample, CpuUse};
use process::{Cycle, Regcred};
use report::fmt_dur;

const SECRET: &str = "gcr-pull";
/// The lifetime of the token minted for the last rotation: nothing is due for
/// an hour after it, so the idle window that follows is really idle.
const LONG_LIFETIME: Duration = Duration::from_secs(3600);
/// `--refresh-before`: at least half of the short lifetime, so that short
/// tokens are replaced at half-life, and well under `LONG_LIFETIME`.
const REFRESH_BEFORE: &str = "30m";

/// The command-line options of `bench`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Numbers of selected namespaces to measure a fan-out cycle at; the
    /// largest also gets the new-namespace and idle measurements.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000,10000")]
    pub sizes: Vec<usize>,
    /// Latency added to every request of both emulators.
    #[arg(long, default_value = "2ms", value_parser = humantime::parse_duration)]
    pub latency: Duration,
    /// Run against the API server of this admin kubeconfig instead of the Kubernetes emulator (Google stays
    /// the emulator). It must hold no namespaces but default and kube-*, as `testkit/control-plane/cluster up
    /// DIR` leaves it (DIR/kubeconfig).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// With --kubeconfig: the API server's JSON audit log, from which regcred's requests are counted
    /// [default: audit.log beside the kubeconfig].
    #[arg(long, value_name = "PATH", requires = "kubeconfig")]
    pub audit_log: Option<PathBuf>,
    /// The regcred binary to measure [default: $REGCRED_BIN, else `cargo build --release --bin regcred`].
    #[arg(long, value_name = "PATH")]
    pub regcred: Option<PathBuf>,
    /// regcred's --max-concurrent-writes.
    #[arg(long, default_value_t = 64)]
    pub max_concurrent_writes: usize,
    /// Rotation cycles to measure at each size after the first cycle (the median is reported).
    #[arg(long, default_value_t = 2)]
    pub rotations: usize,
    /// Namespaces to create one at a time at the largest size, timing each one's Secret.
    #[arg(long, default_value_t = 20)]
    pub new_namespaces: usize,
    /// Idle window over which regcred's CPU is measured (largest size and single Secret); 0s skips it.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub idle: Duration,
    /// Lifetime of the tokens that force rotations (replaced at half-life).
    #[arg(long, default_value = "6s", value_parser = humantime::parse_duration)]
    pub token_lifetime: Duration,
    /// Latency of the Google emulator (the token mint) [default: --latency].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub mint_latency: Option<Duration>,
    /// Pin regcred to CPU 0 and the emulators to the other CPUs.
    #[arg(long)]
    pub pin: bool,
    /// An extra argument for every regcred run (repeat; e.g. `--regcred-arg=--request-timeout=60s`).
    #[arg(long = "regcred-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub regcred_args: Vec<String>,
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

/// What the harness saw of one idle window.
struct Idle {
    cpu: CpuUse,
    requests: Counts,
    warnings: Vec<String>,
}

struct SizeResult {
    namespaces: usize,
    startup_to_first: Duration,
    first: Cycle,
    startup_requests: Counts,
    rotations: Vec<Cycle>,
    /// Requests from the end of the first cycle to the end of the last
    /// rotation (the waits for the refresh point, the mints, the cycles).
    rotation_requests: Counts,
    /// CPU from the mint's log line to the cycle's, in the last rotation.
    rotation_cpu: CpuUse,
    /// (VmHWM, VmRSS) after the first cycle, after the rotations, at the end.
    memory_after_first: (u64, u64),
    memory_after_rotations: (u64, u64),
    memory_at_end: (u64, u64),
    new_namespaces: Option<(Vec<Duration>, Counts)>,
    idle: Option<Idle>,
    warnings: Vec<String>,
}

struct SingleResult {
    peak_rss_kib: u64,
    idle: Option<Idle>,
    warnings: Vec<String>,
}

/// What every scenario needs.
struct Bench {
    opts: Options,
    bin: PathBuf,
    google: Google,
    cluster: Cluster,
}

pub async fn run(opts: Options) -> Result<(), String> {
    if opts.sizes.is_empty() || opts.sizes.contains(&0) {
        return Err("--sizes needs positive namespace counts".into());
    }
    if opts.rotations == 0 {
        return Err("--rotations must be at least 1".into());
    }
    if opts.token_lifetime < Duration::from_secs(2) {
        return Err("--token-lifetime must be at least 2s (the emulator issues whole seconds)".into());
    }
    let mut sizes = opts.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if opts.pin {
        if cpus < 2 {
            return Err("--pin needs at least 2 CPUs".into());
        }
        proc::pin_self(&(1..cpus).collect::<Vec<_>>()).map_err(|e| format!("cannot pin the harness: {e}"))?;
    }
    if cfg!(debug_assertions) {
        progress("warning: the harness (and so the emulator) is a debug build; use `cargo run --release`");
    }
    let cluster = match &opts.kubeconfig {
        Some(k) => Cluster::server(k, opts.audit_log.as_deref()).await?,
        None => Cluster::emulator(opts.latency).await,
    };
    let bin = match &opts.regcred {
        Some(p) => p.clone(),
        None => crate::regcred::locate(true, progress).await?,
    };
    if !bin.exists() {
        return Err(format!("no regcred binary at {}", bin.display()));
    }
    progress(&format!("regcred under test: {}", bin.display()));
    let google = Google::start().await;
    google.faults().set_latency(opts.mint_latency.unwrap_or(opts.latency));
    let mut bench = Bench { opts, bin, google, cluster };

    let started = Instant::now();
    let mut results = Vec::new();
    for &n in &sizes {
        results.push(bench.fan_out(n, Some(&n) == sizes.last()).await?);
    }
    let single = bench.single().await?;
    report::print(&bench, &results, &single, cpus, started.elapsed()).await;
    Ok(())
}

/// Strings from string slices.
fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Bench {
    /// The regcred command line; `target` is `--secret ...` and the fan-out flags.
    fn regcred_args(&self, key: &str, target: &[String]) -> Vec<String> {
        let mut args = strings(&["run", "--key-file", key]);
        args.extend_from_slice(target);
        args.extend(strings(&["--log-format", "json", "--admin-addr", "off"]));
        args.extend(strings(&["--refresh-before", REFRESH_BEFORE, "--jitter", "0s"]));
        args.extend_from_slice(&self.opts.regcred_args);
        args
    }

    fn fan_out_target(&self) -> Vec<String> {
        let writes = self.opts.max_concurrent_writes.to_string();
        strings(&["--secret", SECRET, "--all-namespaces", "--max-concurrent-writes", &writes])
            .into_iter()
            .chain(strings(&["--max-requests-per-second", "0"]))
            .collect()
    }

    /// Prepares the cluster for `namespaces` and starts regcred with short-lived tokens.
    async fn start(&mut self, namespaces: usize, target: &[String]) -> Result<(Regcred, tempfile::TempDir), String> {
        self.cluster.prepare(namespaces).await?;
        let dir = tempfile::Builder::new()
            .prefix("regcred-bench-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let key = dir.path().join("key.json");
        self.google.write_key_file(&key);
        self.google.set_token_lifetime(self.opts.token_lifetime);
        let args = self.regcred_args(&key.display().to_string(), target);
        let kubeconfig = self.cluster.kubeconfig(dir.path());
        self.cluster.mark();
        let rc = Regcred::spawn(&self.bin, &args, dir.path(), &kubeconfig, &self.google, self.opts.pin)?;
        Ok((rc, dir))
    }

    /// Waits for `rotations` cycles after the first, each forced by a
    /// short-lived token; the last token lives an hour. A cycle ends with the
    /// `fan-out cycle` line over `fan_out` namespaces, or without fan-out with
    /// `wrote credential`.
    async fn rotate(
        &mut self,
        rc: &mut Regcred,
        fan_out: Option<usize>,
    ) -> Result<(Vec<Cycle>, Counts, Option<CpuUse>), String> {
        let (mut cycles, mut cpu) = (Vec::new(), None);
        self.cluster.mark();
        for k in 1..=self.opts.rotations {
            if k == self.opts.rotations {
                self.google.set_token_lifetime(LONG_LIFETIME);
            }
            // The cycle starts right after the mint is logged: CPU is sampled
            // from there to the cycle's own log line.
            rc.expect("minted a credential").await?;
            let before = CpuSample::take(rc.pid, self.cluster.cpu_ticks());
            let c = match fan_out {
                Some(n) => Some(rc.cycle(n).await?),
                None => rc.expect("wrote credential").await.map(|_| None)?,
            };
            cpu = Some(before.until(CpuSample::take(rc.pid, self.cluster.cpu_ticks())));
            if let Some(c) = c {
                progress(&format!(
                    "{} namespaces: rotation {k}: {} ({} changed, {} failed)",
                    c.namespaces,
                    fmt_dur(c.took),
                    c.changed,
                    c.failed
                ));
                cycles.push(c);
            }
        }
        Ok((cycles, self.cluster.requests().await?, cpu))
    }

    /// An idle window: nothing is due, nothing changes in the cluster.
    async fn idle(&mut self, rc: &Regcred, label: &str) -> Result<Option<Idle>, String> {
        if self.opts.idle.is_zero() {
            return Ok(None);
        }
        progress(&format!("{label}: idle window of {}", humantime::format_duration(self.opts.idle)));
        // Let the last writes' watch events drain first.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let warnings_before = rc.warnings().len();
        self.cluster.mark();
        let a = CpuSample::take(rc.pid, 0);
        tokio::time::sleep(self.opts.idle).await;
        let cpu = a.until(CpuSample::take(rc.pid, 0));
        Ok(Some(Idle {
            cpu,
            requests: self.cluster.requests().await?,
            warnings: rc.warnings().split_off(warnings_before),
        }))
    }

    /// New namespaces created one at a time, each timed until its Secret exists.
    async fn new_namespaces(&mut self, namespaces: usize) -> Result<Option<(Vec<Duration>, Counts)>, String> {
        if self.opts.new_namespaces == 0 {
            return Ok(None);
        }
        self.cluster.mark();
        let mut latencies = Vec::new();
        for i in 0..self.opts.new_namespaces {
            tokio::time::sleep(Duration::from_millis(50)).await;
            latencies.push(self.cluster.new_namespace(&format!("bench-new-{i:03}")).await?);
        }
        progress(&format!(
            "{namespaces} namespaces: new namespace → Secret: median {}, max {}",
            fmt_dur(report::median(&latencies)),
            fmt_dur(*latencies.iter().max().expect("some"))
        ));
        Ok(Some((latencies, self.cluster.requests().await?)))
    }

    async fn fan_out(&mut self, namespaces: usize, detailed: bool) -> Result<SizeResult, String> {
        progress(&format!("{namespaces} namespaces: starting regcred"));
        // N selected namespaces: `default` and N - 1 more (regcred leaves
        // kube-system, kube-public and kube-node-lease out).
        let (mut rc, _dir) = self.start(namespaces, &self.fan_out_target()).await?;
        let first = rc.cycle(namespaces).await?;
        let startup_to_first = rc.started.elapsed();
        let memory_after_first = rc.memory_kib();
        let startup_requests = self.cluster.requests().await?;
        progress(&format!(
            "{namespaces} namespaces: first cycle {} ({} changed, {} failed), {} after start",
            fmt_dur(first.took),
            first.changed,
            first.failed,
            fmt_dur(startup_to_first)
        ));
        let (rotations, rotation_requests, rotation_cpu) = self.rotate(&mut rc, Some(namespaces)).await?;
        let memory_after_rotations = rc.memory_kib();
        let new_namespaces = if detailed { self.new_namespaces(namespaces).await? } else { None };
        let idle = if detailed { self.idle(&rc, &format!("{namespaces} namespaces")).await? } else { None };
        let (memory_at_end, warnings) = (rc.memory_kib(), rc.warnings());
        rc.stop().await;
        Ok(SizeResult {
            namespaces,
            startup_to_first,
            first,
            startup_requests,
            rotations,
            rotation_requests,
            rotation_cpu: rotation_cpu.expect("at least one rotation"),
            memory_after_first,
            memory_after_rotations,
            memory_at_end,
            new_namespaces,
            idle,
            warnings,
        })
    }

    /// `--secret default/gcr-pull`, no fan-out: a rotation, then an idle window.
    async fn single(&mut self) -> Result<SingleResult, String> {
        progress("single Secret: starting regcred");
        let (mut rc, _dir) = self.start(1, &strings(&["--secret", &format!("default/{SECRET}")])).await?;
        rc.expect("wrote credential").await?;
        self.rotate(&mut rc, None).await?;
        let idle = self.idle(&rc, "single Secret").await?;
        let (peak_rss_kib, warnings) = (rc.memory_kib().0, rc.warnings());
        rc.stop().await;
        Ok(SingleResult { peak_rss_kib, idle, warnings })
    }
}

impl SizeResult {
    fn rotation(&self) -> Duration {
        report::median(&self.rotations.iter().map(|c| c.took).collect::<Vec<_>>())
    }

    /// Requests (but watches) per namespace and rotation, and watches opened per rotation.
    fn per_rotation(&self) -> (f64, f64) {
        let (watches, others) =
            self.rotation_requests.iter().fold(
                (0, 0),
                |(w, o), (k, n)| {
                    if k.starts_with("WATCH ") {
                        (w + n, o)
                    } else {
                        (w, o + n)
                    }
                },
            );
        let rotations = self.rotations.len() as f64;
        (others as f64 / rotations / self.namespaces as f64, watches as f64 / rotations)
    }
}
