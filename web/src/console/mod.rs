//! The API test console (issue 7): a repository's registered endpoints, sent through the
//! ingress to the repository's public route, with a per-user history.

//!
//! `endpoints` registers, orders and imports a repository's endpoints; `calls` turns an endpoint
//! or an ad-hoc request into a checked request, sends it and keeps the history.

pub mod api;
pub mod calls;
pub mod endpoints;
pub mod model;
pub mod openapi;
pub mod pages;
pub mod request;
pub mod rules;
pub mod send;
pub mod store;
pub mod views;
