//! The namespace fan-out flags, and the [`Settings`] they make.
//!
//! How they combine: one way of choosing namespaces; the options that act
//! on chosen namespaces only with one; `--prune` only with
//! `--namespace-selector` (namespaces stop matching only a selector);
//! `--exclude-namespace` not with `--namespace` (named namespaces are never
//! excluded); one bare `--secret NAME`. clap checks the relations between
//! flags that take values. The boolean flags' relations are checked here,
//! on their values: clap counts a flag set to `false` by its environment
//! variable (`REGCRED_ALL_NAMESPACES=false`) as given, which would turn
//! "off" into a conflict, or satisfy a requirement with nothing.

use std::str::FromStr;
use std::time::Duration;

use super::{NamespaceName, Pattern, Selection, ServiceAccountPatching, Settings, DEFAULT_EXCLUDES};
use crate::cluster::WATCH_TIMEOUT;
use crate::registry::is_dns_subdomain;
use crate::schedule::duration_in;
use crate::sink::{SecretKey, SecretTarget};

/// Namespace fan-out: the same Secret (`--secret NAME`) in many namespaces.
#[derive(Debug, clap::Args)]
#[group(skip)]
#[command(next_help_heading = "Namespace fan-out")]
pub(crate) struct Args {
    /// Write `--secret NAME` into this namespace; repeat or comma-separate.
    #[arg(
        long = "namespace",
        env = "REGCRED_NAMESPACE",
        value_name = "NAME",
        value_delimiter = ',',
        conflicts_with = "namespace_selector"
    )]
    namespaces: Vec<NamespaceName>,

    /// Write `--secret NAME` into every namespace whose labels match this
    /// selector (for example `regcred=enabled`), including ones created later.
    #[arg(long, env = "REGCRED_NAMESPACE_SELECTOR", value_name = "SELECTOR", value_parser = parse_selector)]
    namespace_selector: Option<String>,

    /// Write `--secret NAME` into every namespace, including ones created later.
    #[arg(long, env = "REGCRED_ALL_NAMESPACES")]
    all_namespaces: bool,

    /// Skip namespaces matching this name or glob (`*`, `?`) under
    /// --all-namespaces or --namespace-selector; repeat or comma-separate.
    /// kube-system, kube-public and kube-node-lease are always skipped there.
    #[arg(
        long = "exclude-namespace",
        env = "REGCRED_EXCLUDE_NAMESPACE",
        value_name = "PATTERN",
        value_delimiter = ',',
        conflicts_with = "namespaces"
    )]
    exclude_namespaces: Vec<Pattern>,

    /// Delete the regcred-managed Secret from a namespace that stops matching
    /// --namespace-selector. Secrets regcred does not manage are never touched.
    #[arg(long, env = "REGCRED_PRUNE")]
    prune: bool,

    /// Add the Secret to this ServiceAccount's imagePullSecrets in every
    /// selected namespace (for example `default`); repeat or comma-separate.
    #[arg(
        long = "patch-service-account",
        env = "REGCRED_PATCH_SERVICE_ACCOUNT",
        value_name = "NAME",
        value_delimiter = ','
    )]
    patch_service_accounts: Vec<ServiceAccountName>,

    /// Add the Secret to the imagePullSecrets of every ServiceAccount annotated
    /// `regcred.dev/image-pull-secret: "true"` in the selected namespaces.
    #[arg(long, env = "REGCRED_PATCH_ANNOTATED_SERVICE_ACCOUNTS")]
    patch_annotated_service_accounts: bool,

    /// Most Kubernetes writes in flight at once (at least 1).
    #[arg(long, env = "REGCRED_MAX_CONCURRENT_WRITES", value_name = "N", default_value_t = 16, value_parser = parse_positive)]
    max_concurrent_writes: usize,

    /// Most Kubernetes requests per second during fan-out (0: no limit).
    #[arg(long, env = "REGCRED_MAX_REQUESTS_PER_SECOND", value_name = "N", default_value_t = 100)]
    max_requests_per_second: u32,

    /// How long each namespace and Secret watch stays open before it is
    /// renewed (1s to 290s). A watch silent for this plus 5s is treated as
    /// broken and reopened; lower it behind proxies that drop idle connections silently.
    #[arg(long, env = "REGCRED_WATCH_TIMEOUT", value_name = "DURATION", default_value = "290s", value_parser = parse_watch_timeout)]
    watch_timeout: Duration,
}

/// Fan-out flags that do not fit together (and that clap does not check).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FanOutError {
    /// `--all-namespaces` with another way of choosing.
    #[error("give only one of --namespace, --namespace-selector and --all-namespaces")]
    OneWay,
    /// Options for chosen namespaces, and none chosen.
    #[error("--exclude-namespace, --prune and --patch-service-account(s) need --namespace, --namespace-selector or --all-namespaces")]
    NoNamespaces,
    /// `--prune` without a selector.
    #[error("--prune acts on namespaces that stop matching --namespace-selector; use it with --namespace-selector")]
    PruneWithoutSelector,
    /// Fan-out with something else than one `--secret NAME`.
    #[error("with namespace fan-out give exactly one --secret NAME, without a namespace")]
    OneBareSecret,
}

impl Args {
    /// The fan-out settings, or `None` when no namespaces are chosen (the
    /// listed Secrets are written instead).
    pub(crate) fn into_settings(
        self,
        secrets: &[SecretTarget],
        key: &SecretKey,
    ) -> Result<Option<Settings>, FanOutError> {
        let chosen = !self.namespaces.is_empty() || self.namespace_selector.is_some();
        if self.all_namespaces && chosen {
            return Err(FanOutError::OneWay);
        }
        let excludes = || DEFAULT_EXCLUDES.iter().map(|p| Pattern::new(p)).chain(self.exclude_namespaces.clone());
        let selection = match self.namespace_selector {
            Some(selector) => Selection::Labels { selector, excludes: excludes().collect() },
            None if self.all_namespaces => Selection::All { excludes: excludes().collect() },
            None if !self.namespaces.is_empty() => Selection::Names(self.namespaces),
            None if self.prune
                || !self.exclude_namespaces.is_empty()
                || !self.patch_service_accounts.is_empty()
                || self.patch_annotated_service_accounts =>
            {
                return Err(FanOutError::NoNamespaces)
            }
            None => return Ok(None),
        };
        if self.prune && !matches!(selection, Selection::Labels { .. }) {
            return Err(FanOutError::PruneWithoutSelector);
        }
        let [SecretTarget { namespace: None, name }] = secrets else {
            return Err(FanOutError::OneBareSecret);
        };
        Ok(Some(Settings {
            selection,
            secret_name: name.clone(),
            key: key.clone(),
            prune: self.prune,
            service_accounts: ServiceAccountPatching {
                names: self.patch_service_accounts.into_iter().map(|n| n.0).collect(),
                annotated: self.patch_annotated_service_accounts,
            },
            max_concurrent_writes: self.max_concurrent_writes,
            writes_per_second: self.max_requests_per_second,
            watch_timeout: self.watch_timeout,
        }))
    }
}

/// A ServiceAccount's name: a lower-case DNS subdomain.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ServiceAccountName(String);

impl FromStr for ServiceAccountName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_dns_subdomain(s) {
            Ok(ServiceAccountName(s.to_string()))
        } else {
            Err("expected a ServiceAccount name: a lower-case DNS subdomain".into())
        }
    }
}

fn parse_selector(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("the selector is empty; use --all-namespaces for every namespace".into())
    } else {
        Ok(s.to_string())
    }
}

fn parse_positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number, at least 1".into()),
    }
}

fn parse_watch_timeout(s: &str) -> Result<Duration, String> {
    let range = Duration::from_secs(1)..=WATCH_TIMEOUT;
    duration_in(s, range, "expected 1s to 290s (the API server refuses a client-chosen watch timeout from 295s)")
}
