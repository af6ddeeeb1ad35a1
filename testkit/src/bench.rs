//! `regcred-testkit bench`: how regcred's namespace fan-out scales.
//!
//! The benchmark runs the real (release) `regcred run --all-namespaces`
//! against the emulators, with a fixed latency added to every request, at a
//! few cluster sizes, and prints a Markdown report on stdout:
//!
//! * the duration of one fan-out cycle, read from regcred's own JSON log line
//!   (`"message":"fan-out cycle", "took":"…"`), for the first cycle (creates)
//!   and for rotation cycles (patches), which are what a running regcred does
//!   every token lifetime. Rotations are forced with short-lived tokens; the
//!   token minted for the last rotation lives an hour, so the process is idle
//!   afterwards;
//! * the Kubernetes requests one rotation costs per namespace, from the
//!   emulator's request log;
//! * at the largest size, how long a new namespace waits for its Secret, and
//!   the CPU regcred uses while idle;
//! * regcred's peak resident set (`VmHWM`), with fan-out and with a single
//!   `--secret`.
//!
//! The emulators run inside this process. The harness does nothing while a
//! cycle runs (it waits on regcred's log pipe), so the CPU this process uses
//! during a cycle is the emulator's; it is reported next to regcred's.
//! Progress goes to stderr, the report to stdout.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regcred_testkit::{Google, KubeApi, RecordedRequest};
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;

const SECRET: &str = "gcr-pull";
/// The lifetime of the token minted for the last rotation: nothing is due for
/// an hour after it, so the idle window that follows is really idle.
const LONG_LIFETIME: Duration = Duration::from_secs(3600);
/// `--refresh-before`: at least half of the short lifetime, so that short
/// tokens are replaced at half-life, and well under `LONG_LIFETIME`.
const REFRESH_BEFORE: &str = "30m";
/// How long to wait for one cycle (or start-up) before giving up.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(300);
/// regcred's default `--max-requests-per-second`, quoted in the report.
const DEFAULT_RATE: u32 = 100;

// The targets the report compares against.
const TARGET_CYCLE_10K: Duration = Duration::from_secs(10);
const TARGET_NEW_NAMESPACE: Duration = Duration::from_secs(1);
const TARGET_RSS_10K_MIB: f64 = 32.0;
const TARGET_RSS_SINGLE_MIB: f64 = 10.0;

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

pub async fn run(opts: Options) -> ExitCode {
    match bench(opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

// ----- /proc -----

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime of a process (all its threads), in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm) ": state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// A `kB` line of `/proc/PID/status` (`VmHWM`, `VmRSS`), in KiB.
fn status_kib(pid: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Context switches (voluntary + involuntary) summed over a process's
/// threads: how often it was woken up or preempted.
fn context_switches(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    let mut total = 0;
    for t in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(t.path().join("status")) else { continue };
        for l in status.lines() {
            if let Some(v) =
                l.strip_prefix("voluntary_ctxt_switches:").or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

/// CPU time of regcred and of this process (the emulators) at one instant.
#[derive(Clone, Copy)]
struct CpuSample {
    at: Instant,
    regcred: u64,
    harness: u64,
    switches: u64,
}

impl CpuSample {
    fn take(pid: u32) -> CpuSample {
        let pid = pid.to_string();
        CpuSample {
            at: Instant::now(),
            regcred: cpu_ticks(&pid).unwrap_or(0),
            harness: cpu_ticks("self").unwrap_or(0),
            switches: context_switches(&pid),
        }
    }
}

/// CPU used between two samples.
#[derive(Clone, Copy, Debug)]
struct CpuUse {
    wall: Duration,
    regcred_ms: u64,
    harness_ms: u64,
    switches: u64,
}

fn cpu_between(a: CpuSample, b: CpuSample) -> CpuUse {
    let ms = |ticks: u64| ticks * 1000 / clk_tck();
    CpuUse {
        wall: b.at - a.at,
        regcred_ms: ms(b.regcred.saturating_sub(a.regcred)),
        harness_ms: ms(b.harness.saturating_sub(a.harness)),
        switches: b.switches.saturating_sub(a.switches),
    }
}

/// Restricts the calling process's existing threads to `cpus`.
fn pin_self(cpus: &[usize]) -> std::io::Result<()> {
    let set = cpu_set(cpus);
    for t in std::fs::read_dir("/proc/self/task")?.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<libc::pid_t>().ok()) else { continue };
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: CPU_SET writes one bit of `set`; `c` is below the CPU count.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

// ----- regcred's log -----

/// `took` as regcred logs it: a Debug-formatted `Duration` ("1.2345s",
/// "812.5ms", "950µs", "12ns").
fn parse_debug_duration(s: &str) -> Option<Duration> {
    let idx = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(idx);
    let x: f64 = num.parse().ok()?;
    let secs = match unit {
        "s" => x,
        "ms" => x / 1e3,
        "µs" | "us" => x / 1e6,
        "ns" => x / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// One `"fan-out cycle"` log line.
#[derive(Clone, Copy, Debug)]
struct Cycle {
    namespaces: u64,
    changed: u64,
    failed: u64,
    took: Duration,
}

fn parse_cycle(v: &Value) -> Result<Cycle, String> {
    let n = |k: &str| v[k].as_u64().ok_or_else(|| format!("fan-out cycle line without a numeric {k:?}: {v}"));
    Ok(Cycle {
        namespaces: n("namespaces")?,
        changed: n("changed")?,
        failed: n("failed")?,
        took: v["took"]
            .as_str()
            .and_then(parse_debug_duration)
            .ok_or_else(|| format!("fan-out cycle line with an unreadable \"took\": {v}"))?,
    })
}

#[derive(Default)]
struct LogState {
    tail: VecDeque<String>,
    /// WARN and ERROR lines, as "message: error".
    warnings: Vec<String>,
}

/// A running `regcred run` whose stderr (JSON lines) is read as it comes.
struct Regcred {
    child: tokio::process::Child,
    pid: u32,
    lines: mpsc::UnboundedReceiver<Value>,
    log: Arc<Mutex<LogState>>,
    started: Instant,
}

impl Regcred {
    fn spawn(bin: &Path, args: &[String], dir: &Path, google: &Google, pin: bool) -> Result<Regcred, String> {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("KUBECONFIG", dir.join("kubeconfig"))
            // Nothing may reach the real Google.
            .env("GCE_METADATA_HOST", google.metadata_host())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if pin {
            // SAFETY: sched_setaffinity is async-signal-safe and touches only
            // the cpu_set_t built here.
            unsafe {
                cmd.pre_exec(|| {
                    let set = cpu_set(&[0]);
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id().ok_or("regcred exited at once")?;
        let stderr = child.stderr.take().expect("piped");
        let log: Arc<Mutex<LogState>> = Arc::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let reader_log = log.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let v: Option<Value> = serde_json::from_str(&line).ok();
                {
                    let mut st = reader_log.lock().unwrap_or_else(|e| e.into_inner());
                    st.tail.push_back(line.clone());
                    if st.tail.len() > 30 {
                        st.tail.pop_front();
                    }
                    if let Some(v) = v.as_ref().filter(|v| matches!(v["level"].as_str(), Some("WARN" | "ERROR"))) {
                        let msg = v["message"].as_str().unwrap_or("?");
                        let warning = match v["error"].as_str() {
                            Some(e) => format!("{msg}: {e}"),
                            None => msg.to_string(),
                        };
                        st.warnings.push(warning);
                    }
                }
                if let Some(v) = v {
                    let _ = tx.send(v);
                }
            }
        });
        Ok(Regcred { child, pid, lines: rx, log, started })
    }

    fn tail(&self) -> String {
        let st = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let lines: Vec<&str> = st.tail.iter().map(String::as_str).collect();
        format!("\n--- last lines of regcred's log ---\n{}", lines.join("\n"))
    }

    fn warnings(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).warnings.clone()
    }

    /// The next log line whose message is `message`.
    async fn expect(&mut self, message: &str, timeout: Duration) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(v)) if v["message"] == message => return Ok(v),
                Ok(Some(_)) => {}
                Ok(None) => {
                    let status = self.child.wait().await.map(|s| s.to_string()).unwrap_or_default();
                    return Err(format!(
                        "regcred exited ({status}) while the bench waited for {message:?}{}",
                        self.tail()
                    ));
                }
                Err(_) => return Err(format!("no {message:?} from regcred within {timeout:?}{}", self.tail())),
            }
        }
    }

    /// The next `"fan-out cycle"` line, checked.
    async fn cycle(&mut self, expect_namespaces: usize) -> Result<Cycle, String> {
        let c = parse_cycle(&self.expect("fan-out cycle", CYCLE_TIMEOUT).await?)?;
        if c.namespaces != expect_namespaces as u64 {
            return Err(format!("a cycle covered {} namespaces, expected {expect_namespaces}", c.namespaces));
        }
        Ok(c)
    }

    /// (VmHWM, VmRSS) now, in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let pid = self.pid.to_string();
        (status_kib(&pid, "VmHWM").unwrap_or(0), status_kib(&pid, "VmRSS").unwrap_or(0))
    }

    async fn stop(mut self) {
        crate::demo::sigterm(&self.child);
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.is_err() {
            progress("regcred did not stop within 15s of SIGTERM; killing it");
            let _ = self.child.kill().await;
        }
    }
}

// ----- the emulator's request log -----

/// "PATCH secrets", "LIST namespaces", "WATCH secrets", "POST events" ...
/// with the status appended when it is not a success.
fn classify(r: &RecordedRequest) -> String {
    let watch = r.query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    let segs: Vec<&str> = r.path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segs.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        other => other,
    };
    let (resource, collection) = match rest {
        [] => ("discovery", false),
        [plural] => (*plural, true),
        ["namespaces", _] => ("namespaces", false),
        ["namespaces", _, plural] => (*plural, true),
        ["namespaces", _, plural, ..] => (*plural, false),
        _ => ("other", false),
    };
    let verb = match (r.method.as_str(), watch, collection) {
        ("GET", true, _) => "WATCH",
        ("GET", false, true) => "LIST",
        (m, _, _) => m,
    };
    if r.status >= 300 {
        format!("{verb} {resource} → {}", r.status)
    } else {
        format!("{verb} {resource}")
    }
}

type Counts = BTreeMap<String, usize>;

fn count(reqs: &[RecordedRequest]) -> Counts {
    let mut counts = Counts::new();
    for r in reqs {
        *counts.entry(classify(r)).or_insert(0) += 1;
    }
    counts
}

fn is_watch(label: &str) -> bool {
    label.starts_with("WATCH ")
}

fn describe_counts(counts: &Counts) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts.iter().map(|(k, n)| format!("{k} ×{}", thousands(*n as u64))).collect::<Vec<_>>().join(", ")
}

// ----- formatting -----

/// "`message` ×3; `other` ×1"
fn distinct(lines: &[String]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for l in lines {
        *counts.entry(l.as_str()).or_insert(0) += 1;
    }
    counts.iter().map(|(l, n)| format!("`{l}` ×{n}")).collect::<Vec<_>>().join("; ")
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_dur(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "✅ met"
    } else {
        "❌ missed"
    }
}

/// Both processes' CPU over the machine's capacity in that time, in percent.
fn busy(cpu: CpuUse, cpus: usize) -> f64 {
    let capacity_ms = cpu.wall.as_secs_f64() * 1e3 * cpus as f64;
    if capacity_ms == 0.0 {
        0.0
    } else {
        (cpu.regcred_ms + cpu.harness_ms) as f64 * 100.0 / capacity_ms
    }
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

// ----- scenarios -----

/// What the harness saw of one idle window.
struct Idle {
    cpu: CpuUse,
    requests: Counts,
    warnings: Vec<String>,
}

impl Idle {
    fn per_minute_ms(&self) -> f64 {
        self.cpu.regcred_ms as f64 * 60.0 / self.cpu.wall.as_secs_f64()
    }
}

struct SizeResult {
    namespaces: usize,
    startup_to_first: Duration,
    first: Cycle,
    startup_requests: Counts,
    rotations: Vec<Cycle>,
    /// Requests from the end of the previous cycle to the end of the last
    /// rotation (the wait for the refresh point, the mint, the cycle).
    rotation_requests: Counts,
    /// CPU from the mint's log line to the cycle's, in the last rotation.
    rotation_cpu: CpuUse,
    /// (VmHWM, VmRSS) after the first cycle, after the rotations, at the end.
    memory_after_first: (u64, u64),
    memory_after_rotations: (u64, u64),
    peak_rss_kib: u64,
    rss_at_end_kib: u64,
    new_namespaces: Option<(Vec<Duration>, Counts)>,
    idle: Option<Idle>,
    warnings: Vec<String>,
}

impl SizeResult {
    fn rotation(&self) -> Duration {
        median(&self.rotations.iter().map(|c| c.took).collect::<Vec<_>>())
    }

    /// Non-watch requests per namespace in the last rotation.
    fn requests_per_namespace(&self) -> f64 {
        let n: usize = self.rotation_requests.iter().filter(|(k, _)| !is_watch(k)).map(|(_, n)| n).sum();
        n as f64 / self.namespaces as f64
    }

    fn rotation_watches(&self) -> usize {
        self.rotation_requests.iter().filter(|(k, _)| is_watch(k)).map(|(_, n)| n).sum()
    }
}

struct SingleResult {
    peak_rss_kib: u64,
    idle: Idle,
    warnings: Vec<String>,
}

/// Scratch directory with a kubeconfig and a key file.
fn scratch(kube: &KubeApi, google: &Google) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::Builder::new()
        .prefix("regcred-bench-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    kube.write_kubeconfig(&dir.path().join("kubeconfig"), "default");
    google.write_key_file(&dir.path().join("key.json"));
    Ok(dir)
}

/// The regcred command line; `target` is `--secret ...` and the fan-out flags.
fn regcred_args(opts: &Options, key: &str, target: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into(), "--key-file".into(), key.into()];
    args.extend(target.iter().cloned());
    for a in ["--log-format", "json", "--admin-addr", "off", "--refresh-before", REFRESH_BEFORE, "--jitter", "0s"] {
        args.push(a.into());
    }
    args.extend(opts.regcred_args.iter().cloned());
    args
}

fn fan_out_target(opts: &Options) -> Vec<String> {
    [
        "--secret",
        SECRET,
        "--all-namespaces",
        "--max-concurrent-writes",
        &opts.max_concurrent_writes.to_string(),
        "--max-requests-per-second",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Waits out the cycles after the first: each one is a rotation forced by a
/// short-lived token, and the last token lives an hour.
async fn rotate(
    rc: &mut Regcred,
    kube: &KubeApi,
    google: &Google,
    opts: &Options,
    namespaces: usize,
) -> Result<(Vec<Cycle>, Counts, CpuUse), String> {
    let mut cycles = Vec::new();
    let mut requests = Counts::new();
    let mut cpu = None;
    for k in 1..=opts.rotations {
        if k == opts.rotations {
            google.set_token_lifetime(LONG_LIFETIME);
        }
        kube.clear_requests();
        // The cycle starts right after the mint is logged: CPU is sampled
        // from there to the cycle's own log line.
        rc.expect("minted a credential", CYCLE_TIMEOUT).await?;
        let before = CpuSample::take(rc.pid);
        let c = rc.cycle(namespaces).await?;
        let after = CpuSample::take(rc.pid);
        requests = count(&kube.requests());
        cpu = Some(cpu_between(before, after));
        progress(&format!(
            "{namespaces} namespaces: rotation {k}: {} ({} changed, {} failed)",
            fmt_dur(c.took),
            c.changed,
            c.failed
        ));
        cycles.push(c);
    }
    Ok((cycles, requests, cpu.expect("at least one rotation")))
}

/// An idle window: nothing is due, nothing changes in the cluster.
async fn idle(rc: &Regcred, kube: &KubeApi, window: Duration) -> Idle {
    // Let the last writes' watch events drain first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let warnings_before = rc.warnings().len();
    kube.clear_requests();
    let a = CpuSample::take(rc.pid);
    tokio::time::sleep(window).await;
    let b = CpuSample::take(rc.pid);
    Idle {
        cpu: cpu_between(a, b),
        requests: count(&kube.requests()),
        warnings: rc.warnings().split_off(warnings_before),
    }
}

/// New namespaces created one at a time; the Secret is polled every 1 ms.
async fn new_namespaces(kube: &KubeApi, how_many: usize) -> Result<(Vec<Duration>, Counts), String> {
    kube.clear_requests();
    let mut latencies = Vec::new();
    for i in 0..how_many {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ns = format!("bench-new-{i:03}");
        let t0 = Instant::now();
        kube.create_namespace(&ns, &[]);
        loop {
            if kube.secret(&ns, SECRET).is_some() {
                latencies.push(t0.elapsed());
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                return Err(format!("namespace {ns} got no Secret within 30s"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok((latencies, count(&kube.requests())))
}

async fn fan_out(
    opts: &Options,
    bin: &Path,
    google: &Google,
    namespaces: usize,
    detailed: bool,
) -> Result<SizeResult, String> {
    let kube = KubeApi::start().await;
    kube.faults().set_latency(opts.latency);
    // `default` exists; kube-system, kube-public and kube-node-lease are
    // excluded by regcred: N selected namespaces need N - 1 more.
    for i in 1..namespaces {
        kube.create_namespace(&format!("bench-{i:05}"), &[]);
    }
    let dir = scratch(&kube, google)?;
    let key = dir.path().join("key.json").display().to_string();
    google.set_token_lifetime(opts.token_lifetime);
    kube.clear_requests();
    progress(&format!("{namespaces} namespaces: starting regcred"));
    let mut rc = Regcred::spawn(bin, &regcred_args(opts, &key, &fan_out_target(opts)), dir.path(), google, opts.pin)?;

    let first = rc.cycle(namespaces).await?;
    let startup_to_first = rc.started.elapsed();
    let memory_after_first = rc.memory_kib();
    let startup_requests = count(&kube.requests());
    progress(&format!(
        "{namespaces} namespaces: first cycle {} ({} changed, {} failed), {} after start",
        fmt_dur(first.took),
        first.changed,
        first.failed,
        fmt_dur(startup_to_first)
    ));
    let (rotations, rotation_requests, rotation_cpu) = rotate(&mut rc, &kube, google, opts, namespaces).await?;
    let memory_after_rotations = rc.memory_kib();

    let new_ns = if detailed && opts.new_namespaces > 0 {
        let r = new_namespaces(&kube, opts.new_namespaces).await?;
        progress(&format!(
            "{namespaces} namespaces: new namespace → Secret: median {}, max {}",
            fmt_dur(median(&r.0)),
            fmt_dur(*r.0.iter().max().expect("some"))
        ));
        Some(r)
    } else {
        None
    };
    let idle = if detailed && !opts.idle.is_zero() {
        progress(&format!("{namespaces} namespaces: idle window of {}", humantime::format_duration(opts.idle)));
        Some(idle(&rc, &kube, opts.idle).await)
    } else {
        None
    };
    let (peak_rss_kib, rss_at_end_kib) = rc.memory_kib();
    let warnings = rc.warnings();
    rc.stop().await;
    Ok(SizeResult {
        namespaces,
        startup_to_first,
        first,
        startup_requests,
        rotations,
        rotation_requests,
        rotation_cpu,
        memory_after_first,
        memory_after_rotations,
        peak_rss_kib,
        rss_at_end_kib,
        new_namespaces: new_ns,
        idle,
        warnings,
    })
}

/// `--secret default/gcr-pull`, no fan-out: a rotation, then an idle window.
async fn single(opts: &Options, bin: &Path, google: &Google) -> Result<SingleResult, String> {
    let kube = KubeApi::start().await;
    kube.faults().set_latency(opts.latency);
    let dir = scratch(&kube, google)?;
    let key = dir.path().join("key.json").display().to_string();
    google.set_token_lifetime(opts.token_lifetime);
    progress("single Secret: starting regcred");
    let target = vec!["--secret".to_string(), format!("default/{SECRET}")];
    let mut rc = Regcred::spawn(bin, &regcred_args(opts, &key, &target), dir.path(), google, opts.pin)?;
    rc.expect("wrote credential", CYCLE_TIMEOUT).await?;
    for k in 1..=opts.rotations {
        if k == opts.rotations {
            google.set_token_lifetime(LONG_LIFETIME);
        }
        rc.expect("wrote credential", CYCLE_TIMEOUT).await?;
    }
    let idle = if opts.idle.is_zero() {
        None
    } else {
        progress(&format!("single Secret: idle window of {}", humantime::format_duration(opts.idle)));
        Some(idle(&rc, &kube, opts.idle).await)
    };
    let (peak_rss_kib, _) = rc.memory_kib();
    let warnings = rc.warnings();
    rc.stop().await;
    Ok(SingleResult {
        peak_rss_kib,
        idle: idle.unwrap_or(Idle {
            cpu: CpuUse { wall: Duration::ZERO, regcred_ms: 0, harness_ms: 0, switches: 0 },
            requests: Counts::new(),
            warnings: Vec::new(),
        }),
        warnings,
    })
}

// ----- machine facts -----

async fn rustc_version() -> String {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    match tokio::process::Command::new(rustc).arg("--version").output().await {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "rustc (unknown version)".into(),
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn mem_total_gib() -> f64 {
    status_like("/proc/meminfo", "MemTotal").map(|k| k as f64 / 1024.0 / 1024.0).unwrap_or(0.0)
}

fn status_like(path: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn shell_quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:@".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

// ----- the benchmark -----

async fn bench(opts: Options) -> Result<(), String> {
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
    let largest = *sizes.last().expect("non-empty");
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if opts.pin {
        if cpus < 2 {
            return Err("--pin needs at least 2 CPUs".into());
        }
        pin_self(&(1..cpus).collect::<Vec<_>>()).map_err(|e| format!("cannot pin the harness: {e}"))?;
    }
    if cfg!(debug_assertions) {
        progress("warning: the harness (and so the emulator) is a debug build; use `cargo run --release`");
    }
    let bin = match &opts.regcred {
        Some(p) => p.clone(),
        None => crate::demo::locate_regcred(true, progress).await?,
    };
    if !bin.exists() {
        return Err(format!("no regcred binary at {}", bin.display()));
    }
    progress(&format!("regcred under test: {}", bin.display()));
    let google = Google::start().await;
    google.faults().set_latency(opts.mint_latency.unwrap_or(opts.latency));

    let started = Instant::now();
    let mut results = Vec::new();
    for &n in &sizes {
        results.push(fan_out(&opts, &bin, &google, n, n == largest).await?);
    }
    let single = single(&opts, &bin, &google).await?;
    let elapsed = started.elapsed();

    report(&opts, &bin, &results, &single, cpus, elapsed).await;
    Ok(())
}

async fn report(
    opts: &Options,
    bin: &Path,
    results: &[SizeResult],
    single: &SingleResult,
    cpus: usize,
    elapsed: Duration,
) {
    let args: Vec<String> = std::env::args().skip(1).map(|a| shell_quote(&a)).collect();
    let latency = fmt_dur(opts.latency);
    let conc = opts.max_concurrent_writes;
    let bin_size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    let largest = results.last().expect("at least one size");
    let n_big = thousands(largest.namespaces as u64);

    println!("## regcred benchmark");
    println!();
    println!("```sh");
    println!("cargo run --release -p regcred-testkit -- {}", args.join(" "));
    println!("```");
    println!();
    println!(
        "- Machine: {cpus} CPUs ({}), {:.1} GiB RAM, Linux {}; {}; bench built {}",
        cpu_model(),
        mem_total_gib(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        rustc_version().await,
        if cfg!(debug_assertions) { "without optimisations (debug)" } else { "with --release" },
    );
    println!("- regcred under test: `{}` ({:.1} MiB), run as", bin.display(), bin_size as f64 / 1024.0 / 1024.0);
    println!(
        "  `regcred {}`",
        regcred_args(opts, "KEY", &fan_out_target(opts)).iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
    );
    let mint = match opts.mint_latency {
        Some(m) if m != opts.latency => format!(" ({} on the Google emulator)", fmt_dur(m)),
        _ => String::new(),
    };
    println!(
        "- Kubernetes API and Google token endpoints: the test kit's emulators, in the benchmark's own process on \
         127.0.0.1, {latency} added to every request{mint}; {}.",
        if opts.pin {
            "regcred pinned to CPU 0, the emulators and harness to the other CPUs"
        } else {
            "regcred and the emulators share the machine's CPUs (no pinning)"
        }
    );
    println!(
        "- Cycle times are regcred's own `took` from its `fan-out cycle` log line. Rotations are forced with \
         {}-tokens; each size runs {} rotation(s) after the first cycle and reports the median.",
        humantime::format_duration(opts.token_lifetime),
        opts.rotations
    );
    println!();

    // The summary table: each figure next to its target.
    println!("| Measurement | Namespaces | Measured | Target | |");
    println!("| --- | ---: | ---: | --- | --- |");
    for r in results {
        let n = thousands(r.namespaces as u64);
        let raced = if r.first.changed < r.namespaces as u64 {
            format!(" (the cycle itself wrote {}; see notes)", thousands(r.first.changed))
        } else {
            String::new()
        };
        println!("| Fan-out cycle, first (creates) | {n} | {}{raced} | | |", fmt_dur(r.first.took));
    }
    for r in results {
        let n = thousands(r.namespaces as u64);
        let took = r.rotation();
        let (target, ok) = if r.namespaces >= 10_000 {
            (
                format!("≤ {} at 10,000 ({latency} latency, {conc} concurrent writes)", fmt_dur(TARGET_CYCLE_10K)),
                Some(took <= TARGET_CYCLE_10K),
            )
        } else {
            (String::new(), None)
        };
        println!(
            "| Fan-out cycle, rotation (patches) | {n} | {} | {target} | {} |",
            fmt_dur(took),
            ok.map(verdict).unwrap_or("")
        );
    }
    for r in results {
        let n = thousands(r.namespaces as u64);
        let watches = r.rotation_watches();
        println!(
            "| Requests per namespace per rotation cycle | {n} | {:.2} (+{watches} watch) | | |",
            r.requests_per_namespace()
        );
    }
    if let Some((lat, _)) = &largest.new_namespaces {
        let med = median(lat);
        let max = *lat.iter().max().expect("some");
        println!(
            "| New namespace → Secret, median / max of {} | {n_big} | {} / {} | < {} | {} |",
            lat.len(),
            fmt_dur(med),
            fmt_dur(max),
            fmt_dur(TARGET_NEW_NAMESPACE),
            verdict(max < TARGET_NEW_NAMESPACE)
        );
    }
    for r in results {
        let n = thousands(r.namespaces as u64);
        let rss = mib(r.peak_rss_kib);
        let (target, ok) = if r.namespaces >= 10_000 {
            (format!("< {TARGET_RSS_10K_MIB} MiB at 10,000"), Some(rss < TARGET_RSS_10K_MIB))
        } else {
            (String::new(), None)
        };
        println!("| Peak RSS (VmHWM) | {n} | {rss:.1} MiB | {target} | {} |", ok.map(verdict).unwrap_or(""));
    }
    let rss1 = mib(single.peak_rss_kib);
    println!(
        "| Peak RSS (VmHWM), single `--secret default/{SECRET}` | — | {rss1:.1} MiB | < {TARGET_RSS_SINGLE_MIB} MiB | {} |",
        verdict(rss1 < TARGET_RSS_SINGLE_MIB)
    );
    let idle_row = |label: &str, n: &str, idle: &Idle| {
        // Timers alone: no API request, nothing logged, at most one clock tick.
        let ok = idle.requests.is_empty() && idle.warnings.is_empty() && idle.cpu.regcred_ms <= 1000 / clk_tck();
        println!(
            "| {label} | {n} | {:.0} ms/min ({} ms in {:.0} s; {} wake-ups; API requests: {}) | no CPU beyond timers | {} |",
            idle.per_minute_ms(),
            idle.cpu.regcred_ms,
            idle.cpu.wall.as_secs_f64(),
            idle.cpu.switches,
            describe_counts(&idle.requests),
            verdict(ok)
        );
    };
    if let Some(idle) = &largest.idle {
        idle_row("Idle CPU", &n_big, idle);
    }
    if !single.idle.cpu.wall.is_zero() {
        idle_row(&format!("Idle CPU, single `--secret default/{SECRET}`"), "—", &single.idle);
    }
    println!();
    println!(
        "With the product default `--max-requests-per-second {DEFAULT_RATE}`, a rotation writes at most \
         {DEFAULT_RATE} Secrets per second: {n_big} namespaces take ≥ {:.0} s by design. The figures above use 0 \
         (no limit).",
        largest.namespaces as f64 / DEFAULT_RATE as f64
    );
    println!();

    // Details per size.
    println!(
        "| Namespaces | Start-up → first cycle done | First cycle (Secrets it changed) | Rotation cycles | \
         Floor ⌈N/{conc}⌉ × {latency} | CPU in the last rotation: regcred / emulator (machine busy) | \
         VmHWM after first cycle / after rotations / at end (VmRSS at end) | Rotation requests | Start-up requests |"
    );
    println!("| ---: | ---: | ---: | --- | ---: | --- | --- | --- | --- |");
    for r in results {
        let floor = opts.latency * r.namespaces.div_ceil(conc.max(1)) as u32;
        let cpu = r.rotation_cpu;
        println!(
            "| {} | {} | {} ({}) | {} | {} | {} ms / {} ms in {} ({:.0}%) | {:.1} / {:.1} / {:.1} MiB ({:.1} MiB) | {} | {} |",
            thousands(r.namespaces as u64),
            fmt_dur(r.startup_to_first),
            fmt_dur(r.first.took),
            thousands(r.first.changed),
            r.rotations.iter().map(|c| fmt_dur(c.took)).collect::<Vec<_>>().join(", "),
            fmt_dur(floor),
            cpu.regcred_ms,
            cpu.harness_ms,
            fmt_dur(cpu.wall),
            busy(cpu, cpus),
            mib(r.memory_after_first.0),
            mib(r.memory_after_rotations.0),
            mib(r.peak_rss_kib),
            mib(r.rss_at_end_kib),
            describe_counts(&r.rotation_requests),
            describe_counts(&r.startup_requests),
        );
    }
    println!();
    println!("Notes:");
    println!(
        "- \"CPU in the last rotation\" is utime+stime (from `/proc/PID/stat`, {} ms ticks) from regcred's `minted a \
         credential` line to its `fan-out cycle` line. The emulator column is this whole process (the harness only \
         waits on regcred's log meanwhile); \"machine busy\" is both together over {cpus} CPUs × the wall time. \
         Rotation requests are counted from the end of the previous cycle.",
        1000 / clk_tck()
    );
    let big = largest.rotation_cpu;
    if big.harness_ms > big.regcred_ms && busy(big, cpus) >= 80.0 {
        println!(
            "- At {n_big} namespaces the machine is CPU-bound during the rotation and the emulator uses {:.1}× \
             regcred's CPU: the cycle time is set by the emulator sharing the {cpus} CPUs, so it is an upper bound \
             for regcred against a real API server. regcred itself needs {:.0} µs of CPU per namespace.",
            big.harness_ms as f64 / big.regcred_ms.max(1) as f64,
            big.regcred_ms as f64 * 1000.0 / largest.namespaces as f64
        );
    }
    if results.iter().any(|r| r.first.changed < r.namespaces as u64) {
        println!(
            "- First cycle: where the cycle wrote fewer Secrets than there are namespaces, regcred's namespace watch \
             finished its first listing after the first token was minted, so the watch worker queued every namespace \
             too and raced the cycle (`POST secrets → 409` and `GET secrets` in the start-up requests); the cycle \
             then found most Secrets already written. `--mint-latency 3s` (a mint slower than the listing) avoids \
             the race."
        );
    }
    println!("- New namespace → Secret is measured from `KubeApi::create_namespace` to the Secret being readable in the emulator, polled every 1 ms (±1 ms).");
    for r in results {
        if r.first.failed > 0 || r.rotations.iter().any(|c| c.failed > 0 || c.changed != r.namespaces as u64) {
            println!(
                "- {} namespaces: first cycle {} changed / {} failed; rotations {}.",
                r.namespaces,
                r.first.changed,
                r.first.failed,
                r.rotations
                    .iter()
                    .map(|c| format!("{} changed / {} failed", c.changed, c.failed))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some((_, reqs)) = &r.new_namespaces {
            println!("- Requests while creating the new namespaces: {}.", describe_counts(reqs));
        }
        if !r.warnings.is_empty() {
            println!(
                "- regcred's warnings over the whole run at {} namespaces: {}.",
                thousands(r.namespaces as u64),
                distinct(&r.warnings)
            );
        }
        if let Some(idle) = r.idle.as_ref().filter(|i| !i.warnings.is_empty()) {
            println!(
                "- Of which during the idle window ({:.0} s): {}.",
                idle.cpu.wall.as_secs_f64(),
                distinct(&idle.warnings)
            );
        }
    }
    if !single.warnings.is_empty() {
        println!("- regcred's warnings with a single Secret: {}.", distinct(&single.warnings));
    }
    println!("- Whole benchmark: {:.0} s.", elapsed.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_debug_durations() {
        assert_eq!(parse_debug_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_debug_duration("1.209892ms"), Some(Duration::from_nanos(1_209_892)));
        assert_eq!(parse_debug_duration("950µs"), Some(Duration::from_micros(950)));
        assert_eq!(parse_debug_duration("12ns"), Some(Duration::from_nanos(12)));
        assert_eq!(parse_debug_duration("3"), None);
        assert_eq!(parse_debug_duration("3 minutes"), None);
    }

    #[test]
    fn classifies_requests() {
        let r = |method: &str, path: &str, query: &str, status: u16| RecordedRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            status,
            body: String::new(),
            headers: Vec::new(),
        };
        assert_eq!(classify(&r("PATCH", "/api/v1/namespaces/a/secrets/gcr-pull", "", 200)), "PATCH secrets");
        assert_eq!(classify(&r("POST", "/api/v1/namespaces/a/secrets", "", 201)), "POST secrets");
        assert_eq!(classify(&r("GET", "/api/v1/namespaces", "limit=500", 200)), "LIST namespaces");
        assert_eq!(classify(&r("GET", "/api/v1/secrets", "fieldSelector=x&watch=true", 200)), "WATCH secrets");
        assert_eq!(classify(&r("GET", "/api/v1/namespaces/a", "", 200)), "GET namespaces");
        assert_eq!(classify(&r("POST", "/apis/events.k8s.io/v1/namespaces/a/events", "", 201)), "POST events");
        assert_eq!(classify(&r("POST", "/api/v1/namespaces/a/secrets", "", 409)), "POST secrets → 409");
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(fmt_dur(Duration::from_micros(1500)), "1.50 ms");
        assert_eq!(fmt_dur(Duration::from_millis(250)), "250 ms");
        assert_eq!(fmt_dur(Duration::from_millis(2500)), "2.50 s");
    }
}
