//! Repositories: a public image deployed as a Deployment, Service and Ingress (a minion of the
//! platform's master Ingress for the public host) in the developer's namespace, with the pages and
//! JSON API to create, watch, change and delete it; the ingress controller's verdict on the route
//! is part of its state (`route`).

pub mod api;
pub mod compose;
pub mod compose_pages;
pub mod compose_store;
pub mod describe;
pub mod detail;
pub mod env;
pub mod env_pages;
pub mod image;
pub mod live;
pub mod logs;
pub mod objects;
pub mod pages;
pub mod registries;
pub mod registry_pages;
pub mod registry_store;
pub mod route;
pub mod status;
pub mod store;
pub mod validation;
pub mod views;
pub mod webhook;
