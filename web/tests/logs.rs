//! A repository's logs page, stream and JSON API over the simulator, whose pods here run a local
//! program that prints known lines (read back through the site's own identity and RBAC).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cluster::{LocalCommand, SimConfig};
use common::{Browser, Site, eventually, site_on_sim};
use http_body_util::BodyExt;
use tower::ServiceExt;

struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Prints four lines (one of them markup), then a last one once `go` exists in `dir`, then waits.
fn printer(dir: &std::path::Path) -> String {
    format!(
        r#"echo "first line"; echo "second line"; echo "third line"; echo "<b>bold</b> & more"
until [ -f '{d}/go' ]; do sleep 0.05; done
echo "late line"
exec sleep 600"#,
        d = dir.display()
    )
}

async fn site_with_printer() -> (Site, Scratch) {
    let dir = std::env::temp_dir().join(format!("web-logs-{}", cluster::meta::random_suffix(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let command = |prefix: &str| LocalCommand {
        image_prefix: prefix.into(),
        program: "sh".into(),
        args: vec!["-c".into(), printer(&dir)],
    };
    let site = site_on_sim(SimConfig {
        readiness_delay: Duration::from_millis(200),
        local_commands: vec![
            command("registry.local/printer"),
            command("registry.local/other"),
        ],
        ..SimConfig::default()
    })
    .await;
    (site, Scratch(dir))
}

const PRINTED: [&str; 4] = [
    "first line",
    "second line",
    "third line",
    "<b>bold</b> & more",
];

/// Creates the repository and waits until its pod's four lines are in the JSON API; returns
/// the pod's name.
async fn printing(b: &mut Browser, repo: &str) -> String {
    b.create_ok(repo, &format!("registry.local/{repo}:1"), "8080", "1")
        .await;
    let j = b
        .poll_json(
            "the pod's lines in the logs API",
            &format!("/api/v1/repos/{repo}/logs"),
            |j| j["lines"].as_array().is_some_and(|l| l.len() == 4),
        )
        .await;
    assert_eq!(j["lines"], serde_json::json!(PRINTED));
    j["pod"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn tail_and_since_read_the_pods_printed_lines_and_the_page_escapes_them() {
    let (site, _dir) = site_with_printer().await;
    let mut alice = site.user("alice").await;
    let pod = printing(&mut alice, "printer").await;

    let j = alice
        .get_json(&format!("/api/v1/repos/printer/logs?pod={pod}&tail=2"))
        .await;
    assert_eq!(j["lines"], serde_json::json!(PRINTED[2..]));
    assert_eq!(j["pods"], serde_json::json!([pod.clone()]));
    assert_eq!(j["tail"], 2);

    // since=1 leaves out lines older than a second, once they are; without it they are there.
    eventually("the lines to be older than a second", || {
        let mut alice = alice.clone();
        async move {
            let j = alice.get_json("/api/v1/repos/printer/logs?since=1").await;
            (j["lines"] == serde_json::json!([]) && j["since"] == 1).then_some(())
        }
    })
    .await;
    let j = alice
        .get_json("/api/v1/repos/printer/logs?since=3600&tail=5000")
        .await;
    assert_eq!(j["lines"], serde_json::json!(PRINTED));

    let page = alice
        .get(&format!("/repos/printer/logs?pod={pod}&tail=1"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("&lt;b&gt;bold&lt;/b&gt; &amp; more") && !page.body.contains("<b>bold"),
        "the log text is escaped: {}",
        page.body
    );
    assert!(!page.body.contains("third line"), "tail=1 shows one line");
    assert!(
        page.body
            .contains(&format!(r#"<option value="{pod}" selected>"#))
    );
    let detail = alice.get("/repos/printer").await;
    assert!(detail.body.contains(r#"href="/repos/printer/logs""#));
}

#[tokio::test]
async fn follow_streams_a_line_printed_after_the_request() {
    let (site, dir) = site_with_printer().await;
    let mut alice = site.user("alice").await;
    let pod = printing(&mut alice, "printer").await;

    let page = alice.get("/repos/printer/logs?follow=on&tail=1").await;
    let stream_url = format!("/repos/printer/logs/stream?pod={pod}&tail=1");
    assert!(
        page.body.contains(&format!(
            r#"data-log-follow="{}""#,
            stream_url.replace('&', "&amp;")
        )),
        "{}",
        page.body
    );
    let cookie = alice
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let request = Request::get(&stream_url)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let response = site.app().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let mut body = response.into_body();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut read_until = async |want: &str, seen: &mut String| {
        while !seen.contains(want) {
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .unwrap_or_else(|_| panic!("{want:?} streamed; so far: {seen:?}"))
                .expect("the stream goes on")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                seen.push_str(&String::from_utf8_lossy(&data));
            }
        }
    };
    read_until("<b>bold</b> & more\n", &mut seen).await;
    assert_eq!(seen, "<b>bold</b> & more\n", "the tail of one line first");
    std::fs::write(dir.0.join("go"), "").unwrap();
    read_until("late line\n", &mut seen).await;
    assert_eq!(seen, "<b>bold</b> & more\nlate line\n");
}

#[tokio::test]
async fn bad_inputs_other_repositories_pods_and_other_users_are_refused() {
    let (site, _dir) = site_with_printer().await;
    let mut alice = site.user("alice").await;
    let pod = printing(&mut alice, "printer").await;
    let other = printing(&mut alice, "other").await;

    // A pod of another repository is not one of this repository's.
    let r = alice
        .get(&format!("/api/v1/repos/printer/logs?pod={other}"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.json()["field"], "pod");
    let r = alice
        .get("/api/v1/repos/printer/logs?pod=no-such-pod")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.json()["field"], "pod");

    for (query, field, rule) in [
        ("tail=0", "tail", "from 1 to 5000"),
        ("tail=5001", "tail", "from 1 to 5000"),
        ("tail=ten", "tail", "from 1 to 5000"),
        ("since=0", "since", "from 1 to 86400"),
        ("since=86401", "since", "from 1 to 86400"),
        ("pod=Not_A_Pod", "pod", "DNS-1123 subdomain"),
        ("pod=-web", "pod", "DNS-1123 subdomain"),
    ] {
        let r = alice
            .get(&format!("/api/v1/repos/printer/logs?{query}"))
            .await;
        r.assert_refused(field);
        assert!(r.message().contains(rule), "the rule is named: {}", r.body);
        let page = alice.get(&format!("/repos/printer/logs?{query}")).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(
            page.body.contains(&format!(r#"id="{field}-error""#)),
            "{query}"
        );
        let stream = alice
            .get(&format!("/repos/printer/logs/stream?{query}"))
            .await;
        assert_eq!(stream.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
    }

    // Bob has no repository of that name, and cannot reach Alice's pod through his own.
    let mut bob = site.user("bob").await;
    let r = bob
        .get(&format!("/api/v1/repos/printer/logs?pod={pod}"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = bob.get(&format!("/repos/printer/logs?pod={pod}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = bob
        .get(&format!("/repos/printer/logs/stream?pod={pod}"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    bob.create_ok("mine", "registry.local/printer:1", "8080", "1")
        .await;
    let r = bob.get(&format!("/api/v1/repos/mine/logs?pod={pod}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.json()["field"], "pod");
}
