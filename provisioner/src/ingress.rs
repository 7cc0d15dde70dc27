//! The ingress controller's fixed NodePorts, pinned once in the platform crate (which installs the
//! controller's NodePort Service) and used here for the NLB's target group and the node rules.

pub use platform::ingress::{HEALTH_NODE_PORT, HEALTH_PATH, HTTP_NODE_PORT};
