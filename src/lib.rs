//! regcred keeps Kubernetes image-pull credentials for Google's container
//! registries fresh.
//!
//! The pieces, bottom floor first; every import points down:
//! - leaf types: [`secret`] (redacted values), [`credential`], [`registry`],
//!   [`schedule`] (timing arithmetic), [`health`], [`metrics`], [`http`];
//! - [`render`]: the Docker `config.json` auths document; [`cluster`]: the
//!   Kubernetes client and its one request policy;
//! - [`source`]: where credentials come from (key file, metadata server,
//!   impersonation, federation); [`sink`]: where the document is written
//!   (Secrets, files); [`events`]: Kubernetes Events;
//! - [`fanout`]: the same Secret in every selected namespace; [`refresh`]:
//!   the loop; [`provider`]: the kubelet credential provider;
//! - [`admin`], [`telemetry`]: what operators see;
//! - [`config`]: the command line, parsed once into a validated `Config`;
//! - [`app`]: the wiring.

pub mod admin;
pub mod app;
pub mod cluster;
pub mod config;
pub mod credential;
pub mod events;
pub mod fanout;
pub mod health;
pub mod http;
pub mod metrics;
pub mod provider;
pub mod refresh;
pub mod registry;
pub mod render;
pub mod schedule;
pub mod secret;
pub mod sink;
pub mod source;
pub mod telemetry;
