//! A running `regcred run` and what it logs.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regcred_testkit::Google;
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;

use super::proc;

/// How long to wait for one cycle (or start-up) before giving up.
pub const CYCLE_TIMEOUT: Duration = Duration::from_secs(300);

/// `took` as regcred logs it: a Debug-formatted `Duration` ("1.2345s",
/// "812.5ms", "950µs", "12ns").
fn parse_debug_duration(s: &str) -> Option<Duration> {
    let idx = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(idx);
    let x: f64 = num.parse().ok()?;
    let per_second = match unit {
        "s" => 1.0,
        "ms" => 1e3,
        "µs" | "us" => 1e6,
        "ns" => 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(x / per_second))
}

/// One `"fan-out cycle"` log line.
#[derive(Clone, Copy, Debug)]
pub struct Cycle {
    pub namespaces: u64,
    pub changed: u64,
    pub failed: u64,
    pub took: Duration,
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

impl LogState {
    fn push(&mut self, line: &str, v: Option<&Value>) {
        self.tail.push_back(line.to_string());
        if self.tail.len() > 30 {
            self.tail.pop_front();
        }
        if let Some(v) = v.filter(|v| matches!(v["level"].as_str(), Some("WARN" | "ERROR"))) {
            let msg = v["message"].as_str().unwrap_or("?");
            self.warnings.push(match v["error"].as_str() {
                Some(e) => format!("{msg}: {e}"),
                None => msg.to_string(),
            });
        }
    }
}

/// A running `regcred run` whose stderr (JSON lines) is read as it comes.
pub struct Regcred {
    child: tokio::process::Child,
    pub pid: u32,
    lines: mpsc::UnboundedReceiver<Value>,
    log: Arc<Mutex<LogState>>,
    pub started: Instant,
}

impl Regcred {
    pub fn spawn(
        bin: &Path,
        args: &[String],
        home: &Path,
        kubeconfig: &Path,
        google: &Google,
        pin: bool,
    ) -> Result<Regcred, String> {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("KUBECONFIG", kubeconfig)
            // Nothing may reach the real Google.
            .env("GCE_METADATA_HOST", google.metadata_host())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if pin {
            proc::pin_child_to_cpu0(&mut cmd);
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
                reader_log.lock().unwrap_or_else(|e| e.into_inner()).push(&line, v.as_ref());
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

    pub fn warnings(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).warnings.clone()
    }

    /// The next log line whose message is `message`.
    pub async fn expect(&mut self, message: &str) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + CYCLE_TIMEOUT;
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
                Err(_) => return Err(format!("no {message:?} from regcred within {CYCLE_TIMEOUT:?}{}", self.tail())),
            }
        }
    }

    /// The next `"fan-out cycle"` line, checked.
    pub async fn cycle(&mut self, expect_namespaces: usize) -> Result<Cycle, String> {
        let c = parse_cycle(&self.expect("fan-out cycle").await?)?;
        if c.namespaces != expect_namespaces as u64 {
            return Err(format!("a cycle covered {} namespaces, expected {expect_namespaces}", c.namespaces));
        }
        Ok(c)
    }

    /// (VmHWM, VmRSS) now, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = format!("/proc/{}/status", self.pid);
        (proc::kib(&status, "VmHWM").unwrap_or(0), proc::kib(&status, "VmRSS").unwrap_or(0))
    }

    pub async fn stop(mut self) {
        crate::regcred::sigterm(&self.child);
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.is_err() {
            super::progress("regcred did not stop within 15s of SIGTERM; killing it");
            let _ = self.child.kill().await;
        }
    }
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
}
