//! The page frame every feature renders into, and the pieces of its forms: CSRF field, inline
//! field errors, the general error banner and the error page.

use maud::{DOCTYPE, Markup, html};

use crate::accounts::store::{CurrentUser, InitialAdminSecret};
use crate::error::FieldError;

/// What every page needs: who is signed in and the form token.
pub struct Frame<'a> {
    pub user: Option<&'a CurrentUser>,
    pub csrf: &'a str,
}

impl<'a> Frame<'a> {
    /// The frame of a page for a signed-in user.
    pub fn signed_in(user: &'a CurrentUser, csrf: &'a str) -> Self {
        Self {
            user: Some(user),
            csrf,
        }
    }

    /// The frame of a page shown before anyone signs in.
    pub fn anonymous(csrf: &'a str) -> Self {
        Self { user: None, csrf }
    }
}

/// Tells an administrator that the generated first password is still stored, and how to end that.
fn initial_admin_notice(secret: &InitialAdminSecret) -> Markup {
    html! {
        div.banner.warn role="status" data-notice="initial-admin" {
            strong { "The first administrator's generated password is still stored in the cluster." }
            " Change it on " a href="/account" { "your account page" } ", then delete the Secret: "
            code { "kubectl -n " (secret.namespace) " delete secret " (secret.name) }
        }
    }
}

pub fn page(frame: &Frame, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · kdeploy" }
                link rel="stylesheet" href="/static/style.css";
                script src="/static/app.js" defer {}
            }
            body data-csrf=(frame.csrf) {
                header.topbar {
                    a.brand href="/" { "kdeploy" }
                    @if let Some(user) = frame.user {
                        nav {
                            a href="/repos" { "Repositories" }
                            a href="/compose" { "Compose" }
                            a href="/registries" { "Registries" }
                            a href="/account" { "Account" }
                            @if user.admin { a href="/admin" { "Admin" } }
                        }
                        span.who {
                            span { "Signed in as " strong { (user.name) } }
                            span.ns { "namespace " code { (user.namespace()) } }
                            form method="post" action="/logout" {
                                (csrf_field(frame.csrf))
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main {
                    @if let Some(secret) = frame.user.and_then(|u| u.initial_admin_secret.as_ref()) {
                        (initial_admin_notice(secret))
                    }
                    (body)
                }
            }
        }
    }
}

pub(crate) fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

pub(crate) fn field_error(errors: &[FieldError], field: &str) -> Markup {
    html! {
        @for e in errors.iter().filter(|e| e.field == field) {
            p.error id={ (field) "-error" } role="alert" { (e.message) }
        }
    }
}

pub(crate) fn general_error(message: Option<&str>) -> Markup {
    html! {
        @if let Some(m) = message { div.banner.error role="alert" { (m) } }
    }
}

pub fn error_page(frame: &Frame, status: u16, message: &str) -> Markup {
    let advice = match status {
        403 => "If you followed a link, it may belong to another account.",
        404 => "It may have been deleted, or the address is mistyped.",
        429 => "Wait a little before trying again.",
        s if s >= 500 => {
            "Try again in a moment; if it keeps happening, tell the platform operator."
        }
        _ => "Go back and try again.",
    };
    page(
        frame,
        "Something went wrong",
        html! {
            h1 { "Something went wrong" }
            div.banner.error role="alert" { (message) }
            p { (advice) }
            p { a href="/repos" { "Back to your repositories" } }
        },
    )
}

/// The first error of a field that belongs to the whole form (shown as a banner, not inline).
pub(crate) fn form_error<'e>(errors: &'e [FieldError], field: &str) -> Option<&'e str> {
    errors
        .iter()
        .find(|e| e.field == field)
        .map(|e| e.message.as_str())
}
