//! Accounts: users, sign-in and sessions, the first administrator, and the account and admin pages.

pub mod api;
pub mod bootstrap;
pub mod pages;
pub mod password;
pub mod session;
pub mod store;
pub mod views;

pub use session::{Admin, SessionSource};
pub use store::{Accounts, CurrentUser};
