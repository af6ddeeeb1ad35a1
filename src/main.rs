//! The `regcred` binary: parse the command line, install logging, run, and
//! turn the outcome into an exit code (0 ok, 1 refresh failed, 2 bad usage).

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};
use regcred::{app, cli::Cli, telemetry};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are "errors" to clap; print them as clap does.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // Plain `regcred`, without a command: the help itself, readable, on
        // stdout, and the exit code of a usage error.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
        Err(e) => return fail(&name_env_source(&one_line(&e.render().to_string())), 2),
    };
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => return fail(&name_env_source(&e.to_string()), 2),
    };
    if let Err(e) = telemetry::init(&config.log, config.default_log_level()) {
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
/// (possible values, the flag that was meant, the flags a relation needs)
/// and dropping the usage block.
fn one_line(rendered: &str) -> String {
    let parts = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(|l| l.strip_prefix("error: ").unwrap_or(l));
    let mut line = String::new();
    for part in parts {
        // "...were not provided:" introduces the list that follows.
        let separator = if line.is_empty() {
            ""
        } else if line.ends_with(':') {
            " "
        } else {
            "; "
        };
        line.push_str(separator);
        line.push_str(part);
    }
    format!("{line}{SEE_HELP}")
}

const SEE_HELP: &str = "; see `regcred --help`";

/// When a message names a flag that was not on the command line but came
/// from its `REGCRED_*` environment variable, says so: the user must look
/// at the environment (a chart's values), not at the arguments.
fn name_env_source(message: &str) -> String {
    let given: Vec<String> = std::env::args().skip(1).collect();
    let on_command_line = |flag: &str| given.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    let command = Cli::command();
    let flags = command.get_subcommands().flat_map(|c| c.get_arguments()).chain(command.get_arguments());
    for arg in flags {
        let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else { continue };
        let flag = format!("--{long}");
        let named = message
            .match_indices(&flag)
            .any(|(i, _)| !message[i + flag.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-'));
        if named && !on_command_line(&flag) && std::env::var_os(env).is_some() {
            let source = format!(" (set by the environment variable {})", env.to_string_lossy());
            return match message.strip_suffix(SEE_HELP) {
                Some(base) => format!("{base}{source}{SEE_HELP}"),
                None => format!("{message}{source}"),
            };
        }
    }
    message.to_string()
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("regcred: error: {message}");
    ExitCode::from(code)
}
