//! A real browser for tests of the web UI: Debian's headless Chromium, driven through Debian's `chromedriver` with
//! a small synchronous W3C WebDriver client. [`Browser::start`] runs `chromedriver` on a loopback port, opens a
//! session with a fresh profile in a temporary directory, and the drop ends the session and kills whatever
//! `chromedriver` and Chromium left running, so nothing the test starts outlives it.
//!
//! Like the rest of testkit it panics on failure, with a message naming the URL, selector or command and the
//! WebDriver error (its `error` code and `message`), because a failure here is a failed test.
//!
//! It is a module of its own because every crate that tests a web page needs the same browser, and a second copy
//! would drift from the first. Only loopback is ever browsed: Chromium is started without a proxy and with its
//! background networking (updates, sync, metrics) off.

use std::fmt;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// Debian's Chromium (package chromium), a launcher script that runs `/usr/lib/chromium/chromium`.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver (package chromium-driver), of the same version as [`CHROMIUM`].
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key under which the W3C protocol carries an element's id (WebDriver, "Elements": the web element identifier).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long [`Browser::find`] waits for an element, unless [`Browser::set_find_timeout`] says otherwise.
const FIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the waits look again.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long `chromedriver` has to answer `/status` as ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one command may take; a page load is bounded by the session's own, shorter, timeout.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The session's page load and script timeouts, in milliseconds.
const PAGE_LOAD_TIMEOUT_MS: u64 = 30_000;
/// How long the drop waits for Chromium's processes to go after killing them.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response read from `chromedriver` (a screenshot or a page source can be several MiB).
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;
/// How many loopback ports are tried, since a port found free may be taken before `chromedriver` binds it.
const PORT_ATTEMPTS: usize = 5;

/// Chromium's command line. `--no-sandbox` because tests may run as root, where Chromium's sandbox refuses to
/// start; the rest keep it headless and quiet, and keep it from reaching anything but the pages it is sent to.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--no-first-run",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--metrics-recording-only",
    "--no-proxy-server",
];

/// Whether Debian's Chromium and ChromeDriver are installed, so that a test can fail saying what to install
/// rather than with a failed spawn. A test must not skip when this is false.
pub fn available() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// A headless Chromium with a WebDriver session; the session ends and every process of it is gone on drop.
#[derive(Debug)]
pub struct Browser {
    driver: Driver,
    /// The session's id; `None` only while the session is being created.
    session: Option<String>,
    /// `chromedriver`, our child, so that it is reaped and never outlives the test.
    child: Option<Child>,
    /// The profile, Chromium's `HOME` and `chromedriver`'s log; every process of this browser names it on its
    /// command line, which is how the drop finds them.
    dir: tempfile::TempDir,
    find_timeout: Duration,
}

/// An element of the page, found by a CSS selector; valid until the page replaces it.
#[derive(Debug, Clone)]
pub struct Element<'a> {
    browser: &'a Browser,
    /// The WebDriver element reference.
    id: String,
    /// The selector it was found by, for messages.
    css: String,
}

impl Browser {
    /// Starts `chromedriver` and Chromium and opens a session; panics with what went wrong (it is a test's
    /// fixture), including `chromedriver`'s log.
    pub fn start() -> Browser {
        assert!(
            available(),
            "{CHROMIUM} or {CHROMEDRIVER} is missing: scripts/deps.sh installs Debian's chromium and chromium-driver"
        );
        let dir = tempfile::Builder::new()
            .prefix("edge-webdriver-")
            .tempdir()
            .unwrap_or_else(|e| panic!("webdriver: create a temporary directory for the browser: {e}"));
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap_or_else(|e| panic!("webdriver: create {}: {e}", home.display()));
        let mut browser =
            Browser { driver: Driver::new(0), session: None, child: None, dir, find_timeout: FIND_TIMEOUT };
        browser.start_driver();
        browser.create_session();
        browser
    }

    /// Runs `chromedriver` on a free loopback port and waits until it is ready.
    fn start_driver(&mut self) {
        let home = self.dir.path().join("home");
        let log_path = self.log_path();
        for _ in 0..PORT_ATTEMPTS {
            let port = crate::http_server::closed_port();
            let log = std::fs::File::create(&log_path)
                .unwrap_or_else(|e| panic!("webdriver: create {}: {e}", log_path.display()));
            let err = log.try_clone().unwrap_or_else(|e| panic!("webdriver: clone {}: {e}", log_path.display()));
            // Chromium inherits this environment: with HOME and the XDG directories in our directory, its
            // crash-report handler (which leaves Chromium's process group) names our directory too, and nothing is
            // written to the real home.
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join(".config"))
                .env("XDG_CACHE_HOME", home.join(".cache"))
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("webdriver: run {CHROMEDRIVER}: {e}"));
            self.child = Some(child);
            self.driver = Driver::new(port);
            if self.wait_driver_ready() {
                return;
            }
        }
        panic!("webdriver: {CHROMEDRIVER} did not start on any of {PORT_ATTEMPTS} ports; its log:\n{}", self.log());
    }

    /// Polls `/status` until `chromedriver` says it is ready (true) or has exited (false, so another port is
    /// tried); panics if it does neither in [`READY_TIMEOUT`].
    fn wait_driver_ready(&mut self) -> bool {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("chromedriver was spawned");
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return false;
            }
            if let Ok(status) = self.driver.call(Method::Get, "/status", None) {
                if status["ready"] == Value::Bool(true) {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "webdriver: {CHROMEDRIVER} was not ready in {READY_TIMEOUT:?} on {}; its log:\n{}",
                    self.driver.base,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens the session, which starts Chromium.
    fn create_session(&mut self) {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", self.dir.path().join("profile").display()));
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "timeouts": {
                        "implicit": 0,
                        "pageLoad": PAGE_LOAD_TIMEOUT_MS,
                        "script": PAGE_LOAD_TIMEOUT_MS,
                    },
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                }
            }
        });
        let created = self.driver.call(Method::Post, "/session", Some(&capabilities)).unwrap_or_else(|e| {
            panic!("webdriver: create a session (start {CHROMIUM}): {e}; chromedriver's log:\n{}", self.log())
        });
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("webdriver: create a session: the answer has no sessionId: {created}"));
        self.session = Some(id.to_owned());
    }

    /// Sets how long [`Browser::find`] and [`Browser::text`] wait for an element to appear.
    pub fn set_find_timeout(&mut self, timeout: Duration) {
        self.find_timeout = timeout;
    }

    /// Navigates to `url` and waits for the page to load.
    pub fn goto(&self, url: &str) {
        self.command(Method::Post, "/url", Some(&json!({ "url": url })))
            .unwrap_or_else(|e| panic!("webdriver: go to {url}: {e}"));
    }

    /// The URL of the page shown, after any redirects.
    pub fn current_url(&self) -> String {
        let url = self.command(Method::Get, "/url", None).unwrap_or_else(|e| panic!("webdriver: current url: {e}"));
        expect_string(url, "current url")
    }

    /// The page's title.
    pub fn title(&self) -> String {
        let title = self.command(Method::Get, "/title", None).unwrap_or_else(|e| panic!("webdriver: title: {e}"));
        expect_string(title, "title")
    }

    /// The first element matching the CSS selector `css`, waiting for it to appear for the find timeout (10 s
    /// unless [`Browser::set_find_timeout`] changed it).
    pub fn find(&self, css: &str) -> Element<'_> {
        let deadline = Instant::now() + self.find_timeout;
        loop {
            match self.find_element(css) {
                Ok(element) => return element,
                Err(e) if e.is("no such element") && Instant::now() < deadline => std::thread::sleep(POLL_INTERVAL),
                Err(e) => panic!(
                    "webdriver: find `{css}` on {} (waited up to {:?}): {e}",
                    self.url_for_message(),
                    self.find_timeout
                ),
            }
        }
    }

    /// The first element matching `css` now, or `None`; it does not wait.
    pub fn try_find(&self, css: &str) -> Option<Element<'_>> {
        match self.find_element(css) {
            Ok(element) => Some(element),
            Err(e) if e.is("no such element") => None,
            Err(e) => panic!("webdriver: find `{css}`: {e}"),
        }
    }

    /// Every element matching `css` now, in document order; it does not wait, so it may be empty.
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let found = self
            .command(Method::Post, "/elements", Some(&css_locator(css)))
            .unwrap_or_else(|e| panic!("webdriver: find all `{css}`: {e}"));
        self.elements(found, css)
    }

    /// The visible text of the first element matching `css`, waiting for it as [`Browser::find`] does. An element
    /// the page replaces between the find and the read is found again.
    pub fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + self.find_timeout;
        loop {
            let element = self.find(css);
            match element.get("/text") {
                Ok(text) => return expect_string(text, &format!("text of `{css}`")),
                Err(e) if e.is("stale element reference") && Instant::now() < deadline => {}
                Err(e) => panic!("webdriver: text of `{css}`: {e}"),
            }
        }
    }

    /// Polls `ready` every 200 ms until it returns true; panics naming `description` if it has not after
    /// `timeout`.
    pub fn wait_for(&self, description: &str, timeout: Duration, mut ready: impl FnMut(&Browser) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "webdriver: waited {timeout:?} for {description} on {}",
                self.url_for_message()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Writes a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let png =
            self.command(Method::Get, "/screenshot", None).unwrap_or_else(|e| panic!("webdriver: screenshot: {e}"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(expect_string(png, "screenshot"))
            .unwrap_or_else(|e| panic!("webdriver: screenshot: the answer is not base64: {e}"));
        std::fs::write(path, png).unwrap_or_else(|e| panic!("webdriver: write screenshot {}: {e}", path.display()));
    }

    /// The page's HTML as the browser has it now (after scripts changed it).
    pub fn page_source(&self) -> String {
        let source =
            self.command(Method::Get, "/source", None).unwrap_or_else(|e| panic!("webdriver: page source: {e}"));
        expect_string(source, "page source")
    }

    /// The cookies visible to the page shown, as WebDriver reports them: objects with `name`, `value`, `path`,
    /// `domain`, `secure`, `httpOnly`, `sameSite` (`"Strict"`, `"Lax"` or `"None"`) and, unless a session cookie,
    /// `expiry`.
    pub fn cookies(&self) -> Vec<Value> {
        match self.command(Method::Get, "/cookie", None).unwrap_or_else(|e| panic!("webdriver: cookies: {e}")) {
            Value::Array(cookies) => cookies,
            other => panic!("webdriver: cookies: expected an array, got {other}"),
        }
    }

    /// Runs `script` as the body of a function called with `args` (`arguments[0]`, ...) in the page, and returns
    /// what it returns; an element comes back as an object with the W3C element key.
    pub fn execute(&self, script: &str, args: &[Value]) -> Value {
        self.command(Method::Post, "/execute/sync", Some(&json!({ "script": script, "args": args })))
            .unwrap_or_else(|e| panic!("webdriver: execute script `{script}`: {e}"))
    }

    /// The current URL for a failure's message; a second failure here must not hide the first.
    fn url_for_message(&self) -> String {
        match self.command(Method::Get, "/url", None) {
            Ok(Value::String(url)) => url,
            Ok(other) => format!("(the current url is {other})"),
            Err(e) => format!("(no current url: {e})"),
        }
    }

    /// Finds the first element matching `css` once.
    fn find_element(&self, css: &str) -> Result<Element<'_>, CommandError> {
        let found = self.command(Method::Post, "/element", Some(&css_locator(css)))?;
        Ok(self.element(&found, css))
    }

    /// The element a find answered with.
    fn element(&self, found: &Value, css: &str) -> Element<'_> {
        let id = found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("webdriver: find `{css}`: the answer is not an element: {found}"));
        Element { browser: self, id: id.to_owned(), css: css.to_owned() }
    }

    /// The elements a find-all answered with.
    fn elements(&self, found: Value, css: &str) -> Vec<Element<'_>> {
        match found {
            Value::Array(found) => found.iter().map(|f| self.element(f, css)).collect(),
            other => panic!("webdriver: find all `{css}`: expected an array, got {other}"),
        }
    }

    /// Sends a command of this session; `path` is relative to the session, such as `/url`.
    fn command(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CommandError> {
        let session = self.session.as_deref().expect("the session is open while the browser is in use");
        self.driver.call(method, &format!("/session/{session}{path}"), body)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("chromedriver.log")
    }

    /// `chromedriver`'s log so far (with Chromium's stderr), for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session quits Chromium; chromedriver is then killed, and whatever either left behind (a
        // crash-report handler, a helper whose parent went first) is found by our directory and killed too.
        if let Some(session) = self.session.take() {
            let _ = self.driver.call(Method::Delete, &format!("/session/{session}"), None);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            let left = processes_naming(self.dir.path());
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "webdriver: processes {left:?} of the browser in {} survive SIGKILL",
                    self.dir.path().display()
                );
                break;
            }
            let _ =
                Command::new("kill").arg("-KILL").args(left.iter().map(u32::to_string)).stderr(Stdio::null()).status();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Element<'_> {
    /// Clicks the element (scrolled into view first); panics if something covers it or it is disabled.
    pub fn click(&self) {
        self.post("/click", &json!({})).unwrap_or_else(|e| panic!("webdriver: click `{}`: {e}", self.css));
    }

    /// Types `text` into the element, after what it holds.
    pub fn send_keys(&self, text: &str) {
        self.post("/value", &json!({ "text": text }))
            .unwrap_or_else(|e| panic!("webdriver: type {text:?} into `{}`: {e}", self.css));
    }

    /// Empties an input or text area.
    pub fn clear(&self) {
        self.post("/clear", &json!({})).unwrap_or_else(|e| panic!("webdriver: clear `{}`: {e}", self.css));
    }

    /// The element's visible text.
    pub fn text(&self) -> String {
        let text = self.get("/text").unwrap_or_else(|e| panic!("webdriver: text of `{}`: {e}", self.css));
        expect_string(text, &format!("text of `{}`", self.css))
    }

    /// The attribute `name` as written in the HTML (or set by a script), or `None` if the element has none.
    pub fn attribute(&self, name: &str) -> Option<String> {
        match self.get(&format!("/attribute/{name}")) {
            Ok(Value::Null) => None,
            Ok(Value::String(value)) => Some(value),
            Ok(other) => panic!("webdriver: attribute {name} of `{}`: expected a string, got {other}", self.css),
            Err(e) => panic!("webdriver: attribute {name} of `{}`: {e}", self.css),
        }
    }

    /// Selects the option of this `<select>` whose visible text is `visible_text`, by clicking it.
    pub fn select_option(&self, visible_text: &str) {
        let found = self
            .post("/elements", &css_locator("option"))
            .unwrap_or_else(|e| panic!("webdriver: options of `{}`: {e}", self.css));
        let css = format!("{} option", self.css);
        let options = self.browser.elements(found, &css);
        let texts: Vec<String> = options.iter().map(Element::text).collect();
        let idx = texts
            .iter()
            .position(|t| t == visible_text)
            .unwrap_or_else(|| panic!("webdriver: `{}` has no option {visible_text:?}; it has {texts:?}", self.css));
        options[idx].click();
    }

    fn get(&self, path: &str) -> Result<Value, CommandError> {
        self.browser.command(Method::Get, &format!("/element/{}{path}", self.id), None)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, CommandError> {
        self.browser.command(Method::Post, &format!("/element/{}{path}", self.id), Some(body))
    }
}

/// The HTTP methods WebDriver uses.
#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    Post,
    Delete,
}

/// The HTTP client of one `chromedriver`.
#[derive(Debug)]
struct Driver {
    agent: ureq::Agent,
    /// `http://127.0.0.1:<port>`.
    base: String,
}

impl Driver {
    fn new(port: u16) -> Driver {
        let agent = ureq::Agent::config_builder()
            // WebDriver answers its errors as 4xx and 5xx with a JSON body, which `call` reads.
            .http_status_as_error(false)
            // chromedriver is on loopback; a proxy from the environment must not be asked for it.
            .proxy(None)
            .timeout_global(Some(COMMAND_TIMEOUT))
            .build()
            .into();
        Driver { agent, base: format!("http://127.0.0.1:{port}") }
    }

    /// Sends a command and returns the `value` of its answer, or the WebDriver error it answered with.
    fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CommandError> {
        let url = format!("{}{path}", self.base);
        let sent = match method {
            Method::Get => self.agent.get(&url).call(),
            Method::Delete => self.agent.delete(&url).call(),
            Method::Post => {
                // W3C wants a JSON object even for commands without parameters.
                let body = serde_json::to_vec(body.unwrap_or(&json!({}))).expect("a JSON value serializes");
                self.agent.post(&url).header("content-type", "application/json; charset=utf-8").send(body)
            }
        };
        let response = sent.map_err(|source| CommandError::Transport { url: url.clone(), source })?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .into_with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|source| CommandError::ReadAnswer { url: url.clone(), source })?;
        let answer: Value = serde_json::from_slice(&bytes).map_err(|_| CommandError::ParseAnswer {
            url: url.clone(),
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })?;
        let Value::Object(mut answer) = answer else {
            return Err(CommandError::ParseAnswer { url, status, body: String::from_utf8_lossy(&bytes).into_owned() });
        };
        let value = answer.remove("value").unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let field = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
        Err(CommandError::WebDriver { url, status, error: field("error"), message: field("message") })
    }
}

/// Why a WebDriver command failed.
#[derive(Debug)]
enum CommandError {
    /// chromedriver could not be reached, or did not answer in time.
    Transport { url: String, source: ureq::Error },
    /// The answer's body could not be read.
    ReadAnswer { url: String, source: ureq::Error },
    /// The answer is not a WebDriver JSON object.
    ParseAnswer { url: String, status: u16, body: String },
    /// chromedriver answered with a WebDriver error, such as `no such element`.
    WebDriver { url: String, status: u16, error: String, message: String },
}

impl CommandError {
    /// Whether this is the WebDriver error `code`, such as `no such element`.
    fn is(&self, code: &str) -> bool {
        matches!(self, CommandError::WebDriver { error, .. } if error == code)
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Transport { url, source } => write!(f, "request {url}: {source}"),
            CommandError::ReadAnswer { url, source } => write!(f, "read the answer of {url}: {source}"),
            CommandError::ParseAnswer { url, status, body } => {
                write!(f, "{url} answered {status} with something other than a WebDriver JSON object: {body}")
            }
            CommandError::WebDriver { url, status, error, message } => {
                write!(f, "{error}: {message} (HTTP {status} from {url})")
            }
        }
    }
}

/// A WebDriver locator for a CSS selector.
fn css_locator(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

/// The string `value` should be; panics naming `what` otherwise.
fn expect_string(value: Value, what: &str) -> String {
    match value {
        Value::String(s) => s,
        other => panic!("webdriver: {what}: expected a string, got {other}"),
    }
}

/// The processes, other than zombies, whose command line names `dir`. Every process of a browser does: Chromium's
/// own carry `--user-data-dir`, and the crash-report handlers their database under the `HOME` in `dir`.
fn processes_naming(dir: &Path) -> Vec<u32> {
    let needle = dir.as_os_str().as_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let proc = Path::new("/proc").join(pid.to_string());
            let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
            if !cmdline.windows(needle.len()).any(|w| w == needle) {
                return false;
            }
            // The state follows the command name, which is in parentheses and may itself hold any character.
            let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, None | Some('Z') | Some('X'))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>probe</title></head>
<body>
<form onsubmit="return false">
  <input id="name" name="name" value="nobody">
  <select id="slot"><option>A</option><option>B</option></select>
  <button id="go" type="button"
    onclick="document.getElementById('out').textContent = 'Hello, ' + document.getElementById('name').value
      + ' on ' + document.getElementById('slot').value">Go</button>
</form>
<p id="out" data-kind="greeting">waiting</p>
</body></html>
"#;

    /// A page server on loopback for the test; it stops when dropped.
    struct Site {
        port: u16,
        stop: Arc<AtomicBool>,
        accept: Option<std::thread::JoinHandle<()>>,
    }

    impl Site {
        fn start() -> Site {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            let port = listener.local_addr().expect("local address").port();
            let stop = Arc::new(AtomicBool::new(false));
            let stopping = Arc::clone(&stop);
            let accept = std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    // A thread per connection: Chromium may open a connection it sends nothing on.
                    if let Ok(conn) = conn {
                        std::thread::spawn(move || serve(conn));
                    }
                }
            });
            Site { port, stop, accept: Some(accept) }
        }

        fn url(&self, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.port)
        }
    }

    impl Drop for Site {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            if let Some(accept) = self.accept.take() {
                let _ = accept.join();
            }
        }
    }

    /// Answers one request: the page at `/`, 404 elsewhere; one request per connection.
    fn serve(conn: TcpStream) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(&conn);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        let response = if request_line.starts_with("GET / ") {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
                 Set-Cookie: s=1; HttpOnly; SameSite=Strict; Path=/\r\nConnection: close\r\n\r\n{PAGE}",
                PAGE.len()
            )
        } else {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
        };
        let _ = (&conn).write_all(response.as_bytes());
    }

    /// The browser loads a page from loopback, fills the form, clicks, sees the script's change, takes a PNG
    /// screenshot, reports the cookie's flags, and leaves no process behind when dropped.
    #[test]
    fn drives_a_page_and_cleans_up() {
        assert!(available(), "scripts/deps.sh installs Debian's chromium and chromium-driver");
        let site = Site::start();
        let browser = Browser::start();
        browser.goto(&site.url("/"));
        assert_eq!(browser.title(), "probe");
        assert_eq!(browser.current_url(), site.url("/"));
        assert!(browser.try_find("#missing").is_none());
        assert_eq!(browser.find_all("option").len(), 2);
        assert_eq!(browser.find("#out").attribute("data-kind").as_deref(), Some("greeting"));
        assert_eq!(browser.find("#out").attribute("data-none"), None);

        let name = browser.find("#name");
        name.clear();
        name.send_keys("edge");
        browser.find("#slot").select_option("B");
        browser.find("#go").click();
        browser.wait_for("the greeting", Duration::from_secs(10), |b| b.text("#out") == "Hello, edge on B");
        assert!(browser.page_source().contains("Hello, edge on B"));
        assert_eq!(browser.execute("return arguments[0] + 1;", &[json!(41)]), json!(42));

        let shot = tempfile::NamedTempFile::new().expect("a temporary file for the screenshot");
        browser.screenshot(shot.path());
        let png = std::fs::read(shot.path()).expect("read the screenshot");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {:?}", &png[..png.len().min(16)]);

        let cookies = browser.cookies();
        let cookie = cookies.iter().find(|c| c["name"] == "s").unwrap_or_else(|| panic!("no cookie s in {cookies:?}"));
        assert_eq!(cookie["value"], "1");
        assert_eq!(cookie["httpOnly"], true);
        assert_eq!(cookie["sameSite"], "Strict");

        let dir = browser.dir.path().to_owned();
        let driver_pid = browser.child.as_ref().expect("chromedriver runs").id();
        assert!(!processes_naming(&dir).is_empty(), "Chromium's processes are not found by {}", dir.display());
        drop(browser);
        assert_eq!(processes_naming(&dir), Vec::<u32>::new(), "processes of the browser are left behind");
        assert!(!dir.exists(), "{} is left behind", dir.display());
        assert!(!Path::new("/proc").join(driver_pid.to_string()).exists(), "chromedriver {driver_pid} still runs");
    }
}
