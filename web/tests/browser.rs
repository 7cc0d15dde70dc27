//! The site in headless Chromium over WebDriver: sign in, create (after a refused name),
//! see it Ready, open its endpoint link, see a scale made with kubectl appear on the open page,
//! register an endpoint, send a request, redeploy, make a webhook URL and redeploy through it,
//! delete.
//! The site's public URL is the simulated load balancer, `http://kdeploy.localhost:<port>` as
//! `./dev up` has it (Chromium resolves `*.localhost` to the loopback address), so the link the
//! detail page shows is followed for real. Screenshots at 1280 px
//! and at phone width go to `$CARGO_TARGET_DIR/browser-screenshots` (or `target/`), each checked:
//! a PNG of the window's size that is not blank, of a page whose text says what the step expects.
//!
//! Needs Debian's `chromium` and `chromium-driver`: without them the test fails, naming what is
//! missing (it never passes without running).
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

/// Fails the test, naming what is missing, unless Chromium and its driver are installed.
fn require_browser() {
    let missing: Vec<String> = [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")]
        .into_iter()
        .filter(|(path, _)| !std::path::Path::new(path).exists())
        .map(|(path, package)| format!("{path} (Debian package {package})"))
        .collect();
    assert!(
        missing.is_empty(),
        "the browser test needs {}: install them (`apt-get install chromium chromium-driver`) \
         and run it again",
        missing.join(" and ")
    );
}

/// A screenshot's width, height and how many distinct colours it has (counted up to `enough`),
/// read from the PNG itself: signature, IHDR, the inflated IDAT stream, each scanline unfiltered.
/// Chromium writes 8-bit RGB or RGBA, not interlaced; anything else fails the test.
fn png_colours(png: &[u8], enough: usize) -> (usize, usize, usize) {
    use std::io::Read;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {} bytes",
        png.len()
    );
    let (mut header, mut data) = (None, Vec::new());
    let mut rest = &png[8..];
    while rest.len() >= 12 {
        let length = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let (kind, body) = (&rest[4..8], &rest[8..8 + length]);
        match kind {
            b"IHDR" => header = Some(body.to_vec()),
            b"IDAT" => data.extend_from_slice(body),
            _ => {}
        }
        rest = &rest[12 + length..];
    }
    let header = header.expect("a PNG has an IHDR chunk");
    let number = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().unwrap()) as usize;
    let (width, height) = (number(0), number(4));
    let (depth, colour, interlace) = (header[8], header[9], header[12]);
    let bpp = match (depth, colour, interlace) {
        (8, 2, 0) => 3,
        (8, 6, 0) => 4,
        other => panic!("unexpected PNG format (depth, colour type, interlace) {other:?}"),
    };
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(data.as_slice())
        .read_to_end(&mut raw)
        .unwrap();
    let stride = width * bpp;
    assert_eq!(
        raw.len(),
        height * (stride + 1),
        "IDAT size of {width}x{height}"
    );
    let mut previous = vec![0u8; stride];
    let mut row = vec![0u8; stride];
    let mut colours = std::collections::HashSet::new();
    for line in raw.chunks(stride + 1) {
        let (filter, bytes) = (line[0], &line[1..]);
        for i in 0..stride {
            let left = if i >= bpp { row[i - bpp] } else { 0 };
            let up = previous[i];
            let up_left = if i >= bpp { previous[i - bpp] } else { 0 };
            let predicted = match filter {
                0 => 0,
                1 => left,
                2 => up,
                3 => ((u16::from(left) + u16::from(up)) / 2) as u8,
                4 => paeth(left, up, up_left),
                other => panic!("unknown PNG filter {other}"),
            };
            row[i] = bytes[i].wrapping_add(predicted);
        }
        for pixel in row.chunks(bpp) {
            colours.insert(pixel.to_vec());
        }
        if colours.len() >= enough {
            break;
        }
        std::mem::swap(&mut previous, &mut row);
    }
    (width, height, colours.len())
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = i16::from(a) + i16::from(b) - i16::from(c);
    let (pa, pb, pc) = (
        (p - i16::from(a)).abs(),
        (p - i16::from(b)).abs(),
        (p - i16::from(c)).abs(),
    );
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
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
        // Chromedriver gives no signal that it listens: a session is tried until it opens, with
        // a deadline, and the failure names the last refusal.
        let limit = Duration::from_secs(20);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let last = match ClientBuilder::new(HttpConnector::new())
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
                Err(e) => e,
            };
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver on port {port} opened no session within {limit:?}; last: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Resizes the window and waits until the page is laid out at the new width (its
    /// `innerWidth`), so a screenshot never catches the old layout.
    async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
        let limit = Duration::from_secs(10);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let seen = self
                .client
                .execute("return window.innerWidth;", vec![])
                .await
                .unwrap();
            if seen.as_u64() == Some(u64::from(width)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page did not take the window's width {width} within {limit:?}: innerWidth {seen}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Saves the page at 1280 px and at phone width, once its text (through the DOM) says
    /// `expected`; each screenshot must be a PNG of that width, and not blank.
    async fn shoot(&self, name: &str, expected: &str) {
        let text = self.text("body").await;
        assert!(text.contains(expected), "{name}: no {expected:?} in {text}");
        for (width, height, suffix) in [(1280, 2000, "1280"), (390, 2400, "narrow")] {
            self.resize(width, height).await;
            let png = self.client.screenshot().await.unwrap();
            let (shot_width, shot_height, colours) = png_colours(&png, 16);
            assert!(
                shot_width == width as usize && shot_height >= 300,
                "{name}-{suffix}: a {shot_width}x{shot_height} screenshot of a {width} px window"
            );
            assert!(colours > 1, "{name}-{suffix}: the screenshot is blank");
            std::fs::write(self.shots.join(format!("{name}-{suffix}.png")), png).unwrap();
        }
        self.resize(1280, 2000).await;
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
        let limit = Duration::from_secs(10);
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // While the next page loads the script may fail; that counts as "not yet".
            let seen = self
                .client
                .execute(
                    "return [window.__kdeployOld === true, document.readyState, location.href];",
                    vec![],
                )
                .await;
            if let Ok(state) = &seen
                && state[0] == false
                && state[1] == "complete"
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "submitting {css} loaded no new page within {limit:?}; last seen \
                 [old page marker, readyState, URL]: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                // Where the browser is and what it shows, so a failure says why.
                let url = self.client.current_url().await.map(|u| u.to_string());
                let body = match self.client.find(Locator::Css("body")).await {
                    Ok(body) => body.text().await.unwrap_or_default(),
                    Err(e) => format!("(no body: {e})"),
                };
                let body: String = body.chars().take(1500).collect();
                panic!("{css} did not appear: {e}; the page at {url:?} shows:\n{body}")
            }
        }
    }

    async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.child.kill().await;
    }
}

#[tokio::test]
async fn a_developer_deploys_tries_redeploys_and_deletes_in_a_real_browser() {
    require_browser();
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
    d.shoot("01-login", "Sign in").await;
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
    d.shoot("02-new-repository-bad-name", "lowercase").await;

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
    d.shoot("03-detail-ready", "accepted by the ingress controller")
        .await;

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
    d.shoot("03b-endpoint-answer", "\"service\"").await;
    c.goto(&format!("{base}/repos/hello")).await.unwrap();
    d.wait_for("a.button.primary[href='/repos/hello/endpoints/new']")
        .await;

    // The open page follows a scale made with kubectl, without a reload, through its live
    // stream: while the stream is open the page polls nothing.
    c.execute("window.kdeployMarker = 'same page'", vec![])
        .await
        .unwrap();
    site.objects::<k8s_openapi::api::apps::v1::Deployment>("alice")
        .patch(
            "hello",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(
            "//dd[@data-field='replicas'][text()='2 ready of 2']",
        ))
        .await
        .unwrap_or_else(|e| panic!("the page did not show 2 ready of 2: {e}"));
    assert_eq!(
        c.execute("return window.kdeployMarker", vec![])
            .await
            .unwrap(),
        "same page",
        "the page was not reloaded"
    );
    let polled = c
        .execute(
            "return performance.getEntriesByType('resource')\
               .filter((e) => new URL(e.name).pathname === '/api/v1/repos/hello').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(polled, 0, "the page polled while its stream was open");
    d.shoot("03c-detail-live-scale", "2 ready of 2").await;

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
    d.shoot("04-console-response", "hello from the browser")
        .await;

    // Redeploy from the detail page.
    c.goto(&format!("{base}/repos/hello")).await.unwrap();
    d.submit("form[action='/repos/hello/redeploy'] button[type=submit]")
        .await;
    let notice = d.wait_for(".banner.ok").await.text().await.unwrap();
    assert!(notice.contains("Redeploy started"), "{notice}");
    d.shoot("05-detail-after-redeploy", "Redeploy started")
        .await;

    // Redeploy on image push: the page shows the webhook URL once; a Docker Hub push sent to it
    // redeploys, and the revisions name the webhook as who deployed.
    d.submit("form[action='/repos/hello/webhook#webhook'] button[type=submit]")
        .await;
    let url = d
        .wait_for("#webhook-url")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    let public = site.state.config.public_url.base();
    let path = url
        .strip_prefix(&public)
        .unwrap_or_else(|| panic!("{url}"))
        .to_string();
    let token = path.split_once("?token=").unwrap().1.to_string();
    assert!(path.starts_with("/hooks/v1/alice/hello?token="), "{url}");
    d.shoot("05b-webhook-url", "shown only once").await;
    let push = serde_json::json!({
        "push_data": {"pushed_at": 1_764_774_000, "tag": "latest"},
        "repository": {"repo_name": "library/nginx"},
    });
    let r = site
        .browser()
        .send(
            axum::http::Request::post(path.as_str())
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(push.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, axum::http::StatusCode::ACCEPTED, "{}", r.body);
    let mut api = site.browser();
    api.sign_in("alice", common::PASSWORD).await;
    api.poll_json(
        "the webhook's revision",
        "/api/v1/repos/hello/revisions",
        |j| j[0]["deployed_by"] == "webhook",
    )
    .await;
    c.goto(&format!("{base}/repos/hello")).await.unwrap();
    d.wait_for("[data-revision] td").await;
    assert!(
        !c.source().await.unwrap().contains(&token),
        "shown once only"
    );
    assert!(d.text("[data-field=webhook]").await.starts_with("On"));
    d.shoot("05c-detail-after-webhook", "push of nginx:latest")
        .await;

    // A private registry's login, saved on the Registries page: listed by server and username,
    // the password never shown again.
    c.goto(&format!("{base}/registries")).await.unwrap();
    d.fill("#server", "https://ghcr.io/").await;
    d.fill("#username", "alice-bot").await;
    d.fill("#password", "ghp-browser-token").await;
    d.submit("form[action='/registries'] button[type=submit]")
        .await;
    let notice = d.wait_for(".banner.ok").await.text().await.unwrap();
    assert!(
        notice.contains("The login for ghcr.io was saved"),
        "{notice}"
    );
    assert!(
        d.text("tr[data-registry='ghcr.io']")
            .await
            .contains("alice-bot")
    );
    assert!(!c.source().await.unwrap().contains("ghp-browser-token"));
    d.shoot("05d-registries", "alice-bot").await;
    c.goto(&format!("{base}/repos/hello")).await.unwrap();
    d.wait_for("form[action='/repos/hello/delete']").await;

    // Delete, confirming the dialog.
    d.click("form[action='/repos/hello/delete'] button[type=submit]")
        .await;
    c.accept_alert().await.unwrap();
    d.wait_for("p.empty").await;
    // The delete's own redirect, not a reload of the deleted repository's page by its stream.
    assert_eq!(c.current_url().await.unwrap().path(), "/repos");
    assert!(!c.source().await.unwrap().contains("data-repo=\"hello\""));
    d.shoot("06-list-after-delete", "Nothing deployed yet")
        .await;

    // A compose file, uploaded (the page's script reads it into the text box the form sends),
    // previewed as the repositories it becomes, then deployed as one group.
    let compose = "name: demo\nservices:\n  front:\n    image: nginx:1.27\n    ports: [\"8080:80\"]\n    depends_on: [cache]\n  cache:\n    image: nginx:1.27\n    expose: [\"6379\"]\n    restart: always\n";
    let file = std::env::temp_dir().join(format!("kdeploy-compose-{}.yaml", std::process::id()));
    std::fs::write(&file, compose).unwrap();
    d.submit("a[href='/compose']").await;
    c.find(Locator::Css("#compose-file"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    let loaded = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let value = c
                .execute("return document.getElementById('compose').value;", vec![])
                .await
                .unwrap();
            if value.as_str() == Some(compose) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(loaded.is_ok(), "the chosen file never reached the text box");
    let _ = std::fs::remove_file(&file);
    d.submit("button[data-action=preview]").await;
    d.wait_for("#preview tr[data-service=front]").await;
    let preview = d.text("#preview").await;
    assert!(
        preview.contains("Ready to deploy: 2 repositories"),
        "{preview}"
    );
    assert!(preview.contains("internal only"), "{preview}");
    assert!(preview.contains("/alice/front/"), "{preview}");
    assert!(
        d.text("tr[data-finding='services.cache.restart']")
            .await
            .contains("ignored")
    );
    // Cache first: front depends on it.
    let first = d.text("#preview tbody tr:first-child").await;
    assert!(first.contains("cache"), "{first}");
    d.shoot("07-compose-preview", "Ready to deploy").await;
    d.submit("button[data-action=deploy]").await;
    d.wait_for("tr[data-repo=front]").await;
    d.wait_for("tr[data-repo=cache]").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/repos");
    assert!(d.text("tr[data-repo=cache]").await.contains("compose demo"));
    d.shoot("08-list-after-compose", "compose demo").await;

    d.stop().await;
    server.abort();
}

/// The screenshot check itself: a one-colour image is blank, one more pixel of another colour is
/// not (each row written with a different PNG filter, as Chromium's encoder chooses them).
#[test]
fn the_screenshot_check_tells_a_blank_image() {
    use std::io::Write;
    fn png(width: u32, rows: &[Vec<u8>]) -> Vec<u8> {
        let chunk = |kind: &[u8], body: &[u8]| {
            let mut c = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(body);
            c.extend_from_slice(&[0; 4]); // CRC, not checked
            c
        };
        let mut header = width.to_be_bytes().to_vec();
        header.extend_from_slice(&u32::try_from(rows.len()).unwrap().to_be_bytes());
        header.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        for row in rows {
            z.write_all(row).unwrap();
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend(chunk(b"IHDR", &header));
        out.extend(chunk(b"IDAT", &z.finish().unwrap()));
        out.extend(chunk(b"IEND", &[]));
        out
    }
    // 2x3 white: filter None, then Sub (0 difference), then Up (0 difference).
    let white = [255u8; 6];
    let mut rows = vec![
        [&[0u8][..], &white].concat(),
        [&[1u8][..], &[255, 255, 255, 0, 0, 0]].concat(),
        [&[2u8][..], &[0; 6]].concat(),
    ];
    assert_eq!(png_colours(&png(2, &rows), 16), (2, 3, 1));
    // The last row's second pixel a shade darker (Paeth: predicted from the white above).
    rows[2] = [&[4u8][..], &[0, 0, 0, 255, 255, 255]].concat();
    assert_eq!(png_colours(&png(2, &rows), 16), (2, 3, 2));
}
