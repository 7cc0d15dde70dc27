//! The deploy site (issue 5): developers deploy public images into their own namespace and call them.
//! The cluster is its only store, so any number of replicas can serve.

pub mod api;
pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod console;
pub mod error;
pub mod objects;
pub mod pages;
pub mod status;
pub mod validation;
pub mod views;

pub use app::{AppState, app};
pub use config::Config;
pub use error::AppError;
