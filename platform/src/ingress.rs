//! The ingress controller's pinned image and the numbers the NLB must agree with: the controller's
//! NodePort Service (installed here) and the target group and health check (provisioner).

pub use crate::names::{HEALTH_NODE_PORT, HEALTH_PATH, HTTP_NODE_PORT, INGRESS_CLASS};

/// The `source.component` of the Events in which the controller gives its verdict on an Ingress
/// (client-go's recorder, as NIC sets it up in `cmd/nginx-ingress`).
pub const EVENT_SOURCE: &str = "nginx-ingress-controller";

/// F5 NGINX Ingress Controller, OSS image, pinned so that every install runs the tested version.
pub const CONTROLLER_IMAGE: &str = "nginx/nginx-ingress:5.5.4";
