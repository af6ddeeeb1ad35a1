//! The `regcred` binary: parse the command line, install logging, run, and
//! turn the outcome into an exit code (0 ok, 1 refresh failed, 2 bad usage).

use std::process::ExitCode;

use clap::Parser as _;
use regcred::{app, config::Cli, telemetry};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are "errors" to clap; print them as clap does.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&one_line(&e.render().to_string()), 2),
    };
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string(), 2),
    };
    if let Err(e) = telemetry::init(config.log_format, config.log_level.as_deref()) {
        return fail(&e, 2);
    }
    // One thread is plenty for a process that sleeps most of the time, and
    // keeps the resident set small.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}"), 1),
    };
    runtime.block_on(async {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return fail("cannot install signal handlers", 1);
        };
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = stop.send(true);
        });
        match app::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e.to_string(), e.exit_code()),
        }
    })
}

/// Folds clap's multi-line usage error into one line, keeping the hint
/// (possible values, the flag that was meant) and dropping the usage block.
fn one_line(rendered: &str) -> String {
    let parts: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect();
    format!("{}; see `regcred --help`", parts.join("; "))
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("regcred: error: {message}");
    ExitCode::from(code)
}
