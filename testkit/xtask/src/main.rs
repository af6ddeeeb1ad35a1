//! `xtask`: regcred's developer commands, kept out of the emulator crate.
//!
//! * `demo` is a newcomer's first command: it starts the test kit's
//!   emulators, runs a real `regcred run` against them with short-lived
//!   tokens, and narrates each credential rotation as it lands in the Secret.
//! * `bench` measures the release `regcred` fan-out (cycle time, requests per
//!   namespace, new-namespace latency, peak RSS, idle CPU) against the
//!   Kubernetes emulator or a real API server, and prints a Markdown report.

mod bench;
mod demo;
mod regcred;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "regcred's developer commands: the demo and the fan-out benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run regcred against the test kit and show it keeping a Secret fresh.
    Demo {
        /// How long to let regcred run.
        #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Lifetime of the access tokens, short so that rotations happen quickly.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        token_lifetime: Duration,
        /// Keep the temporary directory (kubeconfig, key, regcred's log) afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// Benchmark the release regcred's fan-out; prints a Markdown report.
    Bench(bench::Options),
}

#[tokio::main]
async fn main() -> ExitCode {
    let (what, result) = match Cli::parse().command {
        Command::Demo { duration, token_lifetime, keep } => ("demo", demo::run(duration, token_lifetime, keep).await),
        Command::Bench(opts) => ("bench", bench::run(opts).await.map(|()| ExitCode::SUCCESS)),
    };
    result.unwrap_or_else(|e| {
        eprintln!("{what} failed: {e}");
        ExitCode::FAILURE
    })
}
