//! Bundles over HTTP(S): Range requests, timeouts, retries with jittered exponential backoff, and detection of a
//! bundle replaced on the server mid-download.
//!
//! This is the one place that speaks HTTP, so every network failure the install can meet (refused connections,
//! resets, stalls, 5xx, servers that ignore Range, a bundle swapped under our feet) is handled here and turned
//! into either an uninterrupted byte stream or one `Error` that says what was being attempted.

use std::error::Error as StdError;
use std::io::{self, Read};
use std::thread;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};

use crate::fetch::{Counted, Counter, Fetch};

/// Timeouts and the retry policy of an HTTP source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// How long a TCP (and TLS) connect may take.
    pub connect_timeout: Duration,
    /// How long a request may wait for its response beyond `connect_timeout`: a stall longer than this is a
    /// failure. Every request has the deadline `connect_timeout + read_timeout`; one that reaches it without a
    /// byte of body has failed, one that delivered bytes is continued from the next byte by a new request.
    pub read_timeout: Duration,
    /// Consecutive failures without a byte of progress that are retried; the next one gives up.
    pub max_retries: u32,
    /// The backoff ceiling before the first retry; it doubles with every further consecutive failure.
    pub backoff_base: Duration,
    /// The largest backoff ceiling.
    pub backoff_max: Duration,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_retries: 8,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// What an HTTP source has done so far, for reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Requests sent, HEAD included.
    pub requests: u64,
    /// Failures that were retried after a backoff.
    pub retries: u64,
    /// Body bytes received, counting bytes received more than once.
    pub bytes_received: u64,
}

/// An HTTP failure; each variant names the URL and, where there was one, the request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle URL is not an http:// or https:// URL.
    #[error("bundle url {url} is not a valid http:// or https:// url")]
    Url {
        /// The URL as given.
        url: String,
        /// Why it did not parse, when the scheme was right.
        #[source]
        source: Option<Box<ureq::Error>>,
    },
    /// A request got no response: connect, TLS, sending, reading the headers, or its deadline.
    #[error("{request}: no response")]
    Request {
        /// The bundle URL.
        url: String,
        /// The request, such as `GET http://host/b bytes=5-`.
        request: String,
        /// What went wrong on the way.
        #[source]
        source: Box<ureq::Transport>,
    },
    /// The server answered with a status other than 200 or 206.
    #[error("{request}: status {status}")]
    Status {
        /// The bundle URL.
        url: String,
        /// The request, such as `GET http://host/b bytes=5-`.
        request: String,
        /// The HTTP status code.
        status: u16,
    },
    /// Reading a response body failed before its end.
    #[error("{request}: reading the body at byte {offset}")]
    ReadBody {
        /// The bundle URL.
        url: String,
        /// The request whose body failed.
        request: String,
        /// The bundle offset of the first byte not received.
        offset: u64,
        /// The read error (reset, timeout, early end).
        #[source]
        source: io::Error,
    },
    /// The server answered a Range request with bytes other than those asked for.
    #[error("{request}: bad range response: {detail}")]
    BadRange {
        /// The bundle URL.
        url: String,
        /// The request, such as `GET http://host/b bytes=5-`.
        request: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// The bundle on the server is no longer the one whose first bytes were received.
    #[error("bundle at {url} changed on the server during the download: {detail}")]
    Changed {
        /// The bundle URL.
        url: String,
        /// Which validator or length differed.
        detail: String,
    },
    /// Too many consecutive failures without a byte of progress.
    #[error("gave up on {url} after {attempts} attempts without progress")]
    GaveUp {
        /// The bundle URL.
        url: String,
        /// Failed attempts in a row, the last included.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<Error>,
    },
}

impl Error {
    /// Whether trying again may help: network failures, timeouts and server errors, but not answers that say
    /// the request or the bundle is wrong.
    fn retryable(&self) -> bool {
        match self {
            Error::Request { source, .. } => !matches!(
                source.kind(),
                ureq::ErrorKind::InvalidUrl
                    | ureq::ErrorKind::UnknownScheme
                    | ureq::ErrorKind::InsecureRequestHttpsOnly
                    | ureq::ErrorKind::TooManyRedirects
                    | ureq::ErrorKind::InvalidProxyUrl
                    | ureq::ErrorKind::ProxyUnauthorized
            ),
            Error::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            Error::ReadBody { .. } => true,
            Error::Url { .. } | Error::BadRange { .. } | Error::Changed { .. } | Error::GaveUp { .. } => false,
        }
    }
}

/// The delay before retry number `attempt + 1`: "full jitter" exponential backoff, uniform in
/// `[0, min(max, base * 2^attempt)]`, drawn from `random`.
///
/// Jitter over the whole range keeps a fleet of nodes that lost the same server from coming back in step.
pub fn backoff_delay(attempt: u32, base: Duration, max: Duration, random: u64) -> Duration {
    // Past 2^127 the factor no longer fits; any non-zero base times it is far beyond any `max` by then.
    let ceiling = match 1u128.checked_shl(attempt) {
        Some(factor) => base.as_nanos().saturating_mul(factor).min(max.as_nanos()),
        None if base.is_zero() => 0,
        None => max.as_nanos(),
    };
    // The modulo is below `random`, so it fits a u64; its bias is negligible for ceilings far below 2^64 ns.
    let nanos = u128::from(random) % (ceiling + 1);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The validators of the bundle as the first response described it, to tell a replaced bundle from a resumed one.
#[derive(Debug, Clone, Default)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
    total: Option<u64>,
}

impl Validators {
    /// The value for `If-Range`: a strong ETag, else Last-Modified. A weak ETag is never sent, because a server
    /// must then answer 200 to every resume (RFC 9110, "If-Range").
    fn if_range(&self) -> Option<&str> {
        match &self.etag {
            Some(etag) if !etag.starts_with("W/") => Some(etag),
            _ => self.last_modified.as_deref(),
        }
    }
}

/// One accepted response: its body reader and where it ends.
struct Part {
    reader: Box<dyn Read + Send>,
    /// The request, for messages.
    request: String,
    /// The bundle offset just past the last byte of this body, when known.
    end: Option<u64>,
    /// When the request was sent, to recognise its deadline.
    started: Instant,
    /// Body bytes read from this response.
    received: u64,
}

/// A bundle on an HTTP(S) server, read with Range requests over one keep-alive connection.
pub struct HttpFetch {
    url: String,
    agent: ureq::Agent,
    options: HttpOptions,
    counter: Counter,
    /// The validators of the first response; `None` before it.
    first: Option<Validators>,
    /// Whether the server has answered a Range request with 206, so a later 200 means "changed", not "unsupported".
    ranges_honoured: bool,
    requests: u64,
    retries: u64,
}

impl HttpFetch {
    /// A source for the bundle at `url`; nothing is sent until the first `len` or `open`.
    pub fn new(url: &str, options: HttpOptions) -> Result<HttpFetch, Error> {
        let lower = url.to_ascii_lowercase();
        if !lower.starts_with("http://") && !lower.starts_with("https://") {
            return Err(Error::Url { url: url.to_owned(), source: None });
        }
        // ureq 2.12 clears the socket read timeout when it pools a connection and sets it again only for the body,
        // so the headers of a request on a reused connection could wait forever. The per-request deadline
        // (`deadline`) bounds every phase; the read timeout here only covers a fresh connection.
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(options.connect_timeout)
            .timeout_read(options.read_timeout)
            .user_agent(concat!("edge-update/", env!("CARGO_PKG_VERSION")))
            .build();
        if let Err(e) = agent.get(url).request_url() {
            return Err(Error::Url { url: url.to_owned(), source: Some(Box::new(e)) });
        }
        Ok(HttpFetch {
            url: url.to_owned(),
            agent,
            options,
            counter: Counter::default(),
            first: None,
            ranges_honoured: false,
            requests: 0,
            retries: 0,
        })
    }

    /// Requests, retries and bytes so far.
    pub fn stats(&self) -> HttpStats {
        HttpStats { requests: self.requests, retries: self.retries, bytes_received: self.counter.get() }
    }

    /// The deadline of one request, from sending it to the end of its body.
    fn deadline(&self) -> Duration {
        self.options.connect_timeout.saturating_add(self.options.read_timeout)
    }

    /// Counts a failure; gives up, or waits out the backoff so the caller can try again.
    fn retry_or_give_up(&mut self, failures: &mut u32, err: Error) -> Result<(), Error> {
        if !err.retryable() {
            return Err(err);
        }
        *failures += 1;
        if *failures > self.options.max_retries {
            return Err(Error::GaveUp { url: self.url.clone(), attempts: *failures, last: Box::new(err) });
        }
        let delay = backoff_delay(*failures - 1, self.options.backoff_base, self.options.backoff_max, OsRng.next_u64());
        log::warn!(
            "{}; retry {}/{} in {:.1} s",
            describe(&err),
            failures,
            self.options.max_retries,
            delay.as_secs_f64()
        );
        self.retries += 1;
        // This is the backoff itself: the server or the link needs time, and nothing else waits on this thread.
        thread::sleep(delay);
        Ok(())
    }

    /// Records the validators of a response, or checks them against the first response's.
    fn check_validators(&mut self, seen: Validators) -> Result<(), Error> {
        let Some(first) = &mut self.first else {
            self.first = Some(seen);
            return Ok(());
        };
        // A field missing from either side is not evidence: a proxy may drop ETag from partial responses.
        let pairs = [("ETag", &first.etag, &seen.etag), ("Last-Modified", &first.last_modified, &seen.last_modified)];
        for (name, was, now) in pairs {
            if let (Some(was), Some(now)) = (was, now) {
                if was != now {
                    return Err(Error::Changed { url: self.url.clone(), detail: format!("{name} {was} became {now}") });
                }
            }
        }
        if let (Some(was), Some(now)) = (first.total, seen.total) {
            if was != now {
                let detail = format!("length {was} became {now}");
                return Err(Error::Changed { url: self.url.clone(), detail });
            }
        }
        first.etag = first.etag.take().or(seen.etag);
        first.last_modified = first.last_modified.take().or(seen.last_modified);
        first.total = first.total.or(seen.total);
        Ok(())
    }

    /// The bundle length as far as it is known without a request.
    fn known_total(&self) -> Option<u64> {
        self.first.as_ref().and_then(|v| v.total)
    }

    /// One GET for bytes `start..end`, without retries.
    fn get_once(&mut self, start: u64, end: Option<u64>) -> Result<Part, Error> {
        let range = match end {
            Some(end) => format!("bytes={start}-{}", end - 1),
            None => format!("bytes={start}-"),
        };
        let request = format!("GET {} {range}", self.url);
        let mut req = self.agent.get(&self.url).set("Range", &range).timeout(self.deadline());
        let if_range = self.first.as_ref().and_then(|v| v.if_range()).map(str::to_owned);
        if let Some(value) = &if_range {
            req = req.set("If-Range", value);
        }
        self.requests += 1;
        log::debug!("{request}");
        let started = Instant::now();
        let resp = match req.call() {
            Ok(resp) => resp,
            Err(ureq::Error::Status(status, _)) => {
                return Err(Error::Status { url: self.url.clone(), request, status })
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(Error::Request { url: self.url.clone(), request, source: Box::new(t) })
            }
        };
        let url = self.url.clone();
        let bad_range = |detail: String| Error::BadRange { url: url.clone(), request: request.clone(), detail };
        let content_length = match resp.header("Content-Length") {
            Some(v) => Some(v.trim().parse::<u64>().map_err(|_| bad_range(format!("Content-Length {v:?}")))?),
            None => None,
        };
        let mut seen = Validators {
            etag: resp.header("ETag").map(str::to_owned),
            last_modified: resp.header("Last-Modified").map(str::to_owned),
            total: None,
        };
        let part_end = match resp.status() {
            206 => {
                let Some(value) = resp.header("Content-Range") else {
                    return Err(bad_range("206 without Content-Range".to_owned()));
                };
                let Some((first, last, total)) = parse_content_range(value) else {
                    return Err(bad_range(format!("Content-Range {value:?}")));
                };
                seen.total = total;
                // A server clips a range that runs past the end to the end.
                let want_end = clip(end, total);
                if first != start || want_end.is_some_and(|e| last + 1 != e) {
                    return Err(bad_range(format!("Content-Range {value:?}")));
                }
                if content_length.is_some_and(|n| n != last + 1 - first) {
                    return Err(bad_range(format!("Content-Range {value:?} with Content-Length {content_length:?}")));
                }
                self.check_validators(seen)?;
                self.ranges_honoured = true;
                Some(last + 1)
            }
            200 => {
                seen.total = content_length;
                self.check_validators(seen)?;
                if start > 0 {
                    // After a 206, a 200 to a request carrying If-Range is the server saying the bundle changed.
                    if self.ranges_honoured && if_range.is_some() {
                        let detail = format!("the server answered If-Range with the whole bundle at byte {start}");
                        return Err(Error::Changed { url: self.url.clone(), detail });
                    }
                    return Err(bad_range(format!("200 (the whole bundle) to a request from byte {start}")));
                }
                if let Some(end) = end {
                    if content_length.is_none_or(|total| end < total) {
                        return Err(bad_range(format!("200 (the whole bundle) to a request up to byte {end}")));
                    }
                }
                content_length
            }
            status => return Err(Error::Status { url: self.url.clone(), request, status }),
        };
        let reader = Box::new(Counted::new(resp.into_reader(), self.counter.clone()));
        Ok(Part { reader, request, end: part_end, started, received: 0 })
    }

    /// A GET for bytes `start..end`, retried; `failures` counts failures in a row without progress and is shared
    /// with the reader that resumes the body.
    fn get(&mut self, start: u64, end: Option<u64>, failures: &mut u32) -> Result<Part, Error> {
        loop {
            match self.get_once(start, end) {
                Ok(part) => return Ok(part),
                Err(err) => self.retry_or_give_up(failures, err)?,
            }
        }
    }

    /// One HEAD for the bundle length, without retries.
    fn head_once(&mut self) -> Result<Option<u64>, Error> {
        let request = format!("HEAD {}", self.url);
        self.requests += 1;
        log::debug!("{request}");
        let resp = match self.agent.head(&self.url).timeout(self.deadline()).call() {
            Ok(resp) => resp,
            Err(ureq::Error::Status(status, _)) => {
                return Err(Error::Status { url: self.url.clone(), request, status })
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(Error::Request { url: self.url.clone(), request, source: Box::new(t) })
            }
        };
        if resp.status() != 200 {
            return Err(Error::Status { url: self.url.clone(), request, status: resp.status() });
        }
        let total = match resp.header("Content-Length") {
            Some(v) => Some(v.trim().parse::<u64>().map_err(|_| Error::BadRange {
                url: self.url.clone(),
                request,
                detail: format!("Content-Length {v:?}"),
            })?),
            None => None,
        };
        self.check_validators(Validators {
            etag: resp.header("ETag").map(str::to_owned),
            last_modified: resp.header("Last-Modified").map(str::to_owned),
            total,
        })?;
        Ok(self.known_total())
    }
}

impl Fetch for HttpFetch {
    fn name(&self) -> &str {
        &self.url
    }
    fn seekable(&self) -> bool {
        true
    }
    fn len(&mut self) -> io::Result<Option<u64>> {
        if let Some(total) = self.known_total() {
            return Ok(Some(total));
        }
        let mut failures = 0;
        loop {
            match self.head_once() {
                Ok(total) => return Ok(total),
                Err(err) => self.retry_or_give_up(&mut failures, err).map_err(io::Error::other)?,
            }
        }
    }
    fn open(&mut self, start: u64, end: Option<u64>) -> io::Result<Box<dyn Read + Send + '_>> {
        let end = clip(end, self.known_total());
        if end.is_some_and(|end| end <= start) {
            return Ok(Box::new(io::empty()));
        }
        let mut failures = 0;
        let part = self.get(start, end, &mut failures).map_err(io::Error::other)?;
        let stop = clip(end.or(part.end), self.known_total());
        Ok(Box::new(Body { fetch: self, pos: start, asked: end, end: stop, part: Some(part), failures }))
    }
    fn bytes_received(&self) -> u64 {
        self.counter.get()
    }
}

/// The reader `open` hands out: one byte stream over as many responses as it takes.
struct Body<'a> {
    fetch: &'a mut HttpFetch,
    /// The bundle offset of the next byte to hand out.
    pos: u64,
    /// The end as asked for, which each resume asks for again, so a read to the end stays `bytes=N-`.
    asked: Option<u64>,
    /// The bundle offset to stop at, when known.
    end: Option<u64>,
    /// The response being read; `None` after a failure, until the next request.
    part: Option<Part>,
    /// Failures in a row without a byte of progress.
    failures: u32,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = self.end.map_or(u64::MAX, |end| end.saturating_sub(self.pos));
            if left == 0 || buf.is_empty() {
                return Ok(0);
            }
            let Some(part) = &mut self.part else {
                let part = self.fetch.get(self.pos, self.asked, &mut self.failures).map_err(io::Error::other)?;
                self.end = clip(self.end.or(part.end), self.fetch.known_total());
                self.part = Some(part);
                continue;
            };
            let want = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
            let failure = match part.reader.read(&mut buf[..want]) {
                Ok(0) if part.end.is_none() => {
                    // A body of unknown length (a 200 without Content-Length) ends where the bundle ends.
                    self.end = Some(self.pos);
                    self.part = None;
                    return Ok(0);
                }
                Ok(0) => io::Error::new(io::ErrorKind::UnexpectedEof, "the body ended early"),
                Ok(n) => {
                    self.pos += n as u64;
                    part.received += n as u64;
                    self.failures = 0;
                    if part.end == Some(self.pos) {
                        // One more read sees the end of the body, which is when ureq pools the connection for
                        // the next request; a failure there changes nothing for the bytes already received.
                        let _ = part.reader.read(&mut [0u8; 1]);
                        self.part = None;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            let Some(part) = self.part.take() else { continue };
            let cut = part.received > 0
                && failure.kind() == io::ErrorKind::TimedOut
                && part.started.elapsed() >= self.fetch.deadline();
            let err = Error::ReadBody {
                url: self.fetch.url.clone(),
                request: part.request,
                offset: self.pos,
                source: failure,
            };
            if cut {
                // A slow but moving download reaches the request deadline; that is not a failure.
                log::debug!("{}; continuing with a new request", describe(&err));
                continue;
            }
            self.fetch.retry_or_give_up(&mut self.failures, err).map_err(io::Error::other)?;
        }
    }
}

/// The end of a read, `end` (`None`: to the end of the bundle), clipped to the bundle's length when known.
fn clip(end: Option<u64>, total: Option<u64>) -> Option<u64> {
    match (end, total) {
        (Some(end), Some(total)) => Some(end.min(total)),
        (end, total) => end.or(total),
    }
}

/// Parses `Content-Range: bytes first-last/total` (`total` may be `*`).
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last) = (first.trim().parse::<u64>().ok()?, last.trim().parse::<u64>().ok()?);
    let total = match total.trim() {
        "*" => None,
        total => Some(total.parse::<u64>().ok()?),
    };
    (first <= last && total.is_none_or(|total| last < total)).then_some((first, last, total))
}

/// An error and its causes on one line, for a log message; a cause whose text its parent already shows is skipped.
fn describe(err: &dyn StdError) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_delay_grows_jitters_and_caps() {
        fn check(attempt: u32, base: Duration, max: Duration, random: u64, expected: Duration) {
            assert_eq!(backoff_delay(attempt, base, max, random), expected, "attempt {attempt} random {random}");
        }
        let (base, max) = (500 * MS, 60_000 * MS);
        // The bottom of the range, then its top at each of the first attempts: base, 2 base, 8 base.
        check(0, base, max, 0, Duration::ZERO);
        check(0, base, max, 500_000_000, 500 * MS);
        check(1, base, max, 1_000_000_000, 1_000 * MS);
        check(3, base, max, 4_000_000_000, 4_000 * MS);
        // One past the top wraps to the bottom: the range is inclusive and no wider.
        check(0, base, max, 500_000_001, Duration::ZERO);
        check(3, base, max, 4_000_000_001, Duration::ZERO);
        // In between.
        check(2, base, max, 1_234_567_890, Duration::from_nanos(1_234_567_890));
        // 500 ms * 2^7 = 64 s, capped at 60 s.
        check(7, base, max, 60_000_000_000, max);
        check(7, base, max, 60_000_000_001, Duration::ZERO);
        // Huge attempts neither overflow nor exceed the cap.
        check(64, base, max, 60_000_000_000, max);
        check(127, base, max, u64::MAX, Duration::from_nanos(u64::MAX % 60_000_000_001));
        check(u32::MAX, base, max, u64::MAX, Duration::from_nanos(u64::MAX % 60_000_000_001));
        check(200, base, Duration::MAX, u64::MAX, Duration::from_nanos(u64::MAX));
        // A zero base or cap means no wait at all.
        check(u32::MAX, Duration::ZERO, max, 12_345, Duration::ZERO);
        check(5, base, Duration::ZERO, 12_345, Duration::ZERO);
    }

    #[test]
    fn content_range_parses_only_single_ranges() {
        fn check(value: &str, expected: Option<(u64, u64, Option<u64>)>) {
            assert_eq!(parse_content_range(value), expected, "{value:?}");
        }
        check("bytes 0-99/1000", Some((0, 99, Some(1000))));
        check("bytes 5-5/6", Some((5, 5, Some(6))));
        check("bytes 10-19/*", Some((10, 19, None)));
        check("bytes 0-99/99", None);
        check("bytes 9-8/100", None);
        check("bytes */1000", None);
        check("bytes 0-99", None);
        check("items 0-99/1000", None);
        check("bytes -1-99/1000", None);
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        fn check(url: &str, ok: bool) {
            let result = HttpFetch::new(url, HttpOptions::default());
            assert_eq!(result.is_ok(), ok, "{url}");
            if !ok {
                assert!(matches!(result, Err(Error::Url { .. })), "{url}");
            }
        }
        check("http://example.com/bundle", true);
        check("https://example.com:8443/b/bundle.edge", true);
        check("HTTPS://EXAMPLE.COM/bundle", true);
        check("ftp://example.com/bundle", false);
        check("/srv/bundle", false);
        check("example.com/bundle", false);
        check("http://", false);
        check("http://exa mple.com/bundle", false);
    }

    #[test]
    fn if_range_prefers_a_strong_etag() {
        fn check(etag: Option<&str>, last_modified: Option<&str>, expected: Option<&str>) {
            let v = Validators {
                etag: etag.map(str::to_owned),
                last_modified: last_modified.map(str::to_owned),
                total: None,
            };
            assert_eq!(v.if_range(), expected, "{etag:?} {last_modified:?}");
        }
        let date = "Tue, 03 Jun 2025 10:00:00 GMT";
        check(Some("\"a1\""), Some(date), Some("\"a1\""));
        check(Some("W/\"a1\""), Some(date), Some(date));
        check(Some("W/\"a1\""), None, None);
        check(None, Some(date), Some(date));
        check(None, None, None);
    }
}
