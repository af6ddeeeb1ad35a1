//! Test kit for regcred: faithful local emulators of the peers regcred talks
//! to, served over real HTTP on 127.0.0.1 so the product's real HTTP clients
//! (kube-rs, its Google token client) are exercised end to end.
//!
//! * [`kube::KubeApi`]: the Kubernetes API server (namespaces, secrets,
//!   service accounts, events, watches, validation).
//! * [`google::Google`]: Google's OAuth 2.0 token endpoint (JWT-bearer and
//!   refresh-token grants), the GCE metadata server, STS and IAM Credentials.
//! * [`aws::Aws`]: Amazon ECR's and ECR Public's `GetAuthorizationToken`
//!   (SigV4-verified), STS, IMDSv2 and the EKS Pod Identity agent.
//! * [`azure::Azure`]: Microsoft Entra ID's token endpoint (client assertion
//!   and client secret), the managed identity endpoint of Azure's IMDS, and
//!   an Azure Container Registry's token server (`/oauth2/exchange`).
//! * [`front::RegistryFront`]: a registry's own host name over TLS (ECR's,
//!   ACR's) in front of a plain Docker registry, letting through what the
//!   cloud would: ECR's Basic tokens, ACR's bearer tokens.
//! * [`faults::Faults`]: error statuses, hangs, delays, garbage bodies and
//!   dropped connections, injectable into either.
//!
//! The emulators must reject what the real servers reject, with the real error
//! shapes: a client that passes here should pass against the real thing.

pub mod aws;
pub mod azure;
pub mod faults;
pub mod front;
pub mod google;
pub mod kube;
mod server;

pub use aws::{Aws, IssuedEcrToken, IssuedKey};
pub use azure::{Azure, AzureToken};
pub use faults::{Fault, Faults};
pub use front::{Backend, FrontConfig, FrontError, RegistryFront, TlsIdentity};
pub use google::{Google, IssuedToken};
pub use kube::{KubeApi, RecordedRequest};
