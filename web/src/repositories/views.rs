//! The repository pages: the list, the new-repository form and the detail page's own sections.

use maud::{Markup, html};

use super::describe::{RepositoryDetail, RepositoryOverview};
use super::route::RouteVerdict;
use super::status::RepositoryState;
use super::validation::{IMAGE_RULE, NAME_RULE, PORT_RULE, RepositoryInput, replicas_rule};
use crate::error::FieldError;
use crate::layout::{Frame, csrf_field, field_error, form_error, general_error, page};

fn pill_class(state: &RepositoryState) -> &'static str {
    match state {
        RepositoryState::Ready => "pill ready",
        RepositoryState::Deploying => "pill deploying",
        RepositoryState::Updating => "pill updating",
        RepositoryState::Failing { .. } => "pill failing",
    }
}

/// The banner of a page built from a stale mirror: the cluster has not been answering.
fn stale(as_of: Option<&str>) -> Markup {
    html! {
        @if let Some(at) = as_of {
            div.banner.warn role="status" data-as-of=(at) {
                "As of " time datetime=(at) { (at) } ": the cluster is not answering, so this page shows its state at that moment. Changes made since may be missing; it updates by itself when the cluster answers again."
            }
        }
    }
}

pub fn repositories(frame: &Frame, overview: &RepositoryOverview) -> Markup {
    let rows = &overview.repositories;
    page(
        frame,
        "Repositories",
        html! {
            div.heading {
                h1 { "Your repositories" }
                div.actions {
                    a.button href="/compose" { "Deploy a compose file" }
                    " "
                    a.button.primary href="/repos/new" { "New repository" }
                }
            }
            (stale(overview.as_of.as_deref()))
            @for n in &overview.notices {
                div.banner.error role="alert" data-ingress=(n.ingress) {
                    "Your Ingress " code { (n.ingress) } " is not in service: the ingress controller says "
                    strong { (n.reason) } ": " (n.message)
                    br; (n.advice)
                }
            }
            @if rows.is_empty() {
                p.empty { "Nothing deployed yet. Choose " strong { "New repository" } " to deploy a public image; you get an address to call it." }
            } @else {
                div.scroll {
                    table.repos data-poll="/api/v1/repos" data-live="/api/v1/live/repos" {
                        thead { tr { th { "Name" } th { "Image" } th { "Replicas" } th { "State" } th { "Age" } th { "Endpoint" } } }
                        tbody {
                            @for r in rows {
                                tr data-repo=(r.name) {
                                    td {
                                        a href={ "/repos/" (r.name) } { (r.name) }
                                        @if let Some(g) = &r.compose_project { " " small.muted data-field="compose-project" { "compose " (g) } }
                                    }
                                    td { code { (r.image) } }
                                    td data-field="replicas" { (r.replicas.ready) " / " (r.replicas.desired) }
                                    td data-field="state" {
                                        span class=(pill_class(&r.state)) { (r.state.label()) }
                                        @if let RepositoryState::Failing { reason, .. } = &r.state { " " small { (reason) } }
                                    }
                                    td { (r.age) }
                                    td data-field="endpoint" { (endpoint(r.endpoint.as_deref())) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn verdict_name(route: &RouteVerdict) -> &'static str {
    match route {
        RouteVerdict::Accepted { .. } => "accepted",
        RouteVerdict::Pending => "pending",
        RouteVerdict::Internal => "internal",
        RouteVerdict::Failed { .. } => "failed",
    }
}

fn endpoint(url: Option<&str>) -> Markup {
    html! {
        @match url {
            Some(u) => { a href=(u) { (u) } " " button.copy type="button" data-copy=(u) { "Copy" } }
            None => { span.muted { "available when ready" } }
        }
    }
}

pub fn new_repository(
    frame: &Frame,
    input: &RepositoryInput,
    errors: &[FieldError],
    general: Option<&str>,
    max_replicas: i32,
) -> Markup {
    let replicas = if input.replicas.is_empty() {
        "1"
    } else {
        input.replicas.as_str()
    };
    page(
        frame,
        "New repository",
        html! {
            section.narrow {
                h1 { "New repository" }
                p { "Deploy a public container image. You get an address you can call once it is running." }
                (general_error(general))
                form.stack method="post" action="/repos" data-busy data-validate novalidate {
                    (csrf_field(frame.csrf))
                    label for="name" { "Repository name" }
                    p.rule id="name-rule" { (NAME_RULE) }
                    input #name name="name" required maxlength="63" value=(input.name) aria-describedby="name-rule name-error" data-rule="dns1035";
                    (field_error(errors, "name"))
                    label for="image" { "Image" }
                    p.rule id="image-rule" { (IMAGE_RULE) }
                    input #image name="image" required value=(input.image) aria-describedby="image-rule image-error" data-rule="image";
                    (field_error(errors, "image"))
                    label for="port" { "Container port" }
                    p.rule id="port-rule" { (PORT_RULE) }
                    input #port name="port" type="number" min="1" max="65535" required value=(input.port) aria-describedby="port-rule port-error" data-rule="port";
                    (field_error(errors, "port"))
                    label for="replicas" { "Replicas" }
                    p.rule id="replicas-rule" { (replicas_rule(max_replicas)) }
                    input #replicas name="replicas" type="number" min="1" max=(max_replicas) value=(replicas) aria-describedby="replicas-rule replicas-error" data-rule="replicas";
                    (field_error(errors, "replicas"))
                    button.primary type="submit" { "Deploy" }
                }
            }
        },
    )
}

pub struct ChangeValues<'a> {
    pub image: &'a str,
    pub port: &'a str,
    pub replicas: &'a str,
}

/// Everything the detail page shows; `api_section` is the console's section, rendered by it.
pub struct DetailView<'a> {
    pub detail: &'a RepositoryDetail,
    pub values: ChangeValues<'a>,
    pub errors: &'a [FieldError],
    pub notice: Option<&'a str>,
    /// A webhook URL just made, shown this once.
    pub webhook_url: Option<&'a str>,
    pub max_replicas: i32,
    pub api_section: Markup,
}

pub fn repository(frame: &Frame, view: DetailView) -> Markup {
    let DetailView {
        detail: d,
        values,
        errors,
        notice,
        webhook_url,
        max_replicas,
        api_section,
    } = view;
    let s = &d.summary;
    let r = s.replicas;
    page(
        frame,
        &s.name,
        html! {
            p { a href="/repos" { "← All repositories" } }
            (stale(d.as_of.as_deref()))
            div.heading data-poll={ "/api/v1/repos/" (s.name) } data-live={ "/api/v1/live/repos/" (s.name) } {
                h1 { (s.name) " " span data-field="state" { span class=(pill_class(&s.state)) { (s.state.label()) } } }
            }
            @if let Some(n) = notice { div.banner.ok role="status" { (n) } }
            (general_error(form_error(errors, "repository")))
            @if let RepositoryState::Failing { reason, message } = &s.state {
                div.banner.error role="alert" {
                    strong { (reason) } ": " (message)
                    @if let Some(a) = &s.advice { br; (a) }
                }
            }
            section {
                h2 { "Overview" }
                dl.facts {
                    dt { "Endpoint" } dd data-field="endpoint" { (endpoint(s.endpoint.as_deref())) }
                    dt { "Route" } dd data-field="route" data-verdict=(verdict_name(&s.route)) { (s.route.summary()) }
                    @if let Some(g) = &s.compose_project {
                        dt { "Compose project" } dd data-field="compose-project" { code { (g) } " (deployed from a compose file; delete each repository of it on its own page)" }
                    }
                    dt { "Image" } dd { code data-field="image" { (s.image) } }
                    dt { "Port" } dd { (s.port) }
                    dt { "Replicas" } dd data-field="replicas" { (r.ready) " ready of " (r.desired) }
                    dt { "Rollout" } dd {
                        progress data-field="progress" max=(r.desired.max(1)) value=(r.updated.min(r.desired)) {}
                        " " span data-field="rollout" { (r.updated) " of " (r.desired) " updated" }
                    }
                    dt { "Age" } dd { (s.age) }
                }
                p.muted.small { "This section refreshes by itself every few seconds." }
            }
            section {
                h2 { "Scale" }
                form.inline method="post" action={ "/repos/" (s.name) "/change" } data-busy data-validate novalidate {
                    (csrf_field(frame.csrf))
                    label for="scale-replicas" { "Replicas" }
                    input #scale-replicas name="replicas" type="number" min="1" max=(max_replicas) required value=(r.desired) aria-describedby="scale-rule" data-rule="replicas";
                    button.primary type="submit" { "Scale" }
                    span.rule id="scale-rule" { " " (replicas_rule(max_replicas)) " Pods are added or removed without a redeploy." }
                }
                (field_error(errors, "scale"))
            }
            (api_section)
            section {
                h2 { "Change" }
                div.actions {
                    form method="post" action={ "/repos/" (s.name) "/redeploy" } data-busy {
                        (csrf_field(frame.csrf))
                        button.primary type="submit" { "Redeploy" }
                        span.rule { " Replaces every pod without downtime (an image tagged latest is pulled again)." }
                    }
                }
                p { a href={ "/repos/" (s.name) "/env" } data-link="environment" { "Environment variables and secrets" } " (" (s.environment.env.len()) " variables, " (s.environment.secrets.len()) " secret)" }
                form.stack method="post" action={ "/repos/" (s.name) "/change" } data-busy data-validate novalidate {
                    (csrf_field(frame.csrf))
                    label for="image" { "Image" }
                    p.rule { (IMAGE_RULE) }
                    input #image name="image" required value=(values.image) data-rule="image";
                    (field_error(errors, "image"))
                    label for="port" { "Container port" }
                    p.rule { (PORT_RULE) }
                    input #port name="port" type="number" min="1" max="65535" required value=(values.port) data-rule="port";
                    (field_error(errors, "port"))
                    label for="replicas" { "Replicas" }
                    p.rule { (replicas_rule(max_replicas)) }
                    input #replicas name="replicas" type="number" min="1" max=(max_replicas) required value=(values.replicas) data-rule="replicas";
                    (field_error(errors, "replicas"))
                    button type="submit" { "Apply changes" }
                }
            }
            section {
                h2 id="webhook" { "Redeploy on image push" }
                @if let Some(url) = webhook_url {
                    div.banner.ok role="status" {
                        label for="webhook-url" { "Webhook URL: copy it now, it is shown only once." }
                        input #webhook-url .secret readonly value=(url) data-field="webhook-url";
                    }
                }
                p data-field="webhook" {
                    @if s.webhook { "On: " } @else { "Off: " }
                    "a registry that POSTs a push of " code { (s.image) } " (Docker Hub's webhook, or a registry's notifications) to the webhook URL redeploys the repository, pinned to the pushed digest when the registry names one."
                }
                div.actions {
                    // The fragment scrolls the answer to the URL it shows.
                    form method="post" action={ "/repos/" (s.name) "/webhook#webhook" } data-busy {
                        (csrf_field(frame.csrf))
                        button type="submit" { @if s.webhook { "Make a new webhook URL" } @else { "Make a webhook URL" } }
                        @if s.webhook { span.rule { " The current URL stops working." } }
                    }
                    @if s.webhook {
                        form method="post" action={ "/repos/" (s.name) "/webhook/delete" } data-busy {
                            (csrf_field(frame.csrf))
                            button type="submit" { "Turn the webhook off" }
                        }
                    }
                }
            }
            section {
                h2 { "Pods" }
                p { a href={ "/repos/" (s.name) "/logs" } { "Logs" } " — recent output of the pods, or follow it live." }
                div.scroll { table {
                    thead { tr { th { "Pod" } th { "State" } th { "Ready" } th { "Restarts" } th { "Age" } } }
                    tbody data-field="pods" { @for p in &d.pods { tr {
                        td { code { (p.name) } }
                        td { (p.reason.as_deref().unwrap_or(&p.phase)) }
                        td { @if p.ready { "yes" } @else { "no" } }
                        td { (p.restarts) }
                        td { (p.age) }
                    } } }
                } }
            }
            section {
                h2 { "Recent events" }
                @if d.events.is_empty() { p.muted { "No events." } } @else {
                    div.scroll { table {
                        thead { tr { th { "Type" } th { "Reason" } th { "Object" } th { "Message" } th { "Count" } th { "Age" } } }
                        tbody { @for e in &d.events { tr {
                            td { (e.kind) } td { (e.reason) } td { code { (e.object) } } td { (e.message) } td { (e.count) } td { (e.age) }
                        } } }
                    } }
                }
            }
            section {
                h2 id="revisions" { "Revisions" }
                p.muted { "Each change of the image, port or variables, each redeploy and each rollback makes a revision; rolling back replaces the pods one at a time, as a change does." }
                (field_error(errors, "revision"))
                div.scroll { table {
                    thead { tr { th { "Revision" } th { "Image" } th { "Change" } th { "Deployed by" } th { "Pods" } th { "Age" } th { "Action" } } }
                    tbody { @for h in &d.history { tr data-revision=(h.revision) {
                        td { (h.revision) @if h.current { " (current)" } }
                        td {
                            code { (h.image) }
                            @if h.current { br; span.small.muted { "digest " @if let Some(digest) = &h.digest { code { (digest) } } @else { "not known" } } }
                        }
                        td { (h.change.as_deref().unwrap_or("not recorded")) }
                        td { (h.deployed_by.as_deref().unwrap_or("not recorded")) }
                        td { (h.ready) " ready of " (h.replicas) }
                        td { @if let Some(created) = &h.created { time datetime=(created) { (h.age) } } @else { (h.age) } }
                        td { @if !h.current {
                            form method="post" action={ "/repos/" (s.name) "/rollback" } data-confirm={ "Roll back " (s.name) " to revision " (h.revision) " (" (h.image) ")?" } {
                                (csrf_field(frame.csrf))
                                input type="hidden" name="revision" value=(h.revision);
                                button type="submit" { "Roll back" }
                            }
                        } }
                    } } }
                } }
            }
            section {
                h2 { "Kubernetes objects" }
                p.muted { "In namespace " code { (d.namespace) } ", for those who want the details." }
                div.scroll { table {
                    thead { tr { th { "Kind" } th { "Name" } th { "Status" } } }
                    tbody { @for o in &d.objects { tr { td { (o.kind) } td { code { (o.name) } } td { (o.status) } } } }
                } }
            }
            section.danger {
                h2 { "Delete" }
                form method="post" action={ "/repos/" (s.name) "/delete" } data-confirm={ "Delete " (s.name) "? Its endpoint stops working." } {
                    (csrf_field(frame.csrf))
                    button.danger type="submit" { "Delete repository" }
                    span.rule { " Removes its Deployment, Service and Ingress; other repositories are not touched." }
                }
            }
        },
    )
}
