//! The ingress controller's fixed NodePorts: the controller's NodePort Service (installed here)
//! and the NLB's target group and health check (provisioner) must agree, so they are pinned once.

/// NodePort of the controller's HTTP listener (container port 80): the NLB forwards here.
pub const HTTP_NODE_PORT: i32 = 30080;
/// NodePort of the controller's readiness endpoint (container port 8081): the NLB health check.
pub const HEALTH_NODE_PORT: i32 = 30081;
/// The readiness path the NGINX Ingress Controller serves on its readiness port.
pub const HEALTH_PATH: &str = "/nginx-ready";
/// The IngressClass users' Ingresses name.
pub const INGRESS_CLASS: &str = "nginx";
