//! A tiny W3C WebDriver client driving Debian's headless Chromium through chromedriver
//! (both installed by `scripts/install-chromium.sh`), for tests that use a web page the
//! way a person would: log in, wait for content, save a screenshot.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{Value, json};
use tempfile::{NamedTempFile, TempDir};

use crate::common::{eventually, free_port, read_tail, repo_root};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C key under which a WebDriver response names an element.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const STARTUP_LIMIT: Duration = Duration::from_secs(20);

/// One headless Chromium, driven through its own chromedriver on a free loopback port.
/// Dropping it ends the session and kills chromedriver and every browser process.
pub struct Browser {
    http: reqwest::Client,
    port: u16,
    session_id: String,
    driver: Child,
    log: NamedTempFile,
    /// The browser's fresh, empty profile (`--user-data-dir`), removed on drop.
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver, waits until it is ready, and opens a browser session.
    pub async fn start() -> Browser {
        Self::launch(json!({})).await
    }

    /// [`Browser::start`], with third-party cookies blocked, as more and more browsers
    /// do by default: a cross-site frame gets no cookies and no storage access.
    pub async fn start_blocking_third_party_cookies() -> Browser {
        Self::launch(json!({ "profile.cookie_controls_mode": 1, "profile.block_third_party_cookies": true })).await
    }

    /// Starts chromedriver and a browser session with the given Chromium preferences.
    async fn launch(prefs: Value) -> Browser {
        for (binary, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
            assert!(
                Path::new(binary).exists(),
                "{binary} not found (Debian package {package}): run scripts/install-chromium.sh"
            );
        }
        let profile = tempfile::Builder::new().prefix("foyer-chromium-").tempdir().expect("a browser profile dir");
        let log = NamedTempFile::with_prefix("foyer-chromedriver-").expect("a chromedriver log file");
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("the chromedriver log"))
            .stderr(log.reopen().expect("the chromedriver log"))
            // Its own process group, so drop can kill chromedriver and all of Chromium at once.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER} ({e}): run scripts/install-chromium.sh"));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client for chromedriver");
        let mut browser = Browser { http, port, session_id: String::new(), driver, log, _profile: profile };
        browser.wait_ready().await;

        let user_data_dir = format!("--user-data-dir={}", browser._profile.path().display());
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--window-size=1280,900",
                            user_data_dir,
                        ],
                        "prefs": prefs,
                    },
                },
            },
        });
        let (status, body) = browser.send(reqwest::Method::POST, "/session", Some(capabilities)).await;
        let session_id = body["value"]["sessionId"].as_str().map(str::to_owned);
        match session_id {
            Some(id) if (200..300).contains(&status) => browser.session_id = id,
            _ => panic!(
                "WebDriver New Session failed: HTTP {status}: {body}\nchromedriver log:\n{}",
                read_tail(browser.log.path())
            ),
        }
        browser
    }

    /// Polls chromedriver's `/status` until it reports ready.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            if let Ok(Some(exit)) = self.driver.try_wait() {
                panic!(
                    "{CHROMEDRIVER} exited ({exit}) before it was ready:\n{}\n(is it installed? run scripts/install-chromium.sh)",
                    read_tail(self.log.path())
                );
            }
            let url = format!("http://127.0.0.1:{}/status", self.port);
            if let Ok(response) = self.http.get(url).timeout(Duration::from_secs(2)).send().await
                && let Ok(body) = response.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{CHROMEDRIVER} on port {} was not ready within {STARTUP_LIMIT:?}:\n{}\n(run scripts/install-chromium.sh)",
                self.port,
                read_tail(self.log.path())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One WebDriver request; `path` is relative to the server root. Returns the HTTP
    /// status and the JSON body (`null` when it is not JSON).
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut request = self.http.request(method.clone(), url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| {
            panic!("WebDriver {method} {path}: no response from chromedriver: {e}\n{}", read_tail(self.log.path()))
        });
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A command in this session, e.g. `("POST", "/url")`; panics unless it succeeds, and
    /// returns the response's `value`.
    async fn command(&self, name: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session_id);
        let (status, mut response) = self.send(method.clone(), &path, body).await;
        assert!((200..300).contains(&status), "WebDriver {name} ({method} {path}) failed: HTTP {status}: {response}");
        response["value"].take()
    }

    /// Resizes the window (the viewport a screenshot shows).
    pub async fn resize(&self, width: u32, height: u32) {
        let rect = json!({ "width": width, "height": height });
        self.command("Set Window Rect", reqwest::Method::POST, "/window/rect", Some(rect)).await;
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.command("Navigate To", reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    /// The id of the first element matching the CSS selector, or `None` when none does.
    pub async fn find(&self, css: &str) -> Option<String> {
        let path = format!("/session/{}/element", self.session_id);
        let body = json!({ "using": "css selector", "value": css });
        let (status, response) = self.send(reqwest::Method::POST, &path, Some(body)).await;
        if status == 404 && response["value"]["error"] == "no such element" {
            return None;
        }
        assert!((200..300).contains(&status), "WebDriver Find Element ({css:?}) failed: HTTP {status}: {response}");
        match response["value"][ELEMENT_KEY].as_str() {
            Some(id) => Some(id.to_owned()),
            None => panic!("WebDriver Find Element ({css:?}) answered without an element: {response}"),
        }
    }

    async fn expect(&self, css: &str) -> String {
        match self.find(css).await {
            Some(id) => id,
            None => panic!("no element matches {css:?} on {}", self.current_url().await),
        }
    }

    /// The rendered text of the first element matching the CSS selector, as a reader sees
    /// it (markup in the page's data shows as text only if it was escaped).
    pub async fn text(&self, css: &str) -> Option<String> {
        let id = self.find(css).await?;
        let value = self.command("Get Element Text", reqwest::Method::GET, &format!("/element/{id}/text"), None).await;
        Some(value.as_str().unwrap_or_default().to_owned())
    }

    /// Types `text` into the first element matching the CSS selector.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.expect(css).await;
        let path = format!("/element/{id}/value");
        self.command("Element Send Keys", reqwest::Method::POST, &path, Some(json!({ "text": text }))).await;
    }

    /// Presses the keys of `text` one after another on whatever has the focus, as a
    /// keyboard would (`\u{E004}` is Tab, `\u{E007}` Enter): no element is picked.
    pub async fn press(&self, text: &str) {
        let actions: Vec<Value> = text
            .chars()
            .flat_map(|key| {
                [
                    json!({"type": "keyDown", "value": key.to_string()}),
                    json!({"type": "keyUp", "value": key.to_string()}),
                ]
            })
            .collect();
        let body = json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]});
        self.command("Perform Actions", reqwest::Method::POST, "/actions", Some(body)).await;
    }

    /// Empties the first input or text area matching the CSS selector.
    pub async fn clear(&self, css: &str) {
        let id = self.expect(css).await;
        self.command("Element Clear", reqwest::Method::POST, &format!("/element/{id}/clear"), Some(json!({}))).await;
    }

    /// Clicks the first element matching the CSS selector.
    pub async fn click(&self, css: &str) {
        let id = self.expect(css).await;
        self.command("Element Click", reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    /// The current page's HTML, as the browser now holds it.
    pub async fn source(&self) -> String {
        let value = self.command("Get Page Source", reqwest::Method::GET, "/source", None).await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The HTML of the page's `index`th frame as the browser holds it (WebDriver enters
    /// frames of any origin), or `None` while there is no such frame.
    pub async fn frame_source(&self, index: u32) -> Option<String> {
        let path = format!("/session/{}/frame", self.session_id);
        let (status, _) = self.send(reqwest::Method::POST, &path, Some(json!({ "id": index }))).await;
        if status == 404 {
            return None;
        }
        let source = self.source().await;
        self.command("Switch To Parent Frame", reqwest::Method::POST, "/frame/parent", Some(json!({}))).await;
        Some(source)
    }

    /// Makes the current page's `index`th frame the one later commands act in; `false`
    /// while there is no such frame.
    pub async fn enter_frame(&self, index: u32) -> bool {
        let path = format!("/session/{}/frame", self.session_id);
        let (status, response) = self.send(reqwest::Method::POST, &path, Some(json!({ "id": index }))).await;
        assert!(status == 404 || (200..300).contains(&status), "WebDriver Switch To Frame failed: {response}");
        status != 404
    }

    /// Makes the top-level page the one later commands act in again.
    pub async fn leave_frames(&self) {
        self.command("Switch To Frame", reqwest::Method::POST, "/frame", Some(json!({ "id": null }))).await;
    }

    /// Runs `script`, a function body, in the current frame and returns what it returns
    /// (a promise's value once it settles).
    pub async fn execute(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        self.command("Execute Script", reqwest::Method::POST, "/execute/sync", Some(body)).await
    }

    /// [`Browser::execute`] in the top-level page's `index`th frame, or `None` while
    /// there is no such frame.
    pub async fn execute_in_frame(&self, index: u32, script: &str) -> Option<Value> {
        if !self.enter_frame(index).await {
            return None;
        }
        let value = self.execute(script).await;
        self.leave_frames().await;
        Some(value)
    }

    /// The text of the alert, confirm or prompt dialog open in the browser, or `None`
    /// while there is none.
    pub async fn alert_text(&self) -> Option<String> {
        let path = format!("/session/{}/alert/text", self.session_id);
        let (status, response) = self.send(reqwest::Method::GET, &path, None).await;
        if status == 404 && response["value"]["error"] == "no such alert" {
            return None;
        }
        assert!((200..300).contains(&status), "WebDriver Get Alert Text failed: HTTP {status}: {response}");
        Some(response["value"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn title(&self) -> String {
        let value = self.command("Get Title", reqwest::Method::GET, "/title", None).await;
        value.as_str().unwrap_or_default().to_owned()
    }

    pub async fn current_url(&self) -> String {
        let value = self.command("Get Current URL", reqwest::Method::GET, "/url", None).await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Saves a PNG screenshot of the viewport to `path`, creating its parent directories.
    pub async fn screenshot(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let value = self.command("Take Screenshot", reqwest::Method::GET, "/screenshot", None).await;
        let encoded = value.as_str().unwrap_or_else(|| panic!("WebDriver Take Screenshot answered {value}"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_else(|e| panic!("WebDriver Take Screenshot answered invalid base64: {e}"));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Best effort: ending the session lets chromedriver close Chromium cleanly. A plain
        // blocking request, since drop cannot await.
        if !self.session_id.is_empty()
            && let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session_id, self.port
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        // Then kill whatever is left: chromedriver leads its own process group, which
        // Chromium and its helpers inherit.
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Decodes an `application/x-www-form-urlencoded` value: `+` is a space, `%XX` a byte.
fn form_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_logs_in_through_a_form() {
    use axum::{
        Router,
        response::Html,
        routing::{get, post},
    };

    let app = Router::new()
        .route(
            "/",
            get(|| async {
                Html(
                    "<!doctype html><title>Log in</title>\
                     <form method=post action=/login><input name=token><button type=submit>Log in</button></form>",
                )
            }),
        )
        .route(
            "/login",
            post(|body: String| async move {
                let token = body
                    .split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(key, _)| *key == "token")
                    .map(|(_, value)| form_decode(value))
                    .unwrap_or_default();
                Html(format!("<!doctype html><title>Welcome</title><h1 id=hello>Hello, {}</h1>", html_escape(&token)))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("its address"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let browser = Browser::start().await;
    browser.goto(&format!("{base}/")).await;
    assert_eq!(browser.title().await, "Log in");
    assert_eq!(browser.find("#hello").await, None, "no greeting before logging in");
    browser.type_into("input[name=token]", "s3cret").await;
    browser.click("button[type=submit]").await;

    eventually(Duration::from_secs(10), "the page to say Hello, s3cret", || async {
        browser.source().await.contains("Hello, s3cret").then_some(())
    })
    .await;
    assert!(browser.find("#hello").await.is_some(), "the greeting is an element");
    assert_eq!(browser.title().await, "Welcome");
    assert_eq!(browser.current_url().await, format!("{base}/login"));

    let shot = repo_root().join("target/test-artifacts/browser-smoke.png");
    let _ = std::fs::remove_file(&shot);
    browser.screenshot(&shot).await;
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", shot.display());
    println!("screenshot: {} ({} bytes)", shot.display(), png.len());

    drop(browser);
    server.abort();
}

/// Another site frames Foyer's status page and a claim page: Chromium shows neither
/// (their `frame-ancestors 'none'`), while a page of that site that allows it is framed
/// beside them, so the frames are seen to load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_site_cannot_frame_the_status_or_claim_page() {
    use axum::{Router, response::Html, routing::get};

    let foyer = crate::common::foyer::TestFoyer::start().await;
    let (status, claim) = (format!("{}/status", foyer.base_url), format!("{}/claim/ABCD-EFGH-JKLM", foyer.base_url));
    let page = format!(
        "<!doctype html><title>Elsewhere</title><iframe src=/framable></iframe>\
         <iframe src=\"{status}\"></iframe><iframe src=\"{claim}\"></iframe>"
    );
    let app = Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route("/framable", get(|| async { Html("<!doctype html><title>Framable</title><p id=here>framed here</p>") }));
    // Another origin: localhost, where Foyer is on 127.0.0.1.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let base = format!("http://localhost:{}", listener.local_addr().expect("its address").port());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let browser = Browser::start().await;
    browser.goto(&format!("{base}/")).await;
    eventually(Duration::from_secs(10), "the framable page to show in its frame", || async {
        browser.frame_source(0).await.filter(|s| s.contains("framed here")).map(|_| ())
    })
    .await;
    for (index, what, shown) in
        [(1, "the status page", "API token"), (2, "the claim page", "This claim link does not work")]
    {
        let source = browser.frame_source(index).await.unwrap_or_else(|| panic!("no frame for {what}"));
        assert!(!source.contains(shown), "{what} shows in another site's frame: {source}");
    }
    // Foyer's pages themselves show in a window of their own.
    browser.goto(&status).await;
    assert!(browser.source().await.contains("API token"), "{}", browser.source().await);
    drop(browser);
    server.abort();
}

/// A test Foyer whose chat page only `origin` may frame: every slot's config has a
/// `webchat` section, whose `allowed_origins` this replaces.
pub(crate) async fn foyer_framed_by(origin: &str) -> crate::common::foyer::TestFoyer {
    crate::common::foyer::TestFoyer::start_with(
        |yaml| {
            let slot_origin = crate::common::foyer::WEBCHAT_ORIGIN;
            let (old, new) =
                (format!("allowed_origins: [\"{slot_origin}\"]"), format!("allowed_origins: [\"{origin}\"]"));
            assert!(yaml.contains(&old), "the slot's webchat section changed shape:\n{yaml}");
            yaml.replace(&old, &new)
        },
        &[],
    )
    .await
}

/// The web chat page (docs/web-chat.md) as the platform's watch page shows it: in a
/// 320 px iframe of another site, with third-party cookies blocked, given a token that is
/// not one: the viewer token leaves the frame's address at once, a page without a token
/// asks for a claim code, and the API's refusals are said in words, not a crash. A site that is not among
/// `webchat.allowed_origins` cannot frame it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_works_in_another_sites_frame_with_third_party_cookies_blocked() {
    use axum::{Router, response::Html, routing::get};

    // Two other sites, on localhost where Foyer is on 127.0.0.1: one allowed to frame
    // the chat, one not (another port is another origin).
    let allowed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let allowed_base = format!("http://localhost:{}", allowed.local_addr().expect("its address").port());
    let elsewhere_base = format!("http://localhost:{}", elsewhere.local_addr().expect("its address").port());
    let foyer = foyer_framed_by(&allowed_base).await;
    let chat = format!("{}/chat/show-1", foyer.base_url);
    let watch_page = format!(
        "<!doctype html><title>Watch</title><div id=player>player</div>\
         <iframe src=\"{chat}#token=not.a.token\" width=320 height=480></iframe>\
         <iframe src=\"{chat}\" width=320 height=480></iframe>"
    );
    let app = Router::new().route("/", get(move || async move { Html(watch_page) }));
    let servers = [
        tokio::spawn(axum::serve(allowed, app.clone()).into_future()),
        tokio::spawn(axum::serve(elsewhere, app).into_future()),
    ];

    let browser = Browser::start_blocking_third_party_cookies().await;
    browser.goto(&format!("{allowed_base}/")).await;

    // The frame with a token: the token is gone from its address, and the refusal is said.
    let error = eventually(Duration::from_secs(15), "the framed chat to say why it could not start", || async {
        let value = browser
            .execute_in_frame(
                0,
                "const e = document.getElementById('error'); return e && !e.hidden ? e.textContent : null;",
            )
            .await?;
        value.as_str().map(str::to_owned)
    })
    .await;
    assert!(error.starts_with("Could not start the chat"), "{error}");
    let address = browser.execute_in_frame(0, "return location.href;").await.expect("the first frame");
    assert_eq!(address, Value::String(chat.clone()), "the token left the frame's address");
    let shown = browser.execute_in_frame(0, "return document.body.innerText;").await.expect("the first frame");
    assert!(!shown.as_str().unwrap_or_default().contains("not.a.token"), "{shown}");

    // Third-party cookies are indeed blocked for the framed page.
    let access = browser.execute_in_frame(0, "return document.hasStorageAccess();").await.expect("the first frame");
    assert_eq!(access, Value::Bool(false), "the framed chat has no cookies or storage of its own");

    // The frame without a token asks for a claim code, and says the refusal of one.
    let claim_shown = "const f = document.getElementById('claim'); return Boolean(f && !f.hidden);";
    eventually(Duration::from_secs(15), "the claim-code form in the second frame", || async {
        (browser.execute_in_frame(1, claim_shown).await? == Value::Bool(true)).then_some(())
    })
    .await;
    assert!(browser.enter_frame(1).await, "the second frame");
    let label = browser.text("label[for=claim-code]").await;
    assert_eq!(label.as_deref(), Some("Claim code"));
    browser.type_into("#claim-code", "abcd-efgh-jklm").await;
    browser.click("#claim-join").await;
    let error = eventually(Duration::from_secs(15), "the claim form to say why it could not start", || async {
        let value = browser
            .execute("const e = document.getElementById('error'); return e && !e.hidden ? e.textContent : null;")
            .await;
        value.as_str().map(str::to_owned)
    })
    .await;
    assert!(error.starts_with("Could not start the chat"), "{error}");
    // From 320 px: nothing sticks out sideways.
    let overflow = browser.execute("const d = document.documentElement; return [d.clientWidth, d.scrollWidth];").await;
    assert!(
        overflow[0].as_u64() <= Some(320) && overflow[1] == overflow[0],
        "the page is wider than its frame: {overflow}"
    );
    browser.leave_frames().await;

    let shot = repo_root().join("target/test-artifacts/webchat-framed.png");
    browser.screenshot(&shot).await;
    println!("screenshot: {}", shot.display());

    // A site not in webchat.allowed_origins frames nothing: once every frame has loaded,
    // neither shows the chat.
    browser.goto(&format!("{elsewhere_base}/")).await;
    eventually(Duration::from_secs(15), "the other site's page and its frames to load", || async {
        (browser.execute("return document.readyState;").await == "complete").then_some(())
    })
    .await;
    for index in [0, 1] {
        let source = browser.frame_source(index).await.unwrap_or_default();
        assert!(!source.contains("claim-code"), "the chat shows in a frame of a site it does not allow: {source}");
    }

    drop(browser);
    for server in servers {
        server.abort();
    }
}

/// The chat beside the player as a fan uses it, nothing mocked: a real Synapse and a real
/// Foyer, a watch page of another site (localhost, where Foyer is on 127.0.0.1) framing
/// `/chat/{reservation}#token=…` beside its player, third-party cookies blocked. The token
/// leaves the frame's address and the header says the room is open; a Matrix member's
/// message shows by their name, no Matrix ID anywhere; markup in a member's body,
/// `formatted_body` and display name shows as text and runs nothing; what the fan sends
/// with Enter reaches the room from their web user, `<name> (web)`. The screenshot of the
/// watch page is `docs/images/web-chat.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_chats_beside_the_player_with_a_matrix_member_through_a_real_foyer() {
    use axum::{Router, response::Html, routing::get};

    use crate::{
        common::{foyer::open_reservation, synapse::Synapse, unique, webchat::ChatClient},
        web_chat::{mint, now},
    };

    let host = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let host_base = format!("http://localhost:{}", host.local_addr().expect("its address").port());
    let foyer = foyer_framed_by(&host_base).await;

    // The room: a Matrix member with a display name, joined, and the web fan's email ticket.
    let id = unique("webpage");
    let suffix = &id[id.len() - 4..];
    let member = Synapse::shared().create_user("member").await;
    let set_name = |name: String| {
        let member = member.clone();
        async move {
            let path = format!("/_matrix/client/v3/profile/{}/displayname", crate::common::enc(&member.user_id));
            let (status, body) =
                member.request(reqwest::Method::PUT, &path, Some(json!({ "displayname": name }))).await;
            assert_eq!(status, 200, "{body}");
        }
    };
    let ada = format!("Ada {suffix}");
    set_name(ada.clone()).await;
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[(&format!("{id}-t0"), member.user_id.as_str())]).await;
    let (ticket, email) = (format!("{id}-t1"), "dana@example.org");
    let email_ticket = json!({ "ticket_id": ticket, "email": email });
    foyer.accept("ticket.granted", json!({ "reservation_id": id, "tickets": [email_ticket] })).await;
    let room_id = foyer.room_id(&id, Duration::from_secs(30)).await;
    member.join_once_invited(&room_id, Duration::from_secs(30)).await;

    // The platform's watch page: a player, and the chat framed beside it with a real token.
    let dana = format!("Dana {suffix}");
    let claims = json!({"aud": "foyer", "iat": now(), "exp": now() + 3600, "rid": id, "tid": ticket, "name": dana});
    let token = mint(crate::common::foyer::WEBCHAT_SECRET, claims);
    let chat = format!("{}/chat/{id}", foyer.base_url);
    let watch_page = format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Show {id}: watch</title>\
         <style>body{{margin:0;font:16px system-ui,sans-serif;background:#eceef2;color:#14161a}}\
         header{{padding:12px 16px;font-weight:600}}main{{display:flex;gap:16px;padding:0 16px 16px}}\
         #player{{flex:1;aspect-ratio:16/9;align-self:flex-start;background:#111;color:#ddd;border-radius:8px;\
         display:flex;align-items:center;justify-content:center;font-size:20px}}\
         iframe{{border:1px solid #c8ccd4;border-radius:8px;background:#fff}}</style>\
         <header>Show {id}</header>\
         <main><div id=player role=img aria-label=\"The player\">&#9654; The player</div>\
         <iframe src=\"{chat}#token={token}\" title=Chat width=320 height=600></iframe></main>"
    );
    let app = Router::new().route("/", get(move || async move { Html(watch_page) }));
    let server = tokio::spawn(axum::serve(host, app).into_future());

    let browser = Browser::start_blocking_third_party_cookies().await;
    browser.resize(1100, 820).await;
    browser.goto(&format!("{host_base}/")).await;
    assert!(browser.enter_frame(0).await, "the chat's frame");

    // 1. In: the token is gone from the frame's address; the header says the room is open.
    eventually(Duration::from_secs(30), "the frame's header to say the room is open", || async {
        (browser.text("#phase").await.as_deref() == Some("Open")).then_some(())
    })
    .await;
    assert_eq!(browser.execute("return location.href;").await, Value::String(chat.clone()), "the token left");
    assert_eq!(browser.text("#me").await, Some(format!("You are writing as {dana}.")));
    assert_eq!(browser.execute("return document.hasStorageAccess();").await, false, "third-party cookies blocked");

    // 2. A Matrix member writes: the fan sees it by the member's name.
    let hello = format!("Hello from the room, {suffix}!");
    let (status, sent) = member.send_text(&room_id, &hello).await;
    assert_eq!(status, 200, "{sent}");
    wait_for_message(&browser, &ada, &hello).await;

    // 3. Markup from the room, in a display name, a body and a formatted body, is text.
    let bold = format!("<b>bold</b> Ada {suffix}");
    set_name(bold.clone()).await;
    let evil = "<script>alert(1)</script> <img src=x onerror=alert(2)>";
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
        crate::common::enc(&room_id),
        crate::common::random_token()
    );
    let content =
        json!({"msgtype": "m.text", "body": evil, "format": "org.matrix.custom.html", "formatted_body": evil});
    let (status, sent) = member.request(reqwest::Method::PUT, &path, Some(content)).await;
    assert_eq!(status, 200, "{sent}");
    wait_for_message(&browser, &bold, evil).await;
    let elements = browser
        .execute(
            "return ['script', 'img', 'b'].map((tag) => document.querySelectorAll('#messages ' + tag).length)
                .concat([document.querySelectorAll('img, b').length]);",
        )
        .await;
    assert_eq!(elements, json!([0, 0, 0, 0]), "markup from the room made elements");
    assert_eq!(browser.alert_text().await, None, "an alert fired");

    // The frame is 320 px wide, the narrowest the page is made for: nothing overflows it.
    let overflow =
        browser.execute("return document.documentElement.scrollWidth - document.documentElement.clientWidth;");
    assert_eq!(overflow.await, json!(0), "the chat overflows a 320 px frame");

    // 4. The fan writes with the keyboard alone: Tab from the watch page into the frame
    // and on to the message box, type, Enter. The member sees it from the fan's marked
    // web user.
    tab_into_frame(&browser, "body").await;
    let said = format!("Hi from the watch page, {suffix}");
    browser.press(&format!("{said}\u{E007}")).await;
    assert!(browser.enter_frame(0).await, "the chat's frame");
    let sender = member.sender_of(&room_id, &said).await;
    let named = member.member_event(&room_id, &sender).await.expect("the web user's member event");
    assert_eq!(named["displayname"], format!("{dana} (web)"), "{named}");
    eventually(Duration::from_secs(30), "the fan's message back in the frame, with Delete", || async {
        let script = "return Array.from(document.querySelectorAll('#messages > li'), (li) =>
            [li.querySelector('.body').textContent, Array.from(li.querySelectorAll('.actions button'), (b) => b.textContent)]);";
        let rows = browser.execute(script).await;
        rows.as_array()?.contains(&json!([said, ["Delete"]])).then_some(())
    })
    .await;
    assert_eq!(browser.execute("return document.getElementById('body').value;").await, "", "the box emptied");

    // Nowhere in the frame a Matrix ID, the fan's email or the token: not in its text,
    // not in its markup.
    let text = browser.execute("return document.body.innerText;").await;
    let text = text.as_str().expect("the frame's text");
    let id_like = browser.execute("return document.body.innerText.match(/@[^\\s:@]+:[A-Za-z0-9.-]+/g);").await;
    assert_eq!(id_like, Value::Null, "a Matrix ID in the frame: {text}");
    let markup = browser.execute("return document.documentElement.outerHTML;").await;
    let markup = markup.as_str().expect("the frame's markup");
    for secret in [member.user_id.as_str(), sender.as_str(), &foyer.slot.bot_user_id(), email, &token] {
        assert!(!markup.contains(secret), "{secret} in the frame: {markup}");
    }
    assert!(text.contains(&hello) && text.contains(evil) && text.contains(&said), "{text}");
    browser.leave_frames().await;

    // What the frame received, read again through the tests' checked client: the page,
    // its script and style, a session from the same token, and the stream up to the fan's
    // message.
    let checked = ChatClient::of(&foyer).keeping(&[email]);
    let (status, page) = checked.get(&format!("/chat/{id}")).await;
    assert_eq!(status, 200, "{page}");
    for asset in page.split('"').filter(|part| part.starts_with("/chat/assets/")) {
        assert_eq!(checked.get(asset).await.0, 200, "{asset}");
    }
    let (status, answer, text) = checked.session(&json!({"token": token, "reservation_id": id})).await;
    assert_eq!(status, 200, "{text}");
    let (_, stream) = checked.stream(answer["session"].as_str().expect("a session"), None).await;
    let mut stream = stream.unwrap_or_else(|refused| panic!("the stream: {refused}"));
    stream.until("the fan's message", |e| e.data["body"] == said.as_str()).await;

    let shot = repo_root().join("target/test-artifacts/web-chat.png");
    browser.screenshot(&shot).await;
    eprintln!("[web chat] screenshot saved to {}", shot.display());
    drop(browser);
    server.abort();
}

/// A fan with only an email ticket gets into the chat on the watch page by typing the
/// claim code from their email, as they would: with the keyboard alone, in lower case,
/// with spaces. The frame is
/// another site's, third-party cookies blocked; the page then shows the room, the fan
/// writes, and the message reaches the room from their web user, named as the platform
/// named the ticket's holder. The ticket stays claimable in a Matrix client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_with_only_an_email_types_their_claim_code_into_the_framed_chat() {
    use axum::{Router, response::Html, routing::get};

    use crate::common::{foyer::open_reservation, synapse::Synapse, unique};

    let host = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let host_base = format!("http://localhost:{}", host.local_addr().expect("its address").port());
    let foyer = foyer_framed_by(&host_base).await;
    let id = unique("webcode");
    let member = Synapse::shared().create_user("member").await;
    foyer.accept("reservation.created", open_reservation(&id, &[], 1)).await;
    foyer.grant(&id, &[(&format!("{id}-t0"), member.user_id.as_str())]).await;
    let name = format!("Eve {}", &id[id.len() - 4..]);
    let email = crate::claims::address("eve");
    let ticket = json!({"ticket_id": "t-eve", "email": email, "display_name": name});
    foyer.accept("ticket.granted", json!({"reservation_id": id, "tickets": [ticket]})).await;
    let code = crate::claims::ticket(&foyer, &id, "t-eve").await["claim"]["code"].as_str().expect("a code").to_owned();
    let room_id = foyer.room_id(&id, Duration::from_secs(30)).await;
    member.join_once_invited(&room_id, Duration::from_secs(30)).await;

    let chat = format!("{}/chat/{id}", foyer.base_url);
    let watch_page = format!(
        "<!doctype html><title>Watch</title><div id=player>player</div>\
         <iframe src=\"{chat}\" width=320 height=560></iframe>"
    );
    let app = Router::new().route("/", get(move || async move { Html(watch_page) }));
    let server = tokio::spawn(axum::serve(host, app).into_future());
    let browser = Browser::start_blocking_third_party_cookies().await;
    browser.goto(&format!("{host_base}/")).await;
    let claim_shown = "const f = document.getElementById('claim'); return Boolean(f && !f.hidden);";
    eventually(Duration::from_secs(15), "the claim-code form in the frame", || async {
        (browser.execute_in_frame(0, claim_shown).await? == Value::Bool(true)).then_some(())
    })
    .await;
    // With the keyboard alone: Tab into the frame's code box, type, Enter.
    tab_into_frame(&browser, "claim-code").await;
    browser.press(&format!("{}\u{E007}", code.to_lowercase().replace('-', " "))).await;
    assert!(browser.enter_frame(0).await, "the chat's frame");
    eventually(Duration::from_secs(30), "the frame's header to say the room is open", || async {
        (browser.text("#phase").await.as_deref() == Some("Open")).then_some(())
    })
    .await;
    assert_eq!(browser.text("#me").await, Some(format!("You are writing as {name}.")));

    let said = format!("typed my code, {id}");
    tab_into_frame(&browser, "body").await;
    browser.press(&format!("{said}\u{E007}")).await;
    assert!(browser.enter_frame(0).await, "the chat's frame");
    let sender = member.sender_of(&room_id, &said).await;
    let named = member.member_event(&room_id, &sender).await.expect("the web user's member event");
    assert_eq!(named["displayname"], format!("{name} (web)"), "{named}");
    wait_for_message(&browser, &name, &said).await;
    let markup = browser.execute("return document.documentElement.outerHTML;").await;
    let markup = markup.as_str().expect("the frame's markup");
    for secret in [code.as_str(), email.as_str(), member.user_id.as_str(), sender.as_str()] {
        assert!(!markup.contains(secret), "{secret} in the frame: {markup}");
    }
    let held = crate::claims::ticket(&foyer, &id, "t-eve").await;
    assert_eq!(held["state"], "unclaimed", "a claim-code session binds nothing in Matrix: {held}");
    drop(browser);
    server.abort();
}

/// Presses Tab from the top of the watch page until the element `id` of its first frame
/// has the focus, as a keyboard user reaches it; leaves the browser in the page.
async fn tab_into_frame(browser: &Browser, id: &str) {
    browser.leave_frames().await;
    browser.execute("document.activeElement.blur(); window.focus();").await;
    for _ in 0..40 {
        browser.press("\u{E004}").await;
        let focused = browser.execute_in_frame(0, "return document.hasFocus() && document.activeElement.id;").await;
        if focused == Some(json!(id)) {
            return;
        }
    }
    panic!("Tab never reached #{id} in the frame");
}

/// Waits until the chat's frame (the current one) shows a message with this sender's name
/// and body, as text.
pub(crate) async fn wait_for_message(browser: &Browser, name: &str, body: &str) {
    let script = "return Array.from(document.querySelectorAll('#messages > li'),
        (li) => [li.querySelector('.name').textContent, li.querySelector('.body').textContent]);";
    let wanted = json!([name, body]);
    let what = format!("{name}: {body} in the frame");
    eventually(Duration::from_secs(30), &what, || async {
        let shown = browser.execute(script).await;
        shown.as_array()?.contains(&wanted).then_some(())
    })
    .await;
}

/// What the mock chat API of [`the_chat_page_reads_and_writes_as_docs_web_chat_says`] saw.
#[derive(Default)]
struct MockChat {
    sessions: Vec<Value>,
    last_event_ids: Vec<Option<String>>,
    txn_ids: Vec<String>,
}

/// This mock stays beside [`a_fan_chats_beside_the_player_with_a_matrix_member_through_a_real_foyer`]
/// for what a real Foyer cannot be made to answer on demand yet: a slow-mode 429 with its
/// countdown, a busy room's 429 (a real Foyer gives it only to some of a crowd of first
/// messages, which one depends on timing; `big_shows.rs` checks that answer on the API),
/// a `reset`, an edit, events split across chunks.
///
/// The page's own script against a mock of the chat API as `docs/web-chat.md` describes
/// it: the page's files, read from the repository, served with Foyer's policy by a mock on
/// 127.0.0.1, framed by a page on localhost with third-party cookies blocked. The stream's events arrive split across chunks and lines; the page
/// shows them as text, reconnects with `Last-Event-ID`, obeys `reset`, edits and removes,
/// badges roles, announces only what follows `ready`; a slow-mode refusal and a busy room's
/// count down, and the retries (the last with the keyboard) reuse the `txn_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_reads_and_writes_as_docs_web_chat_says() {
    use std::sync::{Arc, Mutex};

    use axum::{
        Json, Router,
        body::Body,
        extract::State,
        http::{HeaderMap, StatusCode, header},
        response::IntoResponse,
        routing::{get, post},
    };
    use futures_util::stream::{self, StreamExt as _};

    let assets = repo_root().join("src/http/webchat/assets");
    let read = |name: &str| std::fs::read_to_string(assets.join(name)).expect("a file of the page");
    let html = read("chat.html").replace("{js}", "chat.js").replace("{css}", "chat.css");
    let (script, style) = (read("chat.js"), read("chat.css"));

    let host = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let host_base = format!("http://localhost:{}", host.local_addr().expect("its address").port());
    let mock = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let mock_base = format!("http://127.0.0.1:{}", mock.local_addr().expect("its address").port());
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'none'; \
         base-uri 'none'; form-action 'none'; frame-ancestors {host_base}"
    );

    let message = |id: u32, key: &str, name: &str, role: &str, body: &str| {
        let data = json!({"event_id": format!("${id}"), "sender": {"key": key, "name": name, "role": role}, "body": body, "ts": 1_700_000_000_000u64 + u64::from(id)});
        format!("event: message\nid: {id}\ndata: {data}\n\n")
    };
    let evil_name = "<img src=x onerror=\"window.pwned=1\">Mo";
    // The first connection: a keep-alive, the phase, two messages (one split inside its
    // CRLF), ready, and the end of the connection.
    let first: Vec<String> = vec![
        ": hello\r\n\r\n".into(),
        "event: phase\r\ndata: {\"phase\":\"live\"}\r\n\r\n".into(),
        message(1, "k-host", "Host", "host", "before the reset").replace('\n', "\r\n").trim_end().to_owned() + "\r",
        "\n\r\n".into(),
        message(2, "k-me", "Fan", "web", "line one"),
        "event: ready\ndata: {}\n\n".into(),
    ];
    // The reconnection: the last id is too old, so a reset and the backlog, ready, then
    // live events; the connection stays open.
    let second: Vec<String> = vec![
        "event: phase\ndata: {\"phase\":\"live\"}\n\n".into(),
        "event: reset\ndata: {}\n\n".into(),
        message(3, "k-mod", evil_name, "moderator", "first"),
        "event: ready\ndata: {}\n\n".into(),
        format!(
            "event: edit\nid: 4\ndata: {}\n\n",
            json!({"event_id": "$3", "body": "<script>window.pwned=2</script>", "sender": {"key": "k-mod", "role": "moderator"}})
        ),
        message(5, "k-me", "Fan", "web", "mine"),
        message(6, "k-fan", "Someone", "fan", "gone soon"),
        format!(
            "event: redaction\nid: 7\ndata: {}\n\n",
            json!({"event_id": "$6", "sender": {"key": "k-fan", "role": "fan"}})
        ),
        message(8, "k-host", "Hostess", "host", "live one"),
        // Another member's edit and redaction of messages not theirs: shown as nothing.
        format!(
            "event: edit\nid: 9\ndata: {}\n\n",
            json!({"event_id": "$8", "body": "forged", "sender": {"key": "k-fan", "role": "fan"}})
        ),
        format!(
            "event: redaction\nid: 10\ndata: {}\n\n",
            json!({"event_id": "$5", "sender": {"key": "k-fan", "role": "fan"}})
        ),
        message(11, "k-fan", "Someone", "fan", "after the forgeries"),
    ];

    let seen = Arc::new(Mutex::new(MockChat::default()));
    let api = Router::new()
        .route(
            "/chat/{id}",
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CONTENT_SECURITY_POLICY, policy.as_str()),
                    ],
                    html.clone(),
                )
                    .into_response()
            }),
        )
        .route(
            "/chat/assets/chat.js",
            get(move || async move { ([(header::CONTENT_TYPE, "text/javascript")], script) }),
        )
        .route("/chat/assets/chat.css", get(move || async move { ([(header::CONTENT_TYPE, "text/css")], style) }))
        .route(
            "/chat/v1/session",
            post(|State(seen): State<Arc<Mutex<MockChat>>>, Json(request): Json<Value>| async move {
                seen.lock().unwrap().sessions.push(request);
                Json(json!({"session": "s-1", "expires_at": "2099-01-01T00:00:00Z",
                    "me": {"name": "Fan", "role": "web", "key": "k-me", "max_length": 20}}))
            }),
        )
        .route(
            "/chat/v1/stream",
            get(move |State(seen): State<Arc<Mutex<MockChat>>>, headers: HeaderMap| async move {
                if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some("Bearer s-1") {
                    return (
                        StatusCode::UNAUTHORIZED,
                        Json(json!({"errcode": "M_UNKNOWN_TOKEN", "error": "no session"})),
                    )
                        .into_response();
                }
                let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
                let connection = {
                    let mut seen = seen.lock().unwrap();
                    seen.last_event_ids.push(last);
                    seen.last_event_ids.len()
                };
                let chunks = if connection == 1 { first.clone() } else { second.clone() };
                let events = stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
                let body = if connection == 1 {
                    Body::from_stream(events)
                } else {
                    Body::from_stream(events.chain(stream::pending()))
                };
                ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-store")], body)
                    .into_response()
            }),
        )
        .route(
            "/chat/v1/messages",
            post(|State(seen): State<Arc<Mutex<MockChat>>>, Json(request): Json<Value>| async move {
                let mut seen = seen.lock().unwrap();
                seen.txn_ids.push(request["txn_id"].as_str().unwrap_or_default().to_owned());
                if seen.txn_ids.len() == 1 {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        Json(json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow mode", "retry_after_ms": 2000})),
                    )
                } else if seen.txn_ids.len() == 2 {
                    // The room's doors are busy (docs/web-chat.md, FOYER_ROOM_BUSY).
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        Json(json!({"errcode": "FOYER_ROOM_BUSY", "error": "room busy", "retry_after_ms": 2000})),
                    )
                } else {
                    (StatusCode::OK, Json(json!({"event_id": "$9"})))
                }
            }),
        )
        .with_state(seen.clone());
    let watch = format!(
        "<!doctype html><title>Watch</title><iframe src=\"{mock_base}/chat/show-1#token=good-token\" width=320 height=560></iframe>"
    );
    let host_app = Router::new().route("/", get(move || async move { axum::response::Html(watch) }));
    let servers =
        [tokio::spawn(axum::serve(mock, api).into_future()), tokio::spawn(axum::serve(host, host_app).into_future())];

    let browser = Browser::start_blocking_third_party_cookies().await;
    browser.goto(&format!("{host_base}/")).await;
    assert!(browser.enter_frame(0).await, "the chat's frame");

    // Reading: the second connection's events, all shown.
    eventually(Duration::from_secs(20), "the live message after the reconnection", || async {
        (browser.execute("return Boolean(document.querySelector('[data-event-id=\"$11\"]'));").await == true)
            .then_some(())
    })
    .await;
    assert_eq!(browser.execute("return location.href;").await, format!("{mock_base}/chat/show-1"));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.sessions, vec![json!({"token": "good-token"})]);
        assert_eq!(
            seen.last_event_ids,
            vec![None, Some("2".to_owned())],
            "the reconnection names the last complete event"
        );
    }
    let shown = browser
        .execute(
            "return Array.from(document.querySelectorAll('#messages > li'), (li) => ({
                id: li.dataset.eventId,
                name: li.querySelector('.name').textContent,
                badge: li.querySelector('.badge') ? li.querySelector('.badge').textContent : null,
                body: li.querySelector('.body').textContent,
                edited: Boolean(li.querySelector('.edited')),
                deleted: li.classList.contains('deleted'),
                actions: Array.from(li.querySelectorAll('.actions button'), (b) => b.textContent),
            }));",
        )
        .await;
    let expected = json!([
        {"id": "$3", "name": evil_name, "badge": "Moderator", "body": "<script>window.pwned=2</script>", "edited": true, "deleted": false, "actions": ["Report"]},
        {"id": "$5", "name": "Fan", "badge": "Web", "body": "mine", "edited": false, "deleted": false, "actions": ["Delete"]},
        {"id": "$6", "name": "Someone", "badge": null, "body": "Message deleted.", "edited": false, "deleted": true, "actions": []},
        {"id": "$8", "name": "Hostess", "badge": "Host", "body": "live one", "edited": false, "deleted": false, "actions": ["Report"]},
        {"id": "$11", "name": "Someone", "badge": null, "body": "after the forgeries", "edited": false, "deleted": false, "actions": ["Report"]},
    ]);
    assert_eq!(shown, expected, "the reset dropped what came before it; the rest shows as text");
    let inert = browser
        .execute("return [typeof window.pwned, document.querySelectorAll('#messages img, #messages script').length];")
        .await;
    assert_eq!(inert, json!(["undefined", 0]), "markup in names and bodies stays text");
    assert_eq!(browser.text("#phase").await.as_deref(), Some("Live"));
    assert_eq!(browser.text("#me").await.as_deref(), Some("You are writing as Fan."));
    let announced = eventually(Duration::from_secs(10), "the live region to announce the live message", || async {
        let text = browser.execute("return document.getElementById('announcer').textContent;").await;
        text.as_str().filter(|t| t.contains("Hostess: live one")).map(str::to_owned)
    })
    .await;
    assert!(!announced.contains("first"), "the backlog is not announced: {announced}");

    // Writing: the length limit of the session answer, then a slow-mode refusal with its
    // countdown, and the retry with the same txn_id.
    browser.type_into("#body", &"x".repeat(25)).await;
    assert_eq!(browser.text("#counter").await.as_deref(), Some("5 characters over the limit of 20."));
    assert_eq!(browser.execute("return document.getElementById('send').disabled;").await, true);
    browser.clear("#body").await;
    browser.type_into("#body", "hello").await;
    assert_eq!(browser.text("#counter").await.as_deref(), Some("5 / 20"));
    browser.click("#send").await;
    let refusal = eventually(Duration::from_secs(10), "the slow-mode countdown", || async {
        browser.text("#refusal").await.filter(|t| t.starts_with("Slow mode: you can send again in"))
    })
    .await;
    assert!(refusal.ends_with(" s."), "{refusal}");
    assert_eq!(browser.execute("return document.getElementById('send').disabled;").await, true);
    eventually(Duration::from_secs(10), "the countdown to end", || async {
        (browser.text("#refusal").await.as_deref() == Some("You can send again.")).then_some(())
    })
    .await;
    browser.click("#send").await;
    // Then the doors are busy: the fan is told so, in words of their own, and counted down.
    eventually(Duration::from_secs(10), "the room-busy countdown", || async {
        browser.text("#refusal").await.filter(|t| t.starts_with("Many fans are coming in: you can send again in"))
    })
    .await;
    eventually(Duration::from_secs(10), "the countdown to end", || async {
        (browser.text("#refusal").await.as_deref() == Some("You can send again.")).then_some(())
    })
    .await;
    // The fan sends again with the keyboard alone: Tab to the message box, Enter.
    tab_into_frame(&browser, "body").await;
    browser.press("\u{E007}").await;
    assert!(browser.enter_frame(0).await, "the chat's frame");
    eventually(Duration::from_secs(10), "the box to empty once the message is accepted", || async {
        (browser.execute("return document.getElementById('body').value;").await == "").then_some(())
    })
    .await;
    let txn_ids = std::mem::take(&mut seen.lock().unwrap().txn_ids);
    assert_eq!(txn_ids.len(), 3, "{txn_ids:?}");
    assert!(txn_ids.iter().all(|t| *t == txn_ids[0]), "each retry reuses the message's txn_id: {txn_ids:?}");
    assert_eq!(txn_ids[0].len(), 32, "{txn_ids:?}");

    browser.leave_frames().await;
    let shot = repo_root().join("target/test-artifacts/webchat-mock.png");
    browser.screenshot(&shot).await;
    println!("screenshot: {}", shot.display());
    drop(browser);
    for server in servers {
        server.abort();
    }
}
