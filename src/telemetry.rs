//! Logging set-up: text or JSON lines on stderr, filtered by `--log-level`
//! or `RUST_LOG`.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How regcred logs: `--log-format` and `--log-level`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `--log-format`.
    pub format: LogFormat,
    /// A filter such as `info,kube=warn`; `None` leaves it to `RUST_LOG`.
    pub level: Option<String>,
}

/// Logging flags.
#[derive(Debug, clap::Args)]
#[group(skip)]
pub(crate) struct Args {
    /// Log line format.
    #[arg(long, env = "REGCRED_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Log filter: error, warn, info, debug, trace or off, or directives such as
    /// `info,kube=warn`; RUST_LOG is used when this is not given.
    #[arg(long, env = "REGCRED_LOG_LEVEL", value_name = "LEVEL", value_parser = parse_log_level)]
    log_level: Option<String>,
}

impl Args {
    /// The settings [`init`] takes.
    pub(crate) fn settings(&self) -> Settings {
        Settings { format: self.log_format, level: self.log_level.clone() }
    }
}

/// A log filter whose every part names a level (`debug`, `kube=warn`), so
/// that a typo is refused instead of silently filtering out every line.
fn parse_log_level(s: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let ok = !s.trim().is_empty()
        && s.split(',').all(|part| {
            let level =
                part.rsplit_once('=').map_or(part, |(target, level)| if target.is_empty() { "" } else { level });
            LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
        });
    if ok {
        Ok(s.to_string())
    } else {
        Err("expected error, warn, info, debug, trace or off, or directives such as `info,kube=warn`".into())
    }
}

/// The client module's level (see [`init`]).
const QUIET_KUBE_CLIENT: &str = "kube_client::client=error";

/// Installs the global subscriber. `level` wins over `RUST_LOG`; without
/// either, regcred logs at `default`.
pub fn init(settings: &Settings, default: &str) -> Result<(), String> {
    let format = settings.format;
    let filter = match settings.level.as_deref() {
        Some(l) => EnvFilter::try_new(l).map_err(|e| format!("invalid --log-level {l:?}: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    // The Kubernetes client logs, below error level, the body of an answer it
    // cannot decode, which may be a Secret with a credential in it; regcred
    // reports those failures itself. Whatever filter is asked for, this stays.
    let filter = filter.add_directive(QUIET_KUBE_CLIENT.parse().expect("a valid directive"));
    // Colour only for a person at a terminal (https://no-color.org).
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    }
    .map_err(|e| format!("cannot install the logger: {e}"))
}
