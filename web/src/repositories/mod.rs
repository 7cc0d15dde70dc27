//! Repositories: a public image deployed as a Deployment, Service and Ingress in the developer's
//! namespace, with the pages and JSON API to create, watch, change and delete it.

pub mod api;
pub mod describe;
pub mod detail;
pub mod image;
pub mod objects;
pub mod pages;
pub mod status;
pub mod store;
pub mod validation;
pub mod views;
