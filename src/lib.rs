//! regcred keeps Kubernetes image-pull credentials for Google's container
//! registries fresh.
//!
//! The pieces, in the order data flows through them:
//! - [`config`]: the command line, parsed once into a validated `Config`;
//! - [`source`]: where credentials come from (key file, metadata server, ...);
//! - [`render`]: the Docker `config.json` auths document;
//! - [`sink`]: where it is written (Kubernetes Secrets, files), and
//!   [`fanout`]: the same Secret in every selected namespace;
//! - [`refresh`] and [`schedule`]: the loop and its timing arithmetic;
//! - [`admin`], [`health`], [`metrics`], [`events`], [`telemetry`]: what operators see;
//! - [`app`]: the wiring.

pub mod admin;
pub mod app;
pub mod cluster;
pub mod config;
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
