//! The console's pages and the API section of the detail page.

use maud::{Markup, html};

use super::calls::{SendInput, Sent};
use super::model::{BodyKind, Endpoint, EndpointInput};
use super::request::path_params;
use super::rules::{BODY_RULE, HEADERS_RULE, METHODS, PATH_RULE, QUERY_RULE};
use super::send::Shown;
use super::store::Call;
use crate::config::ConsoleLimits;
use crate::error::{AppError, FieldError};
use crate::layout::{Frame, csrf_field, field_error, form_error, general_error, page};

/// The import form as submitted, with why it was refused (empty on a fresh page).
#[derive(Debug, Default, Clone, Copy)]
pub struct ImportValues<'a> {
    pub document: &'a str,
    pub fetch: &'a str,
    pub errors: &'a [FieldError],
}

fn body_kinds(selected: &str) -> Markup {
    let selected = BodyKind::parse(selected).unwrap_or_default();
    html! {
        @for (k, label) in [(BodyKind::None, "No body"), (BodyKind::Json, "JSON"), (BodyKind::Form, "Form (name=value lines)"), (BodyKind::Raw, "Raw text")] {
            option value=(k.as_str()) selected[k == selected] { (label) }
        }
    }
}

fn limits_text(l: &ConsoleLimits) -> String {
    format!(
        "Limits: {} requests per {} s per user, {} s time limit, responses cut at {} KiB.",
        l.max_calls,
        l.window.as_secs(),
        l.timeout.as_secs(),
        l.max_response_bytes / 1024
    )
}

/// The detail page's "API endpoints" section; stored endpoints that cannot be read are reported
/// instead of listed, and nothing offers to change them.
pub fn section(
    frame: &Frame,
    repo: &str,
    endpoints: &Result<Vec<Endpoint>, AppError>,
    s: &ImportValues,
) -> Markup {
    html! {
        section #api {
            h2 { "API endpoints and request console" }
            p.muted { "Keep a list of your service's endpoints and try them: requests go to your public address through the same route as everyone else's." }
            @match endpoints {
                Ok(endpoints) => { (endpoint_list(frame, repo, endpoints, s)) }
                Err(e) => { div.banner.error role="alert" data-error="endpoints" { (e) } }
            }
        }
    }
}

fn endpoint_list(frame: &Frame, repo: &str, endpoints: &[Endpoint], s: &ImportValues) -> Markup {
    let action = |id: &str, what: &str| format!("/repos/{repo}/endpoints/{id}/{what}");
    html! {
            @if endpoints.is_empty() {
                p.empty { "No endpoints yet. Add one, or import an OpenAPI 3 document below." }
            } @else {
                div.scroll { table.endpoints {
                    thead { tr { th { "Name" } th { "Method" } th { "Path" } th { "Description" } th { "Actions" } } }
                    tbody { @for (i, e) in endpoints.iter().enumerate() { tr {
                        td { a href={ "/repos/" (repo) "/endpoints/" (e.id) } { (e.name) } }
                        td { span.method { (e.method) } }
                        td { code { (e.path) } }
                        td { (e.description) }
                        td.row-actions {
                            a.button.small href={ "/repos/" (repo) "/endpoints/" (e.id) } { "Try" }
                            a.button.small href=(action(&e.id, "edit")) { "Edit" }
                            form method="post" action=(action(&e.id, "duplicate")) { (csrf_field(frame.csrf)) button.small type="submit" { "Duplicate" } }
                            form method="post" action=(action(&e.id, "up")) { (csrf_field(frame.csrf)) button.small type="submit" disabled[i == 0] aria-label={ "Move " (e.name) " up" } { "↑" } }
                            form method="post" action=(action(&e.id, "down")) { (csrf_field(frame.csrf)) button.small type="submit" disabled[i + 1 == endpoints.len()] aria-label={ "Move " (e.name) " down" } { "↓" } }
                            form method="post" action=(action(&e.id, "delete")) data-confirm={ "Delete the endpoint " (e.name) "?" } { (csrf_field(frame.csrf)) button.small.danger type="submit" { "Delete" } }
                        }
                    } } }
                } }
            }
            p { a.button.primary href={ "/repos/" (repo) "/endpoints/new" } { "Add endpoint" } }
            details open[!s.errors.is_empty()] {
                summary { "Import from an OpenAPI 3 document" }
                form.stack method="post" action={ "/repos/" (repo) "/endpoint-import" } data-busy {
                    (csrf_field(frame.csrf))
                    label for="document" { "Paste the document" }
                    p.rule { "JSON or YAML, OpenAPI 3.x. Operations already registered (same method and path) are kept as they are." }
                    textarea #document name="document" rows="6" { (s.document) }
                    (field_error(s.errors, "document"))
                    label for="fetch" { "…or fetch it from your service" }
                    p.rule { "A path of your repository, for example /openapi.json; fetched through your public route." }
                    input #fetch name="fetch" placeholder="/openapi.json" value=(s.fetch);
                    (field_error(s.errors, "fetch"))
                    button type="submit" { "Import" }
                }
            }
    }
}

pub fn endpoint_form(
    frame: &Frame,
    repo: &str,
    id: Option<&str>,
    input: &EndpointInput,
    errors: &[FieldError],
) -> Markup {
    let (title, action) = match id {
        Some(id) => ("Edit endpoint", format!("/repos/{repo}/endpoints/{id}")),
        None => ("New endpoint", format!("/repos/{repo}/endpoints")),
    };
    let method = if input.method.is_empty() {
        "GET"
    } else {
        input.method.as_str()
    };
    page(
        frame,
        title,
        html! {
            p { a href={ "/repos/" (repo) "#api" } { "← " (repo) } }
            section.narrow {
                h1 { (title) }
                (general_error(form_error(errors, "endpoint")))
                form.stack method="post" action=(action) data-busy novalidate {
                    (csrf_field(frame.csrf))
                    label for="name" { "Name" }
                    p.rule { "What it does, in your words: at most 80 characters." }
                    input #name name="name" required maxlength="80" value=(input.name);
                    (field_error(errors, "name"))
                    label for="method" { "Method" }
                    select #method name="method" {
                        @for m in METHODS { option value=(m) selected[m.eq_ignore_ascii_case(method)] { (m) } }
                    }
                    (field_error(errors, "method"))
                    label for="path" { "Path" }
                    p.rule { (PATH_RULE) }
                    input #path name="path" required placeholder="/users/{id}" value=(input.path);
                    (field_error(errors, "path"))
                    label for="query" { "Query parameters" }
                    p.rule { (QUERY_RULE) }
                    textarea #query name="query" rows="3" { (input.query) }
                    (field_error(errors, "query"))
                    label for="headers" { "Headers" }
                    p.rule { (HEADERS_RULE) }
                    textarea #headers name="headers" rows="3" { (input.headers) }
                    (field_error(errors, "headers"))
                    label for="body_kind" { "Body" }
                    p.rule { (BODY_RULE) }
                    select #body_kind name="body_kind" { (body_kinds(&input.body_kind)) }
                    (field_error(errors, "body_kind"))
                    textarea #body name="body" rows="6" aria-label="Body" { (input.body) }
                    (field_error(errors, "body"))
                    label for="description" { "Description" }
                    textarea #description name="description" rows="2" { (input.description) }
                    (field_error(errors, "description"))
                    button.primary type="submit" { "Save endpoint" }
                }
            }
        },
    )
}

/// What the console page shows besides its form.
pub struct ConsoleView<'a> {
    pub repo: &'a str,
    pub endpoint: Option<&'a Endpoint>,
    pub input: &'a SendInput,
    pub errors: &'a [FieldError],
    /// Why nothing was sent (rate limit), shown above the form.
    pub refused: Option<&'a str>,
    pub sent: Option<&'a Sent>,
    pub history: &'a [(usize, Call)],
    pub limits: &'a ConsoleLimits,
    pub public_url: &'a str,
}

fn result(sent: &Sent) -> Markup {
    html! {
        section #result aria-live="polite" {
            h2 { "Response" }
            @if let Some(e) = &sent.error { div.banner.error role="alert" { (e) } }
            @if let Some(o) = &sent.outcome {
                p.summary {
                    span class={ "status s" (o.status / 100) } { (o.status) " " (o.reason) }
                    " · " (o.elapsed_ms) " ms · " (o.size) " bytes"
                    @if o.truncated { " · " strong { "cut at the console's size limit" } }
                }
                p { "Sent to " code { (o.url) } }
                @match &o.body {
                    Shown::Empty => { p.muted { "Empty body." } }
                    Shown::Json(t) => { p.muted.small { "JSON, formatted" } pre.body { (t) } }
                    Shown::Text(t) => { pre.body { (t) } }
                    Shown::Binary(t) => { p { "Binary response: " (t) } }
                }
                details {
                    summary { "Headers (" (o.headers.len()) ")" }
                    table { tbody { @for h in &o.headers { tr { th { code { (h.name) } } td { code { (h.value) } } } } } }
                }
            }
            div.curl {
                label for="curl" { "Copy as curl" }
                textarea #curl readonly rows="3" { (sent.curl) }
                button.copy type="button" data-copy=(sent.curl) { "Copy" }
            }
        }
    }
}

pub fn console(frame: &Frame, v: &ConsoleView) -> Markup {
    let title = v.endpoint.map_or("Request console", |e| e.name.as_str());
    let send_action = match v.endpoint {
        Some(e) => format!("/repos/{}/endpoints/{}/send", v.repo, e.id),
        None => format!("/repos/{}", v.repo),
    };
    page(
        frame,
        title,
        html! {
            p { a href={ "/repos/" (v.repo) "#api" } { "← " (v.repo) } }
            div.heading {
                h1 { (title) }
                @if let Some(e) = v.endpoint {
                    a.button href={ "/repos/" (v.repo) "/endpoints/" (e.id) "/edit" } { "Edit endpoint" }
                }
            }
            @if let Some(e) = v.endpoint {
                p { span.method { (e.method) } " " code { (v.public_url) (e.path.trim_start_matches('/')) } }
                @if !e.description.is_empty() { p { (e.description) } }
            }
            @if let Some(r) = v.refused { div.banner.error role="alert" { (r) } }
            (general_error(form_error(v.errors, "endpoint")))
            div.console {
                @if let Some(e) = v.endpoint {
                    form.stack method="post" action=(send_action) data-busy novalidate {
                        (csrf_field(frame.csrf))
                        @if !path_params(&e.path).is_empty() {
                            label for="params" { "Path parameters" }
                            p.rule { "One name=value per line for " @for (i, p) in path_params(&e.path).iter().enumerate() { @if i > 0 { ", " } code { "{" (p) "}" } } "." }
                            textarea #params name="params" rows="2" { (v.input.params.as_deref().unwrap_or_default()) }
                            (field_error(v.errors, "params"))
                            (field_error(v.errors, "path"))
                        }
                        label for="query" { "Query parameters" }
                        p.rule { (QUERY_RULE) }
                        textarea #query name="query" rows="3" { (v.input.query.as_deref().unwrap_or_default()) }
                        (field_error(v.errors, "query"))
                        label for="headers" { "Headers" }
                        p.rule { (HEADERS_RULE) }
                        textarea #headers name="headers" rows="2" { (v.input.headers.as_deref().unwrap_or_default()) }
                        (field_error(v.errors, "headers"))
                        label for="body_kind" { "Body" }
                        select #body_kind name="body_kind" { (body_kinds(v.input.body_kind.as_deref().unwrap_or_default())) }
                        (field_error(v.errors, "body_kind"))
                        textarea #body name="body" rows="8" aria-label="Body" { (v.input.body.as_deref().unwrap_or_default()) }
                        (field_error(v.errors, "body"))
                        button.primary type="submit" { "Send request" }
                        p.rule { (limits_text(v.limits)) }
                    }
                }
                @if let Some(sent) = v.sent { (result(sent)) }
            }
            section {
                h2 { "Recent calls to " (v.repo) }
                @if v.history.is_empty() { p.muted { "None yet. Your last " (v.limits.history_len) " calls are kept." } } @else {
                    div.scroll { table {
                        thead { tr { th { "When" } th { "Request" } th { "Outcome" } th { "Time" } th {} } }
                        tbody { @for (i, c) in v.history { tr {
                            td { (c.at.get(..19).unwrap_or(&c.at).replace('T', " ")) }
                            td { span.method { (c.method) } " " code { (c.path) @if !c.query.is_empty() { "?" (super::request::query_string(&c.query)) } } }
                            td { (c.outcome) }
                            td { @if let Some(ms) = c.elapsed_ms { (ms) " ms" } }
                            td { form method="post" action={ "/console/history/" (i) "/rerun" } { (csrf_field(frame.csrf)) button.small type="submit" { "Send again" } } }
                        } } }
                    } }
                }
            }
        },
    )
}
