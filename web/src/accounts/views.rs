//! The sign-in, registration, account and administration pages.

use maud::{Markup, html};

use super::password::PASSWORD_RULE;
use super::store::UserRow;
use crate::error::FieldError;
use crate::layout::{Frame, csrf_field, field_error, general_error, page};

pub fn login(frame: &Frame, username: &str, error: Option<&str>, registration: bool) -> Markup {
    page(
        frame,
        "Sign in",
        html! {
            section.narrow {
                h1 { "Sign in" }
                (general_error(error))
                form.stack method="post" action="/login" data-busy {
                    (csrf_field(frame.csrf))
                    label for="username" { "Username" }
                    input #username name="username" autocomplete="username" required value=(username);
                    label for="password" { "Password" }
                    input #password name="password" type="password" autocomplete="current-password" required;
                    button.primary type="submit" { "Sign in" }
                }
                @if registration { p { "No account yet? " a href="/register" { "Create one" } "." } }
            }
        },
    )
}

pub fn register(frame: &Frame, username: &str, errors: &[FieldError]) -> Markup {
    page(
        frame,
        "Create an account",
        html! {
            section.narrow {
                h1 { "Create an account" }
                form.stack method="post" action="/register" data-busy {
                    (csrf_field(frame.csrf))
                    label for="username" { "Username" }
                    p.rule { "Becomes your namespace: lowercase letters, digits and '-', at most 63 characters." }
                    input #username name="username" autocomplete="username" required value=(username);
                    (field_error(errors, "username"))
                    label for="password" { "Password" }
                    p.rule { (PASSWORD_RULE) }
                    input #password name="password" type="password" autocomplete="new-password" required;
                    (field_error(errors, "password"))
                    button.primary type="submit" { "Create account" }
                }
            }
        },
    )
}

pub fn account(frame: &Frame, errors: &[FieldError], notice: Option<&str>) -> Markup {
    page(
        frame,
        "Your account",
        html! {
            section.narrow {
                h1 { "Your account" }
                @if let Some(n) = notice { div.banner.ok role="status" { (n) } }
                h2 { "Change your password" }
                form.stack method="post" action="/account/password" data-busy {
                    (csrf_field(frame.csrf))
                    label for="current" { "Current password" }
                    input #current name="current" type="password" autocomplete="current-password" required;
                    (field_error(errors, "current"))
                    label for="new" { "New password" }
                    p.rule { (PASSWORD_RULE) }
                    input #new name="new" type="password" autocomplete="new-password" required;
                    (field_error(errors, "new"))
                    button.primary type="submit" { "Change password" }
                }
            }
        },
    )
}

pub fn admin(
    frame: &Frame,
    users: &[UserRow],
    registration: bool,
    username: &str,
    errors: &[FieldError],
    notice: Option<&str>,
) -> Markup {
    page(
        frame,
        "Admin",
        html! {
            h1 { "Administration" }
            @if let Some(n) = notice { div.banner.ok role="status" { (n) } }
            section {
                h2 { "Self-registration" }
                form method="post" action="/admin/registration" {
                    (csrf_field(frame.csrf))
                    input type="hidden" name="enabled" value=(if registration { "false" } else { "true" });
                    p { "Anyone who can reach the site "
                        @if registration { strong { "can" } } @else { strong { "cannot" } }
                        " create an account. " }
                    button type="submit" { @if registration { "Turn off" } @else { "Turn on" } }
                }
            }
            section {
                h2 { "Users" }
                div.scroll { table {
                    thead { tr { th { "Username (namespace)" } th { "Role" } } }
                    tbody { @for u in users { tr { td { code { (u.name) } } td { @if u.admin { "administrator" } @else { "developer" } } } } }
                } }
            }
            section.narrow {
                h2 { "Create a user" }
                form.stack method="post" action="/admin/users" data-busy {
                    (csrf_field(frame.csrf))
                    label for="username" { "Username" }
                    p.rule { "Becomes the user's namespace: lowercase letters, digits and '-'." }
                    input #username name="username" required value=(username);
                    (field_error(errors, "username"))
                    label for="password" { "Password" }
                    p.rule { (PASSWORD_RULE) }
                    input #password name="password" type="password" autocomplete="new-password" required;
                    (field_error(errors, "password"))
                    label.check { input type="checkbox" name="admin" value="true"; " Administrator" }
                    button.primary type="submit" { "Create user" }
                }
            }
        },
    )
}
