//! The `regcred` binary: parse the command line, install logging, run, and
//! turn the outcome into an exit code (0 ok, 1 refresh failed, 2 bad usage).

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};
use regcred::config::{Cli, Command};
use regcred::provider::install;
use regcred::{app, telemetry};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are "errors" to clap; print them as clap does.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // Plain `regcred` (or `regcred run` without... nothing required):
        // the help itself, readable, on stdout.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
        Err(e) => return fail(&name_env_source(&one_line(&e.render().to_string())), 2),
    };
    let cli = match cli.command {
        // The installer needs no credentials and no cluster: it runs on its own settings.
        Command::InstallCredentialProvider(args) => {
            if let Err(e) = telemetry::init(args.log_format, None, "info") {
                return fail(&e, 2);
            }
            return until_signal(|shutdown| async move {
                install::run(args, shutdown).await.map_err(|e| (e.to_string(), e.exit_code()))
            });
        }
        command => Cli { command },
    };
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => return fail(&name_env_source(&e.to_string()), 2),
    };
    if let Err(e) = telemetry::init(config.log_format, config.log_level.as_deref(), config.default_log_level()) {
        return fail(&e, 2);
    }
    until_signal(|shutdown| async move { app::run(config, shutdown).await.map_err(|e| (e.to_string(), e.exit_code())) })
}

/// Runs `task` on a runtime until it ends; SIGTERM and SIGINT flip the
/// `shutdown` it is given. An error is printed as one line, with its exit code.
fn until_signal<F, Fut>(task: F) -> ExitCode
where
    F: FnOnce(tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<(), (String, u8)>>,
{
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
        match task(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err((message, code)) => fail(&message, code),
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
    format!("{}{SEE_HELP}", parts.join("; "))
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
