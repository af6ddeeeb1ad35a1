//! regcred keeps Kubernetes image-pull credentials for Google's container
//! registries, Amazon ECR and Azure Container Registry fresh.
//!
//! The pieces, bottom floor first; every import points down
//! (`.ci/module-graph` prints the floors and fails CI on a circle):
//! - leaf types: `secret` (redacted values), `credential`, `registry`,
//!   `schedule` (timing arithmetic), `health`, `metrics`, `http`;
//! - `render`: the Docker `config.json` auths document; `cluster`: the
//!   Kubernetes client and its one request policy;
//! - `source`: where credentials come from (key file, metadata server,
//!   impersonation, federation), the `CredentialSource` seam; `aws`: AWS
//!   credentials and the ECR token sources; `acr`: Azure Container
//!   Registry's credential (an Azure AD token exchanged at the registry);
//!   `sink`: where the document is written
//!   (Secrets, files); `events`: Kubernetes Events;
//! - `fanout`: the same Secret in every selected namespace; `refresh`:
//!   the loop; `leader`: one writer among replicas (a Lease); `provider`:
//!   the kubelet credential provider;
//! - `admin`, `telemetry`: what operators see;
//! - `cli`: the command line, assembled from each component's own flags
//!   (`source::Args`, `fanout::Args`, ...) into a validated `Config` whose
//!   `Command` holds each component's own settings;
//! - `app`: the wiring.

// Only `main` uses this library: everything but its entry points is
// crate-private. The compiler reports a private item nothing calls, but not
// one reachable from a `pub` item (a public method of a type `cli::Config`
// exposes, a trait impl), so those are found by reading, not by the build.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, missing_docs, unreachable_pub)]

pub(crate) mod acr;
pub(crate) mod admin;
pub mod app;
pub(crate) mod atomic_write;
pub(crate) mod aws;
pub mod cli;
pub(crate) mod cluster;
pub(crate) mod credential;
pub(crate) mod events;
pub(crate) mod fanout;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod leader;
pub(crate) mod metrics;
pub(crate) mod provider;
pub(crate) mod refresh;
pub(crate) mod registry;
pub(crate) mod render;
pub(crate) mod schedule;
pub(crate) mod secret;
pub(crate) mod sink;
pub(crate) mod source;
pub mod telemetry;
