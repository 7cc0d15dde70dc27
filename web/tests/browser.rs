//! The site in headless Chromium over WebDriver: sign in, create (after a refused name),
//! see it Ready, open its endpoint link, register an endpoint, send a request, redeploy, delete.
//! The site's public URL is the simulated load balancer, `http://kdeploy.localhost:<port>` as
//! `./dev up` has it (Chromium resolves `*.localhost` to the loopback address), so the link the
//! detail page shows is followed for real. Screenshots at 1280 px
//! and at phone width go to `$CARGO_TARGET_DIR/browser-screenshots` (or `target/`).
//!
//! Installs Debian's `chromium` and `chromium-driver` when missing; skips, saying why, only when
//! they are missing and apt-get cannot install them.
// The driver helpers fail the test with the step's error, like the test body does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// True when Chromium and its driver are there (installing them if apt-get can).
async fn browser_available() -> bool {
    let present =
        || std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if present() {
        return true;
    }
    let apt = |args: &'static [&'static str]| async move {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success())
    };
    if !apt(&["update", "-qq"]).await
        || !apt(&["install", "-y", "-qq", "chromium", "chromium-driver"]).await
    {
        eprintln!(
            "SKIPPED browser test: chromium/chromium-driver are missing and apt-get could not install them"
        );
        return false;
    }
    present()
}

fn screenshot_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = base.join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Driver {
    child: Child,
    client: Client,
    shots: PathBuf,
}

impl Driver {
    async fn start() -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let profile =
            std::env::temp_dir().join(format!("kdeploy-chromium-{}-{port}", std::process::id()));
        let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,2000"
                ]
            }
        }))
        .unwrap();
        let mut last = None;
        for _ in 0..50 {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => {
                    return Self {
                        child,
                        client,
                        shots: screenshot_dir(),
                    };
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("chromedriver did not start: {last:?}");
    }

    /// Saves the page at 1280 px and at phone width.
    async fn shoot(&self, name: &str) {
        for (width, height, suffix) in [(1280, 2000, "1280"), (390, 2400, "narrow")] {
            self.client.set_window_size(width, height).await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(self.shots.join(format!("{name}-{suffix}.png")), png).unwrap();
        }
        self.client.set_window_size(1280, 2000).await.unwrap();
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Clicks a button or link and waits until the next page has loaded (a marker on the old
    /// page's window is gone), so no element of the old page is read by mistake.
    async fn submit(&self, css: &str) {
        self.client
            .execute("window.__kdeployOld = true;", vec![])
            .await
            .unwrap();
        self.click(css).await;
        for _ in 0..200 {
            let loaded = self
                .client
                .execute(
                    "return window.__kdeployOld !== true && document.readyState === 'complete';",
                    vec![],
                )
                .await
                .unwrap_or(serde_json::Value::Bool(false));
            if loaded == serde_json::Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("submitting {css} did not load a new page");
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
    }

    async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.child.kill().await;
    }
}

#[tokio::test]
async fn a_developer_deploys_tries_redeploys_and_deletes_in_a_real_browser() {
    if !browser_available().await {
        return;
    }
    let site = common::site_on_the_load_balancer().await;
    site.state
        .accounts
        .create_user("alice", common::PASSWORD, false)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = site.app();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let d = Driver::start().await;
    let c = &d.client;

    // Sign in.
    c.goto(&format!("{base}/login")).await.unwrap();
    d.shoot("01-login").await;
    d.fill("#username", "alice").await;
    d.fill("#password", common::PASSWORD).await;
    d.submit("button[type=submit].primary").await;
    d.wait_for("a.button.primary[href='/repos/new']").await;
    assert!(d.text("header.topbar").await.contains("alice"));

    // A bad name is refused next to the field, before anything is sent.
    d.submit("a.button.primary[href='/repos/new']").await;
    d.fill("#name", "Bad_Name").await;
    d.fill("#image", "nginx").await;
    d.fill("#port", "80").await;
    d.click("form[action='/repos'] button[type=submit]").await;
    let error = d.wait_for("#name-error").await;
    assert!(
        error.text().await.unwrap().contains("lowercase"),
        "{}",
        error.text().await.unwrap()
    );
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/repos/new")
    );
    d.shoot("02-new-repository-bad-name").await;

    // The server refuses it too when the page's script is bypassed.
    c.execute(
        "document.querySelector('form[action=\"/repos\"]').removeAttribute('data-validate')",
        vec![],
    )
    .await
    .unwrap();
    d.submit("form[action='/repos'] button[type=submit]").await;
    let error = d.wait_for("p.error#name-error").await;
    assert!(!error.text().await.unwrap().is_empty());
    assert_eq!(
        c.find(Locator::Css("#image"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("nginx"),
        "what was typed is kept"
    );

    d.fill("#name", "hello").await;
    d.submit("form[action='/repos'] button[type=submit]").await;
    d.wait_for("div.heading[data-poll='/api/v1/repos/hello']")
        .await;
    // The overview refreshes itself until Ready, without a reload.
    d.wait_for("[data-field=state] .pill.ready").await;
    // The pods table follows too.
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath(
            "//tbody[@data-field='pods']/tr/td[3][text()='yes']",
        ))
        .await
        .unwrap();
    let endpoint = site.state.config.public_url.endpoint("alice", "hello");
    assert!(
        endpoint.starts_with("http://kdeploy.localhost:"),
        "{endpoint}"
    );
    assert!(
        d.text("[data-field=endpoint]").await.contains(&endpoint),
        "the detail page shows the public URL"
    );
    assert!(
        d.text("[data-field=route]")
            .await
            .contains("accepted by the ingress controller")
    );
    d.shoot("03-detail-ready").await;

    // The endpoint link opens the service through the load balancer: the simulated echo pod
    // answers with what reached it (once NGINX has the new pod, a moment after Ready).
    site.reachable("/alice/hello/").await;
    d.submit("[data-field=endpoint] a").await;
    assert_eq!(c.current_url().await.unwrap().as_str(), endpoint);
    let page = d.text("body").await;
    let json = page
        .find('{')
        .zip(page.rfind('}'))
        .map(|(start, end)| &page[start..=end])
        .unwrap_or_else(|| panic!("no JSON answer: {page}"));
    let echo: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {page}"));
    assert_eq!(echo["namespace"], "alice", "{echo}");
    assert_eq!(echo["service"], "hello", "{echo}");
    assert_eq!(echo["path"], "/", "the prefix is stripped: {echo}");
    d.shoot("03b-endpoint-answer").await;
    c.goto(&format!("{base}/repos/hello")).await.unwrap();
    d.wait_for("a.button.primary[href='/repos/hello/endpoints/new']")
        .await;

    // Register an endpoint.
    d.submit("a.button.primary[href='/repos/hello/endpoints/new']")
        .await;
    d.fill("#name", "Echo").await;
    c.find(Locator::Css("#method"))
        .await
        .unwrap()
        .select_by_value("POST")
        .await
        .unwrap();
    d.fill("#path", "/echo").await;
    d.fill("#query", "color=blue").await;
    c.find(Locator::Css("#body_kind"))
        .await
        .unwrap()
        .select_by_value("json")
        .await
        .unwrap();
    d.fill("#body", r#"{"greeting": "hello from the browser"}"#)
        .await;
    d.fill("#description", "Echoes what it gets").await;
    d.submit("form.stack button[type=submit]").await;
    d.wait_for("form[action$='/send']").await;

    // Send it: the echo shows what reached the service.
    d.submit("form[action$='/send'] button[type=submit]").await;
    let body = d.wait_for("#result pre.body").await.text().await.unwrap();
    assert!(body.contains("\"query\": \"color=blue\""), "{body}");
    assert!(body.contains("hello from the browser"), "{body}");
    assert!(body.contains("\"path\": \"/echo\""), "{body}");
    assert!(d.text("#result .summary").await.contains("200 OK"));
    d.shoot("04-console-response").await;

    // Redeploy from the detail page.
    c.goto(&format!("{base}/repos/hello")).await.unwrap();
    d.submit("form[action='/repos/hello/redeploy'] button[type=submit]")
        .await;
    let notice = d.wait_for(".banner.ok").await.text().await.unwrap();
    assert!(notice.contains("Redeploy started"), "{notice}");
    d.shoot("05-detail-after-redeploy").await;

    // Delete, confirming the dialog.
    d.click("form[action='/repos/hello/delete'] button[type=submit]")
        .await;
    c.accept_alert().await.unwrap();
    d.wait_for("p.empty").await;
    assert!(!c.source().await.unwrap().contains("data-repo=\"hello\""));
    d.shoot("06-list-after-delete").await;

    d.stop().await;
    server.abort();
}
