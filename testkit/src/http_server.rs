//! A real HTTP/1.1 server on loopback for tests and benchmarks of the HTTP source, with faults injected on demand.
//!
//! It serves named in-memory files with Range, HEAD, ETag and If-Range, keeps connections alive, and between
//! requests can be told to drop a connection after N body bytes, answer 500, stall after the headers, replace a
//! file (also in the middle of a response), or ignore Range. It can also behave as a hostile server would: redirect
//! a path anywhere, trickle bodies one byte at a time, or close every body after a few bytes. Like a real server, it
//! answers a connection that does not start with an HTTP request (a TLS handshake, say) with 400 and closes it.
//! It logs every request. It uses std only.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long an idle keep-alive connection, or a client that stops sending, keeps its thread.
const IDLE_LIMIT: Duration = Duration::from_secs(30);
/// How long a stalled response waits for the client to give up before the server closes it.
const STALL_LIMIT: Duration = Duration::from_secs(10);
/// How long a dropped connection waits for the client to close its side, so the close is a FIN and not a reset.
const LINGER_LIMIT: Duration = Duration::from_secs(5);
/// The size of each body write.
const WRITE_CHUNK: usize = 16 * 1024;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The connection it came on, numbered from 1 in accept order.
    pub connection: u64,
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The request target, such as `/bundle`.
    pub path: String,
    /// The Range header, if any.
    pub range: Option<String>,
    /// The If-Range header, if any.
    pub if_range: Option<String>,
    /// The status answered (or that would have been, had the headers not been held back by a stall).
    pub status: u16,
    /// Body bytes handed to the socket (counted just before each write, so a client never sees more).
    pub body_bytes: u64,
}

/// A file as served.
struct File {
    content: Arc<Vec<u8>>,
    etag: String,
}

/// A redirect answered for a path once the server has answered a number of requests.
struct Redirect {
    path: String,
    after: usize,
    status: u16,
    location: String,
}

/// A replacement planted in the next response for a path.
struct Replace {
    path: String,
    at: u64,
    content: Vec<u8>,
}

/// Everything the connection threads share.
#[derive(Default)]
struct State {
    files: HashMap<String, File>,
    /// Bumped on every put, so a replaced file never gets an earlier ETag.
    generation: u64,
    no_etags: bool,
    ignore_range: bool,
    /// Body bytes after which the next responses drop their connection, one per response.
    drops: VecDeque<u64>,
    fail_next: u32,
    stall_next: u32,
    stall_headers_next: u32,
    replace: Option<Replace>,
    redirects: Vec<Redirect>,
    /// After how many answered requests bodies are sent one byte per interval, and the interval.
    trickle: Option<(usize, Duration)>,
    /// After how many answered requests every body is cut, and after how many of its bytes.
    cut_bodies: Option<(usize, u64)>,
    log: Vec<Request>,
    /// Open connections, so that `Drop` can shut them down and unblock their threads.
    open: HashMap<u64, TcpStream>,
    n_connections: u64,
}

impl State {
    fn put(&mut self, path: &str, content: Vec<u8>) {
        self.generation += 1;
        let etag = format!("\"g{}\"", self.generation);
        self.files.insert(path.to_owned(), File { content: Arc::new(content), etag });
    }
}

/// The server; it stops and joins its threads when dropped.
pub struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Locks the state; a panicked connection thread has already failed its test, so its poison is ignored.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Server {
    /// Starts a server on 127.0.0.1 with a free port.
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address of the listener");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let (state, stop, workers) = (state.clone(), stop.clone(), workers.clone());
            thread::spawn(move || accept_loop(listener, state, stop, workers))
        };
        Server { addr, state, stop, accept: Some(accept), workers }
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Serves `content` at `path`, replacing what was there under a new ETag.
    pub fn put(&self, path: &str, content: Vec<u8>) {
        lock(&self.state).put(path, content);
    }

    /// Whether responses carry an ETag (on by default). Without one, If-Range never matches.
    pub fn set_etags(&self, on: bool) {
        lock(&self.state).no_etags = !on;
    }

    /// Whether the server ignores Range and always answers 200 with the whole file.
    pub fn set_ignore_range(&self, on: bool) {
        lock(&self.state).ignore_range = on;
    }

    /// Drops the connection of the next response with a body after `after` body bytes; each call queues one more
    /// response. A response shorter than its drop point completes and still uses it up.
    pub fn drop_after(&self, after: u64) {
        lock(&self.state).drops.push_back(after);
    }

    /// Plants `count` drop points at distinct random offsets in `1..size` of a download of `size` bytes that
    /// resumes each time at the next byte, and returns those offsets in order.
    pub fn plant_drops(&self, size: u64, count: usize, seed: u64) -> Vec<u64> {
        assert!(size > count as u64, "{count} distinct drop points need more than {size} bytes");
        let mut rng = SplitMix64(seed);
        let mut offsets = Vec::with_capacity(count);
        while offsets.len() < count {
            let offset = 1 + rng.next_u64() % (size - 1);
            if !offsets.contains(&offset) {
                offsets.push(offset);
            }
        }
        offsets.sort_unstable();
        let mut state = lock(&self.state);
        let mut previous = 0;
        for &offset in &offsets {
            state.drops.push_back(offset - previous);
            previous = offset;
        }
        offsets
    }

    /// Answers the next `count` requests with 500.
    pub fn fail_next(&self, count: u32) {
        lock(&self.state).fail_next = count;
    }

    /// Sends only the headers of the next `count` responses with a body, then nothing until the client closes.
    pub fn stall_next(&self, count: u32) {
        lock(&self.state).stall_next = count;
    }

    /// Sends nothing at all in answer to the next `count` requests until the client closes.
    pub fn stall_headers_next(&self, count: u32) {
        lock(&self.state).stall_headers_next = count;
    }

    /// Replaces `path` with `content` once the next response for it longer than `at` has sent `at` body bytes; that response
    /// carries on with the old bytes, as a file replaced by rename under an open file would.
    pub fn replace_at(&self, path: &str, at: u64, content: Vec<u8>) {
        lock(&self.state).replace = Some(Replace { path: path.to_owned(), at, content });
    }

    /// Answers requests for `path` with `status` and `Location: location` once the server has answered `after`
    /// requests (of any path); an earlier redirect for the same path is replaced.
    pub fn redirect(&self, path: &str, after: usize, status: u16, location: &str) {
        let mut state = lock(&self.state);
        state.redirects.retain(|r| r.path != path);
        state.redirects.push(Redirect { path: path.to_owned(), after, status, location: location.to_owned() });
    }

    /// Stops every redirect.
    pub fn clear_redirects(&self) {
        lock(&self.state).redirects.clear();
    }

    /// With `Some((after, interval))`: once the server has answered `after` requests, sends every body one byte at a
    /// time, `interval` apart (the headers at once, as a correct answer). `None` stops it.
    pub fn trickle(&self, from: Option<(usize, Duration)>) {
        lock(&self.state).trickle = from;
    }

    /// With `Some((after, bytes))`: once the server has answered `after` requests, closes every connection after
    /// `bytes` bytes of a body (the headers correct, the body cut short). `None` stops it.
    pub fn cut_bodies(&self, from: Option<(usize, u64)>) {
        lock(&self.state).cut_bodies = from;
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.state).log.clone()
    }

    /// The number of requests so far.
    pub fn n_requests(&self) -> usize {
        lock(&self.state).log.len()
    }

    /// The number of connections accepted so far.
    pub fn n_connections(&self) -> u64 {
        lock(&self.state).n_connections
    }

    /// Body bytes sent over all responses.
    pub fn bytes_sent(&self) -> u64 {
        lock(&self.state).log.iter().map(|r| r.body_bytes).sum()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // accept() has no timeout; one more connection wakes it to see the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        // No connection can start now; shutting the open ones down ends every blocked read and write.
        for stream in lock(&self.state).open.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(PoisonError::into_inner));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

/// A loopback port with nothing listening on it, so a connection to it is refused.
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address of the listener").port()
}

/// A small seeded PRNG (SplitMix64), so drop points are the same on every run.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn accept_loop(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let Ok(registered) = stream.try_clone() else { continue };
        let id = {
            let mut state = lock(&state);
            state.n_connections += 1;
            let id = state.n_connections;
            state.open.insert(id, registered);
            id
        };
        let state = state.clone();
        let worker = thread::spawn(move || {
            let _ = serve(&stream, id, &state);
            // The registered clone keeps the socket open, so closing takes a shutdown, not just a drop.
            let _ = stream.shutdown(Shutdown::Both);
            lock(&state).open.remove(&id);
        });
        workers.lock().unwrap_or_else(PoisonError::into_inner).push(worker);
    }
}

/// A parsed request head.
struct Head {
    method: String,
    path: String,
    range: Option<String>,
    if_range: Option<String>,
    close: bool,
}

/// Reads one request head; `None` when the client closed the connection between requests.
fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (words.next(), words.next(), words.next()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("request line {line:?}")));
    };
    let mut head = Head {
        method: method.to_owned(),
        path: path.to_owned(),
        range: None,
        if_range: None,
        close: version == "HTTP/1.0",
    };
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a request head"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(Some(head));
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim().to_owned();
        match name.trim().to_ascii_lowercase().as_str() {
            "range" => head.range = Some(value),
            "if-range" => head.if_range = Some(value),
            "connection" => head.close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `len` bytes. `None` means the header is ignored
/// (malformed or several ranges), `Some(None)` that the range is unsatisfiable.
fn parse_range(value: &str, len: u64) -> Option<Option<(u64, u64)>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let n: u64 = last.parse().ok()?;
        return Some((n > 0 && len > 0).then(|| (len.saturating_sub(n), len - 1)));
    }
    let first: u64 = first.parse().ok()?;
    let last = match last {
        "" => u64::MAX,
        last => last.parse().ok()?,
    };
    if last < first {
        return None;
    }
    Some((first < len).then(|| (first, last.min(len - 1))))
}

/// What to do for one response, decided under the lock.
struct Plan {
    status: u16,
    headers: Vec<String>,
    /// The whole file and the byte range of it to send as the body.
    body: Option<(Arc<Vec<u8>>, u64, u64)>,
    stall_headers: bool,
    stall: bool,
    trickle: Option<Duration>,
    drop_after: Option<u64>,
    replace: Option<Replace>,
    log_idx: usize,
}

fn plan(state: &mut State, head: &Head, connection: u64) -> Plan {
    let mut headers = Vec::new();
    let mut body = None;
    let n_answered = state.log.len();
    let redirect = state.redirects.iter().find(|r| r.path == head.path && n_answered >= r.after);
    let status = if let Some(r) = redirect {
        headers.push(format!("Location: {}", r.location));
        r.status
    } else if state.fail_next > 0 {
        state.fail_next -= 1;
        let text: &[u8] = b"injected failure\n";
        body = Some((Arc::new(text.to_vec()), 0, text.len() as u64));
        500
    } else if head.method != "GET" && head.method != "HEAD" {
        405
    } else if let Some(file) = state.files.get(&head.path) {
        let len = file.content.len() as u64;
        if !state.no_etags {
            headers.push(format!("ETag: {}", file.etag));
        }
        headers.push("Accept-Ranges: bytes".to_owned());
        let if_range_ok = match &head.if_range {
            None => true,
            Some(v) => !state.no_etags && *v == file.etag,
        };
        let range = match &head.range {
            Some(r) if !state.ignore_range && if_range_ok => parse_range(r, len),
            _ => None,
        };
        match range {
            None => {
                body = Some((file.content.clone(), 0, len));
                200
            }
            Some(None) => {
                headers.push(format!("Content-Range: bytes */{len}"));
                416
            }
            Some(Some((first, last))) => {
                headers.push(format!("Content-Range: bytes {first}-{last}/{len}"));
                body = Some((file.content.clone(), first, last + 1));
                206
            }
        }
    } else {
        404
    };
    let stall_headers = state.stall_headers_next > 0;
    if stall_headers {
        state.stall_headers_next -= 1;
    }
    let has_body = head.method == "GET" && matches!(status, 200 | 206) && !stall_headers;
    let stall = has_body && state.stall_next > 0;
    if stall {
        state.stall_next -= 1;
    }
    let cut = state.cut_bodies.filter(|&(after, _)| n_answered >= after).map(|(_, bytes)| bytes);
    let drop_after = if has_body && !stall { state.drops.pop_front().or(cut) } else { None };
    let trickle = state.trickle.filter(|&(after, _)| has_body && n_answered >= after).map(|(_, interval)| interval);
    let n = body.as_ref().map_or(0, |(_, first, end)| end - first);
    // A response too short to reach the replacement point leaves it for a later one.
    let replace = match &state.replace {
        Some(r) if has_body && !stall && r.path == head.path && r.at < n => state.replace.take(),
        _ => None,
    };
    headers.push(format!("Content-Length: {n}"));
    if head.close {
        headers.push("Connection: close".to_owned());
    }
    if head.method == "HEAD" {
        body = None;
    }
    state.log.push(Request {
        connection,
        method: head.method.clone(),
        path: head.path.clone(),
        range: head.range.clone(),
        if_range: head.if_range.clone(),
        status,
        body_bytes: 0,
    });
    Plan { status, headers, body, stall_headers, stall, trickle, drop_after, replace, log_idx: state.log.len() - 1 }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

/// Serves the requests of one connection until it closes, is dropped on purpose, or the server stops.
fn serve(stream: &TcpStream, connection: u64, state: &Mutex<State>) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_LIMIT))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        // A request starts with a method, which is letters; anything else (a TLS handshake starts with 0x16) gets
        // a 400 at once and the connection closes, as a real server does, instead of waiting for a line.
        let starts_as_http = match reader.fill_buf()?.first() {
            None => return Ok(()),
            Some(b) => b.is_ascii_uppercase(),
        };
        if !starts_as_http {
            lock(state).log.push(Request {
                connection,
                method: String::new(),
                path: String::new(),
                range: None,
                if_range: None,
                status: 400,
                body_bytes: 0,
            });
            writer.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            writer.flush()?;
            return linger(stream, &mut reader);
        }
        let Some(head) = read_head(&mut reader)? else { return Ok(()) };
        // The log entry exists before the client can see any of the response, so a test that has its answer
        // also finds the request in the log.
        let plan = plan(&mut lock(state), &head, connection);
        if plan.stall_headers {
            return stall(stream, &mut reader);
        }
        let mut out = format!("HTTP/1.1 {} {}\r\n", plan.status, reason(plan.status));
        for header in &plan.headers {
            out.push_str(header);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        writer.write_all(out.as_bytes())?;
        writer.flush()?;
        if plan.stall {
            return stall(stream, &mut reader);
        }
        if let (Some(interval), Some((content, first, end))) = (plan.trickle, &plan.body) {
            let n = end - first;
            for i in 0..n {
                if plan.drop_after == Some(i) {
                    return linger(stream, &mut reader);
                }
                let at = usize::try_from(first + i).expect("in memory");
                lock(state).log[plan.log_idx].body_bytes += 1;
                writer.write_all(&content[at..at + 1])?;
                writer.flush()?;
                // The trickle itself: the server's pace, not a wait for anything.
                thread::sleep(interval);
            }
        } else if let Some((content, first, end)) = &plan.body {
            let mut replace = plan.replace;
            let mut sent = 0u64;
            let n = end - first;
            loop {
                if let Some(r) = replace.take_if(|r| r.at <= sent) {
                    lock(state).put(&r.path, r.content);
                }
                if sent == n {
                    break;
                }
                if plan.drop_after == Some(sent) {
                    return linger(stream, &mut reader);
                }
                // Stop each write at the next planted event, so it happens after exactly that many bytes.
                let mut stop = n.min(sent + WRITE_CHUNK as u64);
                if let Some(at) = plan.drop_after.filter(|&at| at > sent) {
                    stop = stop.min(at);
                }
                if let Some(at) = replace.as_ref().map(|r| r.at).filter(|&at| at > sent) {
                    stop = stop.min(at);
                }
                let chunk = &content[usize::try_from(first + sent).expect("in memory")
                    ..usize::try_from(first + stop).expect("in memory")];
                lock(state).log[plan.log_idx].body_bytes += chunk.len() as u64;
                writer.write_all(chunk)?;
                sent = stop;
            }
            writer.flush()?;
        }
        if head.close {
            return Ok(());
        }
    }
}

/// Sends nothing more until the client gives up and closes, or the bound passes; then the connection closes.
fn stall(stream: &TcpStream, reader: &mut impl Read) -> io::Result<()> {
    stream.set_read_timeout(Some(STALL_LIMIT))?;
    let _ = reader.read(&mut [0u8; 1]);
    Ok(())
}

/// Closes a connection on purpose mid-body: FIN first, then wait for the client to close, so the close never
/// becomes a reset that could discard bytes the client has not read yet.
fn linger(stream: &TcpStream, reader: &mut impl Read) -> io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    stream.set_read_timeout(Some(LINGER_LIMIT))?;
    let mut buf = [0u8; 1024];
    while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    Ok(())
}
