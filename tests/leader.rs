//! Leader election (`run --leader-elect`): two replicas, one writer; the
//! standby takes over when the leader dies, and a leader cut off from the
//! API server stops writing before the standby starts.
//!
//! Short timings keep the tests quick: a 2 s lease, a 1 s renew deadline, a
//! 300 ms retry period.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{http_get, terminate, wait_for, Kit};
use serde_json::Value;
use tokio::process::Child;

const LEASE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(300);

/// One replica: `regcred run --leader-elect` writing the Secret `pull` and
/// its own file, with its admin server on its own port.
struct Replica {
    name: &'static str,
    child: Child,
    file: PathBuf,
    admin: u16,
}

impl Replica {
    fn start(kit: &Kit, name: &'static str, kubeconfig: Option<&Path>) -> Replica {
        Replica::start_with(kit, name, kubeconfig, &["--secret", "pull"], true)
    }

    /// A replica writing to `sinks` and its own file, with the kit's key
    /// (`keyed`) or the metadata server's cached token.
    fn start_with(kit: &Kit, name: &'static str, kubeconfig: Option<&Path>, sinks: &[&str], keyed: bool) -> Replica {
        let file = kit.path(&format!("{name}.json"));
        let admin = common::free_port();
        let admin_addr = format!("127.0.0.1:{admin}");
        let args = [
            sinks,
            &[
                "--output-file",
                file.to_str().unwrap(),
                "--admin-addr",
                &admin_addr,
                "--leader-elect",
                "--leader-elect-lease-duration",
                "2s",
                "--leader-elect-renew-deadline",
                "1s",
                "--leader-elect-retry-period",
                "300ms",
                "--log-level",
                "debug",
            ],
        ]
        .concat();
        let mut cmd = if keyed { kit.keyed("run", &args) } else { kit.command(&[&["run"], &args[..]].concat()) };
        cmd.env("POD_NAME", name);
        if let Some(k) = kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        Replica { name, child: cmd.spawn().unwrap(), file, admin }
    }

    async fn metric_leader(&self) -> Option<String> {
        let (_, body) = http_get(self.admin, "/metrics").await?;
        body.lines().find(|l| l.starts_with("regcred_leader ")).map(|l| l["regcred_leader ".len()..].to_string())
    }

    async fn ready(&self) -> Option<u16> {
        http_get(self.admin, "/readyz").await.map(|(status, _)| status)
    }
}

/// The Lease's holder, as written (`POD_NAME_suffix`).
async fn holder(kit: &Kit) -> Option<String> {
    let lease = kit.kube.object(&kit.namespace, "leases", "regcred").await?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_string)
}

/// Waits until one of `replicas` holds the Lease and has written its
/// file; returns its index.
async fn leader(kit: &Kit, replicas: &[&Replica]) -> usize {
    wait_for(Duration::from_secs(20), "a leader that has written", async || {
        let h = holder(kit).await?;
        let i = replicas.iter().position(|r| h.starts_with(&format!("{}_", r.name)))?;
        replicas[i].file.exists().then_some(i)
    })
    .await
}

#[tokio::test]
async fn of_two_replicas_only_the_leader_writes_and_the_standby_is_ready() {
    let kit = Kit::start().await;
    let a = Replica::start(&kit, "replica-a", None);
    let b = Replica::start(&kit, "replica-b", None);
    let i = leader(&kit, &[&a, &b]).await;
    let (lead, standby) = if i == 0 { (&a, &b) } else { (&b, &a) };
    wait_for(Duration::from_secs(10), "the Secret", async || {
        kit.secret_doc(&kit.namespace, "pull", ".dockerconfigjson").await
    })
    .await;
    // Several retry periods: time for a standby to write, if it would.
    tokio::time::sleep(RETRY * 6).await;
    assert!(!standby.file.exists(), "the standby wrote its file");
    assert_eq!(lead.metric_leader().await.as_deref(), Some("1"));
    assert_eq!(standby.metric_leader().await.as_deref(), Some("0"));
    assert_eq!(standby.ready().await, Some(200), "a standby is ready while the Lease is held and fresh");
    wait_for(Duration::from_secs(5), "the leader ready", async || (lead.ready().await == Some(200)).then_some(()))
        .await;
    if let Some(emulator) = kit.on_emulator() {
        let writes = emulator
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/secrets/pull") || r.path.ends_with("/secrets") && r.method == "POST")
            .filter(|r| r.method != "GET")
            .count();
        assert_eq!(writes, 1, "one write of the Secret, by the leader");
    }
    let event = kit.kube.events(&kit.namespace).await.into_iter().find(|e| e["reason"] == "LeaderElection");
    let note = event.map(|e| e["note"].as_str().unwrap_or_default().to_string()).unwrap_or_default();
    assert!(note.starts_with(&format!("{}_", lead.name)) && note.ends_with("became leader"), "{note:?}");

    // SIGTERM releases the Lease: the standby takes over at its next look,
    // not a lease duration later.
    let (lead, standby) = if i == 0 { (a, b) } else { (b, a) };
    let stopped = Instant::now();
    let (code, stderr) = terminate(lead.child).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("released the Lease"), "{stderr}");
    wait_for(Duration::from_secs(5), "the standby's first write", async || standby.file.exists().then_some(())).await;
    assert!(stopped.elapsed() < LEASE, "took {:?} after a release", stopped.elapsed());
    let (code, stderr) = terminate(standby.child).await;
    assert_eq!(code, Some(0), "{stderr}");
}

/// When each distinct content of `path` was first seen, polling every 10 ms
/// until the returned flag is set.
fn watch_file(path: PathBuf) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Vec<Instant>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        while !stopped.load(Ordering::SeqCst) {
            if let Ok(bytes) = std::fs::read(&path) {
                if last.as_ref() != Some(&bytes) {
                    seen.push(Instant::now());
                    last = Some(bytes);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    });
    (stop, task)
}

/// The auths document in a Secret object's `.dockerconfigjson`.
fn secret_doc(secret: &Value) -> Value {
    use base64::Engine as _;
    let b64 = secret["data"][".dockerconfigjson"].as_str().expect("the key");
    serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
}

mod emulator_only {
    use super::*;
    use common::proxy::Proxy;

    #[tokio::test]
    async fn the_standby_writes_within_a_lease_duration_after_the_leader_is_killed() {
        let kit = Kit::start_emulator().await;
        // 12 s tokens, replaced at half-life: the failover must not leave the
        // Secret with an expired one.
        kit.google.set_token_lifetime(Duration::from_secs(12));
        let a = Replica::start(&kit, "replica-a", None);
        let b = Replica::start(&kit, "replica-b", None);
        let i = leader(&kit, &[&a, &b]).await;
        let (mut lead, standby) = if i == 0 { (a, b) } else { (b, a) };
        // The leader renews a few times first.
        tokio::time::sleep(RETRY * 4).await;
        assert!(!standby.file.exists());

        // Sample the Secret every 50 ms through the failover and after it.
        let sampling = async {
            let mut seen = Vec::new();
            for _ in 0..120 {
                if let Some(s) = kit.emulator().secret(&kit.namespace, "pull") {
                    seen.push((std::time::SystemTime::now(), s));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen
        };
        let failover = async {
            // SIGKILL: no release, the standby must wait the Lease out.
            let killed = Instant::now();
            lead.child.start_kill().unwrap();
            lead.child.wait().await.unwrap();
            wait_for(Duration::from_secs(10), "the standby's first write", async || {
                standby.file.exists().then_some(())
            })
            .await;
            killed.elapsed()
        };
        let (samples, took) = tokio::join!(sampling, failover);
        // The standby saw the last renewal up to a (jittered) retry period
        // after it was made, and looks again each retry period: the bound is
        // a lease duration plus two of those, plus a mint and a write.
        let bound = LEASE + RETRY.mul_f64(2.4) + Duration::from_millis(700);
        assert!(took >= LEASE - RETRY.mul_f64(1.2), "took over after {took:?}, before the Lease ran out");
        assert!(took <= bound, "took over after {took:?}, more than {bound:?}");
        println!("failover after SIGKILL: {took:?} (lease {LEASE:?}, retry period {RETRY:?})");

        // No rotation missed: every credential the Secret held while it was
        // sampled was unexpired at that moment.
        let issued = kit.google.issued_tokens();
        for (at, secret) in samples {
            let doc = secret_doc(&secret);
            let token = common::password(&doc);
            let t = issued.iter().find(|t| t.access_token == token).expect("a token the kit issued");
            assert!(t.expires_at > at, "the Secret held an expired token during the failover");
        }
        let (code, stderr) = terminate(standby.child).await;
        assert_eq!(code, Some(0), "{stderr}");
    }

    #[tokio::test]
    async fn a_leader_cut_off_from_the_api_server_stops_writing_before_the_standby_starts() {
        let kit = Kit::start_emulator().await;
        // 2 s tokens, replaced every second: the leader writes its file
        // every second for as long as it believes it leads.
        kit.google.set_token_lifetime(Duration::from_secs(2));
        let upstream = kit.emulator().url().trim_start_matches("http://").to_string();
        let proxy = Proxy::start(upstream.clone()).await;
        let behind_proxy = kit.path("kubeconfig-partitioned");
        let text = std::fs::read_to_string(kit.path("kubeconfig")).unwrap();
        std::fs::write(&behind_proxy, text.replace(&upstream, &format!("127.0.0.1:{}", proxy.port))).unwrap();

        let a = Replica::start(&kit, "replica-a", Some(&behind_proxy));
        // The partitioned replica must be the leader: start it first.
        wait_for(Duration::from_secs(10), "replica-a leads", async || {
            holder(&kit).await.filter(|h| h.starts_with("replica-a_")).and(a.file.exists().then_some(()))
        })
        .await;
        let b = Replica::start(&kit, "replica-b", None);
        let (a_stop, a_writes) = watch_file(a.file.clone());
        let (b_stop, b_writes) = watch_file(b.file.clone());
        tokio::time::sleep(Duration::from_secs(2)).await;

        let cut = Instant::now();
        proxy.cut();
        wait_for(Duration::from_secs(10), "replica-b leads", async || {
            holder(&kit).await.filter(|h| h.starts_with("replica-b_"))
        })
        .await;
        // Let both run on: a leader that never stopped would keep writing.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (_, a_log) = terminate(a.child).await;
        let (code, b_log) = terminate(b.child).await;
        assert_eq!(code, Some(0), "{b_log}");
        a_stop.store(true, Ordering::SeqCst);
        b_stop.store(true, Ordering::SeqCst);
        let (a_writes, b_writes) = (a_writes.await.unwrap(), b_writes.await.unwrap());

        // The leader was writing every second up to the cut...
        let before_cut = a_writes.iter().filter(|t| **t < cut).count();
        assert!(before_cut >= 2, "replica-a wrote {before_cut} times in the 2 s before the cut");
        // ...and stopped before the standby's first write, with a margin.
        let a_last = *a_writes.last().unwrap();
        let b_first = *b_writes.first().expect("replica-b wrote");
        assert!(a_last < b_first, "replica-a wrote {:?} after replica-b started", a_last - b_first);
        println!(
            "partition: replica-a's last write {:?} after the cut, replica-b's first {:?} after it",
            a_last.saturating_duration_since(cut),
            b_first - cut
        );
        assert!(a_log.contains("no renewal within the renew deadline"), "{a_log}");
        drop(proxy);
    }

    /// After a failover the new leader's fan-out writes only the Secrets
    /// that differ: none when its mint returns the same token (the metadata
    /// server hands out its cached one), one write per namespace when the
    /// token is new (a key).
    #[tokio::test]
    async fn a_new_leader_rewrites_only_the_namespaces_whose_secret_changes() {
        for (keyed, expected) in [(false, 0), (true, 5)] {
            let kit = Kit::start_emulator().await;
            let label = ("team", "pulls");
            for i in 0..5 {
                kit.kube.create_namespace(&format!("team-{i}"), &[label]).await;
            }
            let sinks = ["--secret", "pull", "--namespace-selector", "team=pulls"];
            let a = Replica::start_with(&kit, "replica-a", None, &sinks, keyed);
            let b = Replica::start_with(&kit, "replica-b", None, &sinks, keyed);
            let i = leader(&kit, &[&a, &b]).await;
            let (mut lead, standby) = if i == 0 { (a, b) } else { (b, a) };
            wait_for(Duration::from_secs(10), "every namespace written", async || {
                let mut all = true;
                for i in 0..5 {
                    all &= kit.kube.secret(&format!("team-{i}"), "pull").await.is_some();
                }
                all.then_some(())
            })
            .await;
            let holder_before = holder(&kit).await;
            lead.child.start_kill().unwrap();
            lead.child.wait().await.unwrap();
            kit.emulator().clear_requests();
            wait_for(Duration::from_secs(10), "the standby's first write", async || {
                standby.file.exists().then_some(())
            })
            .await;
            assert_ne!(holder(&kit).await, holder_before);
            // The fan-out cycle follows the file write: give it time to finish.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let writes = kit
                .emulator()
                .requests()
                .iter()
                .filter(|r| r.path.contains("/secrets") && matches!(r.method.as_str(), "PATCH" | "POST" | "PUT"))
                .count();
            assert_eq!(writes, expected, "writes of the new leader's first fan-out (keyed: {keyed})");
            let (code, stderr) = terminate(standby.child).await;
            assert_eq!(code, Some(0), "{stderr}");
        }
    }
}
