//! What goes into a new EKS cluster after the AWS resources exist: authentication to the API
//! server, the worker nodes' permission to join, the manifests under `manifests/` with the names
//! they share, the site's public URL, the install and uninstall of the platform, and the waits in
//! between (the ingress controller's verdict on the public routes among them), and the controller
//! that keeps the load balancer's targets equal to the Ready nodes.

pub mod auth;
pub mod cluster;
pub mod credentials;
pub mod error;
pub mod ingress;
pub mod install;
pub mod join;
pub mod kubeconfig;
pub mod manifests;
pub mod names;
pub mod public_url;
pub mod targets;
pub mod verdict;
pub mod wait;

pub use credentials::{Credentials, initial_admin};
pub use error::{Error, Result};
pub use install::{Change, InstallSpec, Installed, Outcome, install, uninstall};
pub use public_url::PublicUrl;
