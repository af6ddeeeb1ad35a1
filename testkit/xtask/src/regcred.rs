//! The `regcred` binary under demonstration or measurement.

use std::path::{Path, PathBuf};

/// `$REGCRED_BIN`, or `cargo build [--release] --bin regcred` in the workspace
/// and its output (`target/debug/regcred` or `target/release/regcred`).
/// `progress` says what is being built (the demo prints it on stdout, the
/// benchmark on stderr, keeping its stdout for the report).
pub async fn locate(release: bool, progress: fn(&str)) -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("REGCRED_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).expect("testkit/xtask lives in the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut args = vec!["build", "--bin", "regcred"];
    if release {
        args.insert(1, "--release");
    }
    let what = format!("cargo {}", args.join(" "));
    // Not --quiet: a first build takes minutes, and cargo's own progress
    // (on stderr) shows that something is happening.
    progress(&format!("building regcred ({what}; the first build takes a few minutes) ..."));
    let mut command = tokio::process::Command::new(&cargo);
    // Not the package variables `cargo run` gave this process: build scripts
    // (ring's) watch some of them, and the nested build would rebuild them
    // and everything above, and the next `cargo run` again.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_") || key.starts_with("CARGO_MANIFEST_") || key.starts_with("CARGO_BIN_") {
            command.env_remove(&*key);
        }
    }
    let status = command
        .args(&args)
        .current_dir(root)
        .status()
        .await
        .map_err(|e| format!("cannot run {}: {e}", cargo.to_string_lossy()))?;
    if !status.success() {
        return Err(format!("{what} failed ({status})"));
    }
    // A relative CARGO_TARGET_DIR is relative to the workspace, where cargo ran.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |t| root.join(t));
    let bin = target.join(if release { "release" } else { "debug" }).join("regcred");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("built regcred but found no binary at {}", bin.display()))
    }
}

/// Asks a running child to stop as a kubelet would.
pub fn sigterm(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
}
