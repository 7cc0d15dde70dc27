//! The deploy site (issue 5): developers deploy public images into their own namespace and call them.
//! The cluster is its only store, so any number of replicas can serve.
//!
//! Each feature is a folder with its routes' handlers, views and store side by side: `accounts`,
//! `repositories` and the API `console`; `layout` is the page frame they all render into.

pub mod accounts;
pub mod app;
pub mod config;
pub mod console;
pub mod error;
pub mod field_error;
pub mod json;
pub mod json_fields;
pub mod kube_status;
pub mod layout;
pub mod mirror;
pub mod repositories;
pub mod state;

pub use app::app;
pub use config::{ClusterNames, Config};
pub use error::AppError;
pub use state::AppState;
