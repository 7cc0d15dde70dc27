//! Live updates of the list and detail pages (issue 15 item 3): server-sent events fed by the
//! mirror. The observer of a change is the stream's own content; the observer of "no API calls"
//! is the site's client, which notes every call it makes to the API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use common::{Browser, site, site_with};

/// How long a stream may take to show what a test waits for.
const DEADLINE: Duration = Duration::from_secs(20);

/// One server-sent event: its type and its data lines joined.
#[derive(Debug, Clone)]
struct SseEvent {
    event: String,
    data: String,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// An open stream, read event by event (comment lines skipped).
struct Stream {
    body: Body,
    buffer: String,
}

impl Stream {
    /// The next event, or `None` once the stream has ended.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: "message".into(),
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim_start().to_string();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        any = true;
                    }
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            let frame = self.body.frame().await?.unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// Reads events until one satisfies `done`, within [`DEADLINE`]; fails with the last seen.
    async fn until(&mut self, what: &str, done: impl Fn(&SseEvent) -> bool) -> SseEvent {
        let mut last = None;
        let found = tokio::time::timeout(DEADLINE, async {
            while let Some(e) = self.next().await {
                if done(&e) {
                    return Some(e);
                }
                last = Some(e);
            }
            None
        })
        .await;
        match found {
            Ok(Some(e)) => e,
            Ok(None) => panic!("the stream ended before {what}; last event: {last:?}"),
            Err(_) => panic!("no event showed {what} within {DEADLINE:?}; last event: {last:?}"),
        }
    }
}

fn cookie_header(b: &Browser) -> String {
    b.cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// GETs `path` with the browser's cookies as an `EventSource` would, without reading the body.
async fn get_stream(b: &Browser, path: &str) -> axum::response::Response {
    let mut request = Request::get(path).header(header::ACCEPT, "text/event-stream");
    if !b.cookies.is_empty() {
        request = request.header(header::COOKIE, cookie_header(b));
    }
    b.app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// Opens a stream that must be accepted.
async fn open(b: &Browser, path: &str) -> Stream {
    let response = get_stream(b, path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream",
        "{path}"
    );
    Stream {
        body: response.into_body(),
        buffer: String::new(),
    }
}

/// A refused stream's status and body.
async fn refused(b: &Browser, path: &str) -> (StatusCode, String) {
    let response = get_stream(b, path).await;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).to_string())
}

async fn create(b: &mut Browser, name: &str, replicas: u32) {
    let r = b
        .post_json(
            "/api/v1/repos",
            json!({"name": name, "image": "nginx", "port": 80, "replicas": replicas}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

fn row<'a>(overview: &'a Value, name: &str) -> Option<&'a Value> {
    overview["repositories"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)
}

fn list_shows(e: &SseEvent, name: &str, desired: u32, ready: u32) -> bool {
    e.event == "repos"
        && row(&e.json(), name)
            .is_some_and(|r| r["replicas"]["desired"] == desired && r["replicas"]["ready"] == ready)
}

fn detail_shows(e: &SseEvent, desired: u32, ready_pods: usize) -> bool {
    if e.event != "repo" {
        return false;
    }
    let j = e.json();
    j["replicas"]["desired"] == desired
        && j["pods"]
            .as_array()
            .is_some_and(|p| p.iter().filter(|p| p["ready"] == true).count() == ready_pods)
}

#[tokio::test]
async fn open_streams_show_a_scale_made_with_kubectl_without_being_asked() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    create(&mut alice, "hello", 1).await;
    let mut list = open(&alice, "/api/v1/live/repos").await;
    let mut detail = open(&alice, "/api/v1/live/repos/hello").await;
    // The first event comes at once, with the page's data.
    let first = list.next().await.unwrap();
    assert_eq!(first.event, "repos");
    assert_eq!(
        row(&first.json(), "hello").unwrap()["replicas"]["desired"],
        1
    );
    let first = detail.next().await.unwrap();
    assert_eq!(first.event, "repo");
    assert_eq!(first.json()["name"], "hello");

    site.scale_with_kubectl("alice", "hello", 3).await;
    list.until("3 of 3 replicas ready on the list", |e| {
        list_shows(e, "hello", 3, 3)
    })
    .await;
    let shown = detail
        .until("3 ready pods on the detail stream", |e| {
            detail_shows(e, 3, 3)
        })
        .await;
    assert_eq!(shown.json()["replicas"]["ready"], 3, "{}", shown.data);

    // Deleting the repository with kubectl ends its detail stream with `gone`.
    site.objects::<Deployment>("alice")
        .delete("hello", &Default::default())
        .await
        .unwrap();
    detail
        .until("the repository to be gone", |e| e.event == "gone")
        .await;
    assert!(detail.next().await.is_none(), "the stream ends after gone");
    list.until("the list without hello", |e| {
        e.event == "repos" && row(&e.json(), "hello").is_none()
    })
    .await;
}

#[tokio::test]
async fn a_hundred_open_streams_ask_the_api_server_nothing() {
    let mut config = common::config();
    config.live_streams_per_user = 100;
    let site = site_with(config).await;
    let mut alice = site.user("alice").await;
    create(&mut alice, "hello", 1).await;
    alice
        .poll_json("the repository to be ready", "/api/v1/repos/hello", |j| {
            j["state"] == "Ready"
        })
        .await;

    let before = site.refusals.calls_made();
    let mut streams = Vec::new();
    for i in 0..100 {
        let path = if i % 2 == 0 {
            "/api/v1/live/repos"
        } else {
            "/api/v1/live/repos/hello"
        };
        let mut s = open(&alice, path).await;
        s.next().await.unwrap();
        streams.push(s);
    }
    assert_eq!(site.state.streams.open_for("alice"), 100);

    site.scale_with_kubectl("alice", "hello", 2).await;
    for (i, s) in streams.iter_mut().enumerate() {
        if i % 2 == 0 {
            s.until("2 of 2 ready on the list", |e| list_shows(e, "hello", 2, 2))
                .await;
        } else {
            s.until("2 ready pods on the detail", |e| detail_shows(e, 2, 2))
                .await;
        }
    }
    // What the site asked the API server while 100 streams were opened and followed a change:
    // only the health probe's version check, and a watch's own resumption if one was due.
    let calls = site.refusals.calls_since(before);
    let other: Vec<&String> = calls
        .iter()
        .filter(|c| c.as_str() != "GET /version" && !c.contains("watch=true"))
        .collect();
    assert!(other.is_empty(), "open streams made API calls: {other:#?}");
    drop(streams);
    assert_eq!(site.state.streams.open_for("alice"), 0);
}

#[tokio::test]
async fn a_stream_needs_a_session_and_shows_only_the_users_own_namespace() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    create(&mut alice, "hello", 1).await;
    let anonymous = site.browser();
    for path in ["/api/v1/live/repos", "/api/v1/live/repos/hello"] {
        let (status, body) = refused(&anonymous, path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }
    let mut bob = site.user("bob").await;
    create(&mut bob, "other", 1).await;
    // Alice's repository is not found for Bob, as its page and JSON are not.
    let (status, body) = refused(&bob, "/api/v1/live/repos/hello").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("Repository hello"), "{body}");
    let (status, _) = refused(&bob, "/api/v1/live/repos/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Bob's list stream shows his namespace only, and a change in Alice's sends him nothing
    // new: the next event he gets is his own change.
    let mut list = open(&bob, "/api/v1/live/repos").await;
    let first = list.next().await.unwrap().json();
    assert!(
        row(&first, "other").is_some() && row(&first, "hello").is_none(),
        "{first}"
    );
    site.scale_with_kubectl("alice", "hello", 2).await;
    site.scale_with_kubectl("bob", "other", 2).await;
    let e = list
        .until("Bob's own change", |e| {
            e.event == "repos" && row(&e.json(), "other").unwrap()["replicas"]["desired"] == 2
        })
        .await;
    assert!(row(&e.json(), "hello").is_none(), "{}", e.data);
}

#[tokio::test]
async fn signing_out_ends_the_open_streams() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    create(&mut alice, "hello", 1).await;
    let mut list = open(&alice, "/api/v1/live/repos").await;
    list.next().await.unwrap();
    let mut other_tab = alice.clone();
    let r = other_tab.post("/logout", &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    list.until("the session to end", |e| e.event == "signed-out")
        .await;
    assert!(
        list.next().await.is_none(),
        "the stream ends after signed-out"
    );
    // The old cookie opens no new stream.
    let (status, _) = refused(&alice, "/api/v1/live/repos").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_twenty_first_stream_of_a_user_is_refused_with_429() {
    let site = site().await;
    let alice = site.user("alice").await;
    let max = site.state.config.live_streams_per_user;
    assert_eq!(max, 20, "the default limit");
    let mut streams = Vec::new();
    for _ in 0..max {
        streams.push(open(&alice, "/api/v1/live/repos").await);
    }
    let (status, body) = refused(&alice, "/api/v1/live/repos").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let message = serde_json::from_str::<Value>(&body).unwrap()["message"].clone();
    assert!(
        message.as_str().unwrap().contains("20 live pages open"),
        "{body}"
    );
    // Another user is not held to Alice's count.
    let bob = site.user("bob").await;
    open(&bob, "/api/v1/live/repos").await;
    // A closed stream gives its place back.
    streams.pop();
    open(&alice, "/api/v1/live/repos").await;
}

#[tokio::test]
async fn graceful_shutdown_ends_open_streams_instead_of_waiting_for_them() {
    let site = site().await;
    let alice = site.user("alice").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(web::app::serve(listener, site.state.clone(), async {
        let _ = stopped.await;
    }));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /api/v1/live/repos HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nCookie: {}\r\n\r\n",
        cookie_header(&alice)
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = vec![0u8; 8192];
    tokio::time::timeout(DEADLINE, async {
        while !seen.contains("event: repos") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream closed early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .expect("the first event");
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stopped within 5 s with a stream open")
        .unwrap()
        .unwrap();
    // And the stream's connection was closed.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stream's connection is closed");
}
