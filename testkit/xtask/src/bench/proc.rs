//! What `/proc` says about processes (CPU time, memory, wake-ups) and the
//! machine, and CPU pinning.

use std::time::{Duration, Instant};

pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm) ": state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The number of a `KEY: N kB` line (`/proc/PID/status`, `/proc/meminfo`).
pub fn kib(path: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
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

/// CPU time of regcred and of the API server at one instant.
#[derive(Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    regcred: u64,
    server: u64,
    switches: u64,
}

impl CpuSample {
    /// `server` is the API server's CPU time in ticks (see `Cluster::cpu_ticks`).
    pub fn take(pid: u32, server: u64) -> CpuSample {
        let pid = pid.to_string();
        CpuSample {
            at: Instant::now(),
            regcred: cpu_ticks(&pid).unwrap_or(0),
            server,
            switches: context_switches(&pid),
        }
    }

    /// CPU used from `self` to `later`.
    pub fn until(self, later: CpuSample) -> CpuUse {
        let ms = |a: u64, b: u64| b.saturating_sub(a) * 1000 / clk_tck();
        CpuUse {
            wall: later.at - self.at,
            regcred_ms: ms(self.regcred, later.regcred),
            server_ms: ms(self.server, later.server),
            switches: later.switches.saturating_sub(self.switches),
        }
    }
}

/// CPU used between two samples.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    pub wall: Duration,
    pub regcred_ms: u64,
    pub server_ms: u64,
    pub switches: u64,
}

impl CpuUse {
    /// Both processes' CPU over the machine's capacity in that time, in percent.
    pub fn busy(&self, cpus: usize) -> f64 {
        let capacity_ms = self.wall.as_secs_f64() * 1e3 * cpus as f64;
        if capacity_ms == 0.0 {
            0.0
        } else {
            (self.regcred_ms + self.server_ms) as f64 * 100.0 / capacity_ms
        }
    }
}

/// Restricts the calling process's existing threads to `cpus`.
pub fn pin_self(cpus: &[usize]) -> std::io::Result<()> {
    for t in std::fs::read_dir("/proc/self/task")?.flatten() {
        if let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) {
            set_affinity(tid, cpus)?;
        }
    }
    Ok(())
}

/// Makes `cmd`'s process run on CPU 0 only.
pub fn pin_child_to_cpu0(cmd: &mut tokio::process::Command) {
    // SAFETY: sched_setaffinity is async-signal-safe; `set_affinity` touches
    // only a cpu_set_t on its own stack.
    unsafe { cmd.pre_exec(|| set_affinity(0, &[0])) };
}

/// sched_setaffinity(2) of thread `tid` (0: the calling one) to `cpus`.
fn set_affinity(tid: libc::pid_t, cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: CPU_SET writes one bit of `set`; `c` is below the CPU count.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// "N CPUs (model), X GiB RAM, Linux V; rustc V".
pub async fn machine(cpus: usize) -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let ram = kib("/proc/meminfo", "MemTotal").unwrap_or(0) as f64 / 1024.0 / 1024.0;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let rustc = match tokio::process::Command::new(rustc).arg("--version").output().await {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => "rustc (unknown version)".into(),
    };
    format!("{cpus} CPUs ({model}), {ram:.1} GiB RAM, Linux {}; {rustc}", kernel.trim())
}
