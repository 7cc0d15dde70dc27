//! Live updates of the list and detail pages (issue 15 item 3): server-sent events fed by the
//! mirror, so an open page costs the API server nothing.
//!
//! Each stream follows its user's namespace in the mirror ([`Mirror::follow`]) and sends the
//! same JSON the API answers (`/api/v1/repos`, `/api/v1/repos/{name}`), which the page's script
//! applies as it applied the polled answers. Protocol (HTML Living Standard, "Server-sent
//! events", <https://html.spec.whatwg.org/multipage/server-sent-events.html>): a 200 answer of
//! type `text/event-stream` opens the `EventSource`; any other status (401, 404, 429) fails it for
//! good, and the script goes back to polling; a stream that ends (a server stopping, a session
//! that expired) is re-established by the browser after the reconnection time our first event
//! sets with `retry:`; comment lines every 15 s keep proxies from dropping an idle stream, as the
//! standard advises.
//!
//! [`Mirror::follow`]: crate::mirror::Mirror::follow

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::SignedCookieJar;
use futures::Stream;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::store::StoreError;
use crate::accounts::CurrentUser;
use crate::accounts::session::{SESSION_COOKIE, SessionClaims};
use crate::error::AppError;
use crate::state::AppState;

/// At most one event per this long per stream: a rollout's burst of Pod, ReplicaSet and Event
/// changes becomes a few updates.
pub const COALESCE: Duration = Duration::from_millis(250);
/// How often an idle stream sends a comment line.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The reconnection time the first event sets: how long a browser waits before it opens the
/// stream again after it ended.
pub const RECONNECT: Duration = Duration::from_secs(3);

/// The open streams of this replica, per user, and the signal that ends them all at shutdown.
#[derive(Clone)]
pub struct Streams {
    open: Arc<Mutex<HashMap<String, usize>>>,
    stopping: watch::Sender<bool>,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            open: Arc::default(),
            stopping: watch::Sender::new(false),
        }
    }
}

impl Streams {
    /// Ends every open stream and refuses none after: graceful shutdown waits for open
    /// responses, and a stream would otherwise never finish.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// How many streams the user holds open on this replica.
    pub fn open_for(&self, username: &str) -> usize {
        self.lock().get(username).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more stream of the user, or 429 once they hold `max`.
    fn admit(&self, username: &str, max: usize) -> Result<Ticket, AppError> {
        let mut open = self.lock();
        let count = open.entry(username.to_string()).or_insert(0);
        if *count >= max {
            return Err(AppError::TooManyStreams { max });
        }
        *count += 1;
        Ok(Ticket {
            streams: self.clone(),
            username: username.to_string(),
        })
    }
}

/// One admitted stream; gives its place back when the stream is dropped.
struct Ticket {
    streams: Streams,
    username: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.streams.lock();
        if let Some(count) = open.get_mut(&self.username) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.username);
            }
        }
    }
}

/// What a stream shows.
#[derive(Debug, Clone)]
enum Page {
    List,
    Detail(String),
}

/// The event names the script listens for.
const LIST_EVENT: &str = "repos";
const DETAIL_EVENT: &str = "repo";
/// The repository is gone (deleted): the stream ends.
const GONE_EVENT: &str = "gone";
/// The session is no longer valid (signed out elsewhere, password changed, expired).
const SIGNED_OUT_EVENT: &str = "signed-out";

/// `GET /api/v1/live/repos`: the list page's data, again after each change.
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    jar: SignedCookieJar,
) -> Result<Response, AppError> {
    open(state, user, &jar, Page::List).await
}

/// `GET /api/v1/live/repos/{name}`: one repository's data, again after each change.
pub async fn detail(
    State(state): State<AppState>,
    user: CurrentUser,
    jar: SignedCookieJar,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    open(state, user, &jar, Page::Detail(name)).await
}

async fn open(
    state: AppState,
    user: CurrentUser,
    jar: &SignedCookieJar,
    page: Page,
) -> Result<Response, AppError> {
    // `CurrentUser` resolved this same cookie; its claims say until when the stream may run.
    let claims = jar
        .get(SESSION_COOKIE)
        .and_then(|c| SessionClaims::decode(c.value()))
        .ok_or(AppError::Unauthenticated)?;
    let ticket = state
        .streams
        .admit(&user.name, state.config.live_streams_per_user)?;
    // Follow before the first read, so no change between the two is missed.
    let changes = state.mirror.follow(user.namespace());
    let accounts = state.mirror.follow(&state.config.system_namespace);
    let (event, data) = match render(&state, user.namespace(), &page).await? {
        Rendered::Data(event, data) => (event, data),
        // A repository that is not there (or is another user's) is not found, as on its page.
        Rendered::Gone => {
            let name = match &page {
                Page::Detail(name) => name.as_str(),
                Page::List => "",
            };
            return Err(AppError::NotFound(format!("Repository {name}")));
        }
    };
    let first = Event::default()
        .event(event)
        .retry(RECONNECT)
        .data(data.clone());
    let stopping = state.streams.stopping.subscribe();
    let live = Live {
        state,
        user,
        claims,
        page,
        changes,
        accounts,
        stopping,
        last: Some(data),
        sent_at: Instant::now(),
        first: Some(first),
        done: false,
        _ticket: ticket,
    };
    let events = futures::stream::unfold(live, |mut live| async move {
        let event = live.next().await?;
        Some((Ok::<_, Infallible>(event), live))
    });
    let mut response = sse(events).into_response();
    // NGINX (the platform's ingress controller) buffers proxied answers unless the upstream
    // says not to: https://nginx.org/en/docs/http/ngx_http_proxy_module.html#proxy_buffering
    response.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(response)
}

fn sse<S>(events: S) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

enum Rendered {
    Data(&'static str, String),
    Gone,
}

/// The page's data as the API serves it, read from the mirror.
async fn render(state: &AppState, namespace: &str, page: &Page) -> Result<Rendered, AppError> {
    match page {
        Page::List => {
            let overview = state.repositories.overview(namespace).await?;
            Ok(Rendered::Data(LIST_EVENT, json(&overview)?))
        }
        Page::Detail(name) => match state.repositories.repository(namespace, name).await {
            Ok(detail) => Ok(Rendered::Data(DETAIL_EVENT, json(&detail)?)),
            Err(StoreError::NotFound(_)) => Ok(Rendered::Gone),
            Err(e) => Err(e.into()),
        },
    }
}

/// One line of JSON (an event's data may not hold a bare newline; `serde_json` writes none).
fn json(value: &impl Serialize) -> Result<String, AppError> {
    serde_json::to_string(value).map_err(|e| AppError::StoredDataUnreadable {
        what: "live update",
        object: "the mirror".into(),
        reason: e.to_string(),
    })
}

/// One open stream.
struct Live {
    state: AppState,
    user: CurrentUser,
    claims: SessionClaims,
    page: Page,
    /// The user's namespace in the mirror.
    changes: watch::Receiver<u64>,
    /// The site's own namespace, where accounts live: a changed account may end the session.
    accounts: watch::Receiver<u64>,
    stopping: watch::Receiver<bool>,
    /// The data last sent, so an unchanged view sends nothing.
    last: Option<String>,
    sent_at: Instant,
    first: Option<Event>,
    done: bool,
    _ticket: Ticket,
}

impl Live {
    /// The next event, or `None` to end the stream.
    async fn next(&mut self) -> Option<Event> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.done {
            return None;
        }
        loop {
            let expiry = session_expiry(&self.claims);
            tokio::select! {
                changed = self.changes.changed() => changed.ok()?,
                changed = self.accounts.changed() => changed.ok()?,
                _ = self.stopping.wait_for(|s| *s) => return None,
                () = tokio::time::sleep_until(expiry) => {}
            }
            // Coalesce: whatever else changes until then goes into this one event.
            tokio::select! {
                () = tokio::time::sleep_until(self.sent_at + COALESCE) => {}
                _ = self.stopping.wait_for(|s| *s) => return None,
            }
            self.changes.borrow_and_update();
            self.accounts.borrow_and_update();
            if !self.session_valid().await {
                self.done = true;
                return Some(
                    Event::default()
                        .event(SIGNED_OUT_EVENT)
                        .data("Your session ended: sign in again."),
                );
            }
            let rendered = match render(&self.state, self.user.namespace(), &self.page).await {
                Ok(rendered) => rendered,
                Err(e) => {
                    tracing::warn!(user = %self.user.name, error = %e, "live update ended");
                    return None;
                }
            };
            match rendered {
                Rendered::Data(event, data) => {
                    if self.last.as_ref() == Some(&data) {
                        continue;
                    }
                    self.sent_at = Instant::now();
                    self.last = Some(data.clone());
                    return Some(Event::default().event(event).data(data));
                }
                Rendered::Gone => {
                    self.done = true;
                    return Some(Event::default().event(GONE_EVENT).data("deleted"));
                }
            }
        }
    }

    /// Whether the session still holds: not expired, and the account's sign-in epoch unchanged
    /// (read from the mirror, as every request's session check is).
    async fn session_valid(&self) -> bool {
        if self.claims.expires < unix_now() {
            return false;
        }
        matches!(
            self.state
                .accounts
                .signed_in(&self.claims.username, self.claims.epoch)
                .await,
            Ok(Some(_))
        )
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// When the session's cookie stops being valid, as a timer's instant (one second late, so the
/// check that follows sees it expired).
fn session_expiry(claims: &SessionClaims) -> Instant {
    let left = claims.expires.saturating_sub(unix_now()).saturating_add(1);
    let left = u64::try_from(left).unwrap_or(0).min(365 * 24 * 3600);
    Instant::now() + Duration::from_secs(left)
}
