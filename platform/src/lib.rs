//! What goes into a new EKS cluster after the AWS resources exist: authentication to the API
//! server, the worker nodes' permission to join, the manifests under `manifests/`, and the waits.

pub mod auth;
pub mod cluster;
pub mod ingress;
pub mod join;
pub mod kubeconfig;
pub mod manifests;
