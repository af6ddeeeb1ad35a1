//! `xtask demo`: watch regcred keep a Secret fresh.
//!
//! The demo runs the real `regcred` binary against the emulators with tokens
//! that live seconds instead of an hour, and prints every write of the Secret
//! as it happens. Tokens are shown only as a fingerprint (the first hex digits
//! of their SHA-256), enough to see that they change, never the token itself.

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use regcred_testkit::{Google, KubeApi};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::regcred::{locate, sigterm};

const NAMESPACE: &str = "default";
const SECRET: &str = "gcr-pull";

/// What the demo reads out of one version of the Secret.
struct Snapshot {
    resource_version: String,
    expires_at: String,
    registries: Vec<String>,
    token: Option<String>,
}

fn fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

fn snapshot(secret: &Value) -> Snapshot {
    let doc: Option<Value> = secret
        .pointer("/data/.dockerconfigjson")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let auths = doc.as_ref().and_then(|d| d.get("auths")).and_then(Value::as_object);
    let registries = auths.map(|a| a.keys().cloned().collect()).unwrap_or_default();
    let token = auths
        .and_then(|a| a.values().next())
        .and_then(|e| e.get("password"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Snapshot {
        resource_version: secret
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string(),
        expires_at: secret
            .pointer("/metadata/annotations/regcred.dev~1expires-at")
            .and_then(Value::as_str)
            .unwrap_or("(none)")
            .to_string(),
        registries,
        token,
    }
}

/// "200×5 (read or updated), 201×1 (created)" — how the emulator answered
/// regcred's requests, each status with what it means here, so that the one
/// expected 404 (the Secret does not exist until regcred creates it) does not
/// read as a failure.
fn status_counts(reqs: &[regcred_testkit::RecordedRequest]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for r in reqs {
        *counts.entry(r.status).or_insert(0usize) += 1;
    }
    if counts.is_empty() {
        return "no requests".into();
    }
    let meaning = |status: u16| match status {
        200 => " (read, updated or a token issued)",
        201 => " (created)",
        404 => " (not found: the Secret does not exist until regcred creates it)",
        409 => " (conflict: retried with the current version)",
        _ => "",
    };
    counts.iter().map(|(s, n)| format!("{s}×{n}{}", meaning(*s))).collect::<Vec<_>>().join(", ")
}

pub async fn run(duration: Duration, token_lifetime: Duration, keep: bool) -> Result<ExitCode, String> {
    let tmp = tempfile::Builder::new()
        .prefix("regcred-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let dir = tmp.path().to_path_buf();
    let kube = KubeApi::start().await;
    let google = Google::start().await;
    google.set_token_lifetime(token_lifetime);
    let kubeconfig = dir.join("kubeconfig");
    let key = dir.join("key.json");
    let output = dir.join("config.json");
    let log = dir.join("regcred.log");
    kube.write_kubeconfig(&kubeconfig, NAMESPACE);
    google.write_key_file(&key);

    println!("Kubernetes API emulator at {}, Google token endpoint at {}", kube.url(), google.token_uri());
    println!(
        "Tokens live {}; regcred refreshes 10s (+ up to 1s jitter) before expiry.",
        humantime::format_duration(token_lifetime)
    );
    let bin = locate(false, |m| println!("{m}")).await?;
    let log_file = std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
    let args = [
        "run".to_string(),
        "--key-file".into(),
        key.display().to_string(),
        "--secret".into(),
        format!("{NAMESPACE}/{SECRET}"),
        "--output-file".into(),
        output.display().to_string(),
        "--refresh-before".into(),
        "10s".into(),
        "--jitter".into(),
        "1s".into(),
        "--admin-addr".into(),
        "127.0.0.1:0".into(),
    ];
    println!("$ regcred {}", args.join(" "));
    println!();
    let mut child = tokio::process::Command::new(&bin)
        .args(&args)
        .env("KUBECONFIG", &kubeconfig)
        // Nothing may reach the real Google: point the metadata server at the kit too.
        .env("GCE_METADATA_HOST", google.metadata_host())
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;

    let start = Instant::now();
    let mut last_rv = String::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut writes = 0usize;
    let mut exited_early = None;
    while start.elapsed() < duration {
        if let Ok(Some(status)) = child.try_wait() {
            exited_early = Some(status);
            break;
        }
        if let Some(secret) = kube.secret(NAMESPACE, SECRET) {
            let s = snapshot(&secret);
            if s.resource_version != last_rv {
                last_rv = s.resource_version.clone();
                writes += 1;
                let fp = s.token.as_deref().map(fingerprint).unwrap_or_else(|| "(none)".into());
                let what = match &s.token {
                    Some(t) if tokens.last() == Some(t) => "rewrite, same token",
                    Some(_) if tokens.is_empty() => "first write",
                    Some(_) => "rotation",
                    None => "no token!",
                };
                if let Some(t) = &s.token {
                    if tokens.last() != Some(t) {
                        tokens.push(t.clone());
                    }
                }
                println!(
                    "[{:>5.1}s] {what:<20} resourceVersion {:<4} expires-at {}  token sha256:{fp}  registries: {}",
                    start.elapsed().as_secs_f64(),
                    s.resource_version,
                    s.expires_at,
                    s.registries.join(", "),
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let status = match exited_early {
        Some(st) => st,
        None => {
            println!();
            println!("stopping regcred (SIGTERM) ...");
            sigterm(&child);
            match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
                Ok(Ok(st)) => st,
                Ok(Err(e)) => return Err(format!("waiting for regcred: {e}")),
                Err(_) => {
                    let _ = child.kill().await;
                    return Err("regcred did not stop within 15s of SIGTERM; killed it".into());
                }
            }
        }
    };
    let code = status.code().map(|c| c.to_string()).unwrap_or_else(|| format!("{status}"));
    println!("regcred exited with {code}");

    let rotations = tokens.len().saturating_sub(1);
    let fresh =
        kube.secret(NAMESPACE, SECRET).and_then(|s| snapshot(&s).token).is_some_and(|t| google.is_valid_token(&t));
    let file_ok = std::fs::read(&output)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|v| v.get("auths").is_some());
    println!(
        "{writes} Secret writes, {} distinct tokens, {rotations} rotation{}; output file {}",
        tokens.len(),
        if rotations == 1 { "" } else { "s" },
        if file_ok { "written" } else { "missing" }
    );
    println!("Kubernetes API answered: {}", status_counts(&kube.requests()));
    println!("Google token endpoint answered: {}", status_counts(&google.requests()));
    let ok = exited_early.is_none() && status.success() && rotations > 0 && fresh;
    if ok {
        println!("{rotations} rotations, Secret kept fresh");
    } else {
        if exited_early.is_some() {
            println!("regcred exited before the demo ended.");
        }
        if rotations == 0 {
            println!("No rotation happened.");
        }
        if !fresh {
            println!("The Secret does not hold a currently valid token.");
        }
        if let Ok(text) = std::fs::read_to_string(&log) {
            println!("--- last lines of regcred's log ---");
            let lines: Vec<&str> = text.lines().collect();
            for l in &lines[lines.len().saturating_sub(20)..] {
                println!("{l}");
            }
        }
    }
    if keep {
        let kept = tmp.keep();
        println!("kept {}", kept.display());
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
