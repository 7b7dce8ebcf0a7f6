//! The HTTP source against a real HTTP/1.1 server on loopback: ranges, resumes after dropped connections, 5xx,
//! stalls, a bundle replaced mid-download, a server ignoring Range, and statuses that must not be retried.
//! Every test compares the bytes read with the bytes served and checks the server's request log.

use testkit::http_server;

use std::io::{self, Read};
use std::time::Duration;

use http_server::{closed_port, Server};
use updater::fetch::Fetch;
use updater::http::{self, HttpFetch, HttpOptions};

/// Options for a loopback server: timeouts long enough that only injected stalls reach them, backoff short.
fn options(max_retries: u32) -> HttpOptions {
    HttpOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        max_retries,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..HttpOptions::default()
    }
}

/// As [`options`], with a minimum rate of 1000 bytes per 200 ms, which a loopback server meets a thousand times
/// over unless told to trickle.
fn rate_options(max_retries: u32) -> HttpOptions {
    HttpOptions { min_rate_bytes: 1000, min_rate_window: Duration::from_millis(200), ..options(max_retries) }
}

/// `len` bytes that differ from `bundle(len, other_version)` nearly everywhere and never repeat with a short
/// period, so a byte from the wrong offset or the wrong version shows up in a comparison.
fn bundle(len: usize, version: u64) -> Vec<u8> {
    (0..len as u64)
        .map(|i| {
            let x = (i ^ (version << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (x >> 56) as u8
        })
        .collect()
}

fn fetch(server: &Server, path: &str, options: HttpOptions) -> HttpFetch {
    HttpFetch::new(&server.url(path), options).expect("a loopback http url")
}

/// Reads `start..end` to its end; on an error, also returns what was read before it.
fn read(fetch: &mut HttpFetch, start: u64, end: Option<u64>) -> Result<Vec<u8>, (io::Error, Vec<u8>)> {
    let mut reader = fetch.open(start, end).map_err(|e| (e, Vec::new()))?;
    let mut data = Vec::new();
    match reader.read_to_end(&mut data) {
        Ok(_) => Ok(data),
        Err(e) => Err((e, data)),
    }
}

/// The `http::Error` an `io::Error` from the source carries.
fn http_error(err: &io::Error) -> &http::Error {
    err.get_ref().and_then(|e| e.downcast_ref::<http::Error>()).expect("an updater::http::Error in the io::Error")
}

#[test]
fn whole_bundle_and_ranges_match_the_served_bytes() {
    let server = Server::start();
    let content = bundle(300_000, 1);
    let size = content.len() as u64;
    server.put("/b", content.clone());
    let mut fetch = fetch(&server, "/b", options(3));
    assert_eq!(fetch.len().expect("len"), Some(size));
    let mut expected_received = 0;
    let mut check = |start: u64, end: Option<u64>| {
        let data = read(&mut fetch, start, end).map_err(|(e, _)| e).expect("read");
        let (from, to) = (start.min(size) as usize, end.unwrap_or(size).min(size) as usize);
        assert!(data == content[from..to.max(from)], "bytes {start}..{end:?}");
        expected_received += data.len() as u64;
    };
    check(0, None);
    check(0, Some(1));
    check(1, Some(2));
    check(12_345, Some(200_000));
    check(size - 1, None);
    // Past the end is clipped to the end, as a file would be.
    check(250_000, Some(400_000));
    check(size, None);
    check(5, Some(5));
    for i in 0..30 {
        check(i * 10_000, Some((i + 1) * 10_000));
    }
    assert_eq!(fetch.bytes_received(), expected_received);
    assert_eq!(server.bytes_sent(), expected_received);
    let stats = fetch.stats();
    assert_eq!(
        (stats.requests, stats.retries, stats.bytes_received),
        (server.n_requests() as u64, 0, expected_received)
    );
    // A HEAD, 36 GETs (the empty ranges send none), all over one keep-alive connection.
    assert_eq!(server.n_requests(), 37);
    assert_eq!(server.n_connections(), 1);
}

#[test]
fn dropped_connections_resume_at_the_next_byte() {
    let server = Server::start();
    let content = bundle(4 << 20, 2);
    let size = content.len() as u64;
    server.put("/b", content.clone());
    let drops = server.plant_drops(size, 12, 0x5eed);
    let mut fetch = fetch(&server, "/b", options(3));
    let data = read(&mut fetch, 0, None).map_err(|(e, _)| e).expect("read through 12 drops");
    assert!(data == content);
    // Every resume asks for exactly the next byte, with the first response's ETag.
    let requests = server.requests();
    let ranges: Vec<_> = requests.iter().map(|r| r.range.clone()).collect();
    let expected: Vec<_> = [0].iter().chain(&drops).map(|o| Some(format!("bytes={o}-"))).collect();
    assert_eq!(ranges, expected);
    assert!(requests[1..].iter().all(|r| r.if_range.is_some() && r.if_range == requests[1].if_range));
    // Bytes fetched more than once: none, on either side. A dropped connection loses nothing it sent before the
    // drop, and the client never discards a byte it received.
    assert_eq!(fetch.bytes_received() - size, 0);
    assert_eq!(server.bytes_sent() - size, 0);
    assert_eq!(fetch.stats().retries, 12);
}

#[test]
fn server_errors_are_retried_until_max_retries() {
    fn check(n_failures: u32, max_retries: u32) {
        let server = Server::start();
        let content = bundle(100_000, 3);
        server.put("/b", content.clone());
        server.fail_next(n_failures);
        let mut fetch = fetch(&server, "/b", options(max_retries));
        let result = read(&mut fetch, 0, None);
        if n_failures <= max_retries {
            let data = result.map_err(|(e, _)| e).expect("read after 500s");
            assert!(data == content, "{n_failures} 500s, max_retries {max_retries}");
            assert_eq!(server.n_requests() as u32, n_failures + 1);
            assert_eq!(fetch.stats().retries, u64::from(n_failures));
        } else {
            let (err, _) = result.expect_err("give up");
            let err = http_error(&err);
            assert!(
                matches!(err, http::Error::GaveUp { attempts, last, .. }
                    if *attempts == max_retries + 1 && matches!(**last, http::Error::Status { status: 500, .. })),
                "{n_failures} 500s, max_retries {max_retries}: {err:?}"
            );
            assert_eq!(server.n_requests() as u32, max_retries + 1);
        }
    }
    check(0, 3);
    check(3, 3);
    check(1, 0);
    check(4, 3);
    check(1000, 5);
}

#[test]
fn a_body_that_cannot_be_resumed_gives_up() {
    let server = Server::start();
    let content = bundle(100_000, 4);
    server.put("/b", content.clone());
    server.drop_after(1000);
    let max_retries = 3;
    let mut fetch = fetch(&server, "/b", options(max_retries));
    let mut reader = fetch.open(0, None).expect("open");
    // The first response is under way; every request after it fails.
    server.fail_next(1000);
    let mut data = Vec::new();
    let err = reader.read_to_end(&mut data).expect_err("give up");
    drop(reader);
    assert!(data == content[..1000]);
    // The early end of the first body is the first failure in a row, then each 500.
    assert!(
        matches!(http_error(&err), http::Error::GaveUp { attempts, last, .. }
            if *attempts == max_retries + 1 && matches!(**last, http::Error::Status { status: 500, .. })),
        "{err:?}"
    );
    assert_eq!(server.n_requests() as u32, 1 + max_retries);
}

#[test]
fn stalls_past_the_read_timeout_are_retried() {
    /// `warm`: the stalls hit a request on a kept-alive connection, where ureq 2 set no read timeout of its own
    /// before the headers; `before_headers`: the server sends nothing at all, instead of headers and no body.
    fn check(warm: bool, before_headers: bool) {
        let case = format!("warm {warm}, before headers {before_headers}");
        let server = Server::start();
        let content = bundle(200_000, 5);
        server.put("/b", content.clone());
        let options = HttpOptions {
            connect_timeout: Duration::from_millis(200),
            read_timeout: Duration::from_millis(300),
            ..options(3)
        };
        let mut fetch = fetch(&server, "/b", options);
        let start = if warm { 1000 } else { 0 };
        if warm {
            let data = read(&mut fetch, 0, Some(start)).map_err(|(e, _)| e).expect("read");
            assert!(data == content[..1000], "{case}");
        }
        if before_headers {
            server.stall_headers_next(2);
        } else {
            server.stall_next(2);
        }
        let data = read(&mut fetch, start, None).map_err(|(e, _)| e).expect("read after stalls");
        assert!(data == content[start as usize..], "{case}");
        assert_eq!(fetch.stats().retries, 2, "{case}");
        assert_eq!(server.n_requests(), usize::from(warm) + 3, "{case}");
        assert_eq!(fetch.bytes_received(), content.len() as u64, "{case}");
    }
    check(false, false);
    check(true, false);
    check(false, true);
    check(true, true);
}

#[test]
fn a_bundle_replaced_mid_download_is_detected() {
    /// `new_len`: the length of the replacement; `changed`: whether the source can tell.
    fn check(etags: bool, new_len: usize, changed: bool) {
        let server = Server::start();
        server.set_etags(etags);
        let old = bundle(200_000, 6);
        let new = bundle(new_len, 7);
        let at = 50_000;
        server.put("/b", old.clone());
        server.replace_at("/b", at as u64, new.clone());
        server.drop_after(at as u64);
        let mut fetch = fetch(&server, "/b", options(3));
        let case = format!("etags {etags}, new length {new_len}");
        match read(&mut fetch, 0, None) {
            Err((err, data)) => {
                assert!(changed, "{case}: {err:?}");
                assert!(matches!(http_error(&err), http::Error::Changed { .. }), "{case}: {err:?}");
                // Nothing of the new bundle was handed out, and a changed bundle is never retried.
                assert!(data == old[..at], "{case}");
                assert_eq!(server.n_requests(), 2, "{case}");
            }
            Ok(data) => {
                // Same length and no validator: at this layer the new bundle is indistinguishable from the old
                // one, so today the bytes are silently mixed. The manifest's chunk hashes catch it one layer up.
                assert!(!changed, "{case}");
                assert!(data[..at] == old[..at] && data[at..] == new[at..], "{case}");
            }
        }
    }
    check(true, 200_000, true);
    check(true, 300_000, true);
    check(false, 300_000, true);
    check(false, 100_000, true);
    check(false, 200_000, false);
}

#[test]
fn a_bundle_replaced_between_reads_is_detected() {
    let server = Server::start();
    let old = bundle(100_000, 8);
    server.put("/b", old.clone());
    let mut fetch = fetch(&server, "/b", options(3));
    let data = read(&mut fetch, 0, Some(40_000)).map_err(|(e, _)| e).expect("read");
    assert!(data == old[..40_000]);
    server.put("/b", bundle(100_000, 9));
    let (err, data) = read(&mut fetch, 40_000, None).expect_err("changed");
    assert!(matches!(http_error(&err), http::Error::Changed { .. }), "{err:?}");
    assert!(data.is_empty());
    assert_eq!(server.n_requests(), 2);
}

#[test]
fn issue_14_a_server_without_range_is_read_as_one_stream() {
    /// `streamed`: whether the server's answer shows it does not support Range.
    fn check(start: u64, end: Option<u64>, streamed: bool) {
        let case = format!("{start}..{end:?}");
        let server = Server::start();
        server.set_ignore_range(true);
        let content = bundle(50_000, 10);
        server.put("/b", content.clone());
        let mut fetch = fetch(&server, "/b", options(3));
        let data = read(&mut fetch, start, end).map_err(|(e, _)| e).expect(&case);
        let to = end.unwrap_or(u64::MAX).min(content.len() as u64) as usize;
        assert!(data == content[start as usize..to], "{case}");
        assert_eq!(fetch.streaming(), streamed, "{case}");
        assert_eq!(fetch.seekable(), !streamed, "{case}");
        // A whole answer to a range is dropped and asked for again without a deadline, and without Range.
        let ranges: Vec<_> = server.requests().into_iter().map(|r| r.range.is_some()).collect();
        assert_eq!(ranges, if streamed { vec![true, false] } else { vec![true] }, "{case}");
    }
    check(0, None, false);
    check(0, Some(50_000), false);
    check(0, Some(60_000), false);
    check(5, None, true);
    check(5, Some(10), true);
    check(0, Some(10), true);
    check(49_999, None, true);
}

#[test]
fn issue_14_a_stream_reads_on_skips_forward_and_starts_again_after_a_drop() {
    let server = Server::start();
    server.set_ignore_range(true);
    let content = bundle(300_000, 14);
    server.put("/b", content.clone());
    // The first answer (to a range) is dropped by the client; the stream is cut at 100 000 bytes.
    server.drop_after(u64::MAX);
    server.drop_after(100_000);
    let mut fetch = fetch(&server, "/b", options(3));
    let expect = |fetch: &mut HttpFetch, start: u64, end: u64| {
        let data = read(fetch, start, Some(end)).map_err(|(e, _)| e).expect("read on");
        assert!(data == content[start as usize..end as usize], "{start}..{end}");
    };
    expect(&mut fetch, 0, 24);
    expect(&mut fetch, 24, 1000);
    expect(&mut fetch, 5000, 6000);
    expect(&mut fetch, 90_000, 150_000);
    // A stream cannot go back.
    let (err, _) = read(&mut fetch, 100, Some(200)).expect_err("back");
    assert!(matches!(http_error(&err), http::Error::NoRange { at: 150_000, wanted: 100, .. }), "{err:?}");
    expect(&mut fetch, 150_000, 300_000);
    let requests = server.requests();
    let ranges: Vec<_> = requests.iter().map(|r| r.range.is_some()).collect();
    assert_eq!(ranges, [true, false, false]);
    assert_eq!(fetch.stats().retries, 1);
    assert_eq!(fetch.len().expect("len"), Some(300_000));
}

#[test]
fn client_errors_are_not_retried() {
    fn check(path: &str, start: u64, status: u16) {
        let server = Server::start();
        server.put("/b", bundle(1000, 11));
        let mut fetch = fetch(&server, path, options(3));
        let (err, _) = read(&mut fetch, start, None).expect_err("status");
        assert!(
            matches!(http_error(&err), http::Error::Status { status: s, .. } if *s == status),
            "{path} from {start}: {err:?}"
        );
        assert_eq!(server.n_requests(), 1, "{path} from {start}");
        assert_eq!(fetch.stats().retries, 0, "{path} from {start}");
    }
    check("/missing", 0, 404);
    check("/missing", 100, 404);
    check("/b", 1000, 416);
    check("/b", 5000, 416);
}

#[test]
fn len_asks_once_and_reports_missing_bundles() {
    let server = Server::start();
    server.put("/b", bundle(1234, 12));
    let mut present = fetch(&server, "/b", options(3));
    assert_eq!(present.len().expect("len"), Some(1234));
    assert_eq!(present.len().expect("len"), Some(1234));
    let mut missing = fetch(&server, "/missing", options(3));
    let err = missing.len().expect_err("404");
    assert!(matches!(http_error(&err), http::Error::Status { status: 404, .. }), "{err:?}");
    let methods: Vec<_> = server.requests().into_iter().map(|r| (r.method, r.path)).collect();
    assert_eq!(methods, [("HEAD".to_owned(), "/b".to_owned()), ("HEAD".to_owned(), "/missing".to_owned())]);
}

/// The `http::Error` of a read that failed.
fn read_err(fetch: &mut HttpFetch) -> http::Error {
    let (err, _) = read(fetch, 0, None).expect_err("a failure");
    let inner = err.into_inner().expect("an updater::http::Error in the io::Error");
    *inner.downcast::<http::Error>().expect("an updater::http::Error")
}

#[test]
fn issue_14_redirects_within_the_scheme_are_followed() {
    let server = Server::start();
    let content = bundle(200_000, 13);
    server.put("/b", content.clone());
    // Every redirect status, absolute and relative locations, as many hops as are followed.
    server.redirect("/r1", 0, 301, &server.url("/r2"));
    server.redirect("/r2", 0, 302, "/r3");
    server.redirect("/r3", 0, 303, "r4");
    server.redirect("/r4", 0, 307, &format!("//127.0.0.1:{}/r5", server.port()));
    server.redirect("/r5", 0, 308, "./b");
    server.drop_after(100_000);
    let mut fetch = fetch(&server, "/r1", options(3));
    let data = read(&mut fetch, 0, None).map_err(|(e, _)| e).expect("read through redirects");
    assert!(data == content);
    // The resume after the drop goes through the redirects again, from the next byte.
    let chain = ["/r1", "/r2", "/r3", "/r4", "/r5", "/b"];
    let requests = server.requests();
    let paths: Vec<_> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, [chain, chain].concat());
    assert!(requests[..6].iter().all(|r| r.range.as_deref() == Some("bytes=0-")));
    assert!(requests[6..].iter().all(|r| r.range.as_deref() == Some("bytes=100000-")));
    assert_eq!(fetch.stats().requests, 12);
}

#[test]
fn issue_14_redirects_elsewhere_are_refused_at_once() {
    fn check(status: u16, location: &str, expected: fn(&http::Error) -> bool) {
        let server = Server::start();
        server.put("/b", bundle(1000, 15));
        let location = location.replace("PORT", &server.port().to_string());
        server.redirect("/r", 0, status, &location);
        let mut fetch = fetch(&server, "/r", options(3));
        let err = read_err(&mut fetch);
        assert!(expected(&err), "{status} {location:?}: {err:?}");
        assert!(err.is_final(), "{status} {location:?}");
        // Refused on the first answer: never asked again, never followed.
        assert_eq!(server.n_requests(), 1, "{status} {location:?}");
        assert_eq!(fetch.stats().retries, 0, "{status} {location:?}");
    }
    fn scheme(scheme: &'static str, location: &'static str) -> impl Fn(&http::Error) -> bool {
        move |e| matches!(e, http::Error::RedirectScheme { scheme: s, location: l, .. } if s == scheme && l == location)
    }
    check(302, "file:///etc/passwd", |e| scheme("file", "file:///etc/passwd")(e));
    check(301, "FILE:///etc/passwd", |e| scheme("file", "file:///etc/passwd")(e));
    check(307, "ftp://127.0.0.1/b", |e| scheme("ftp", "ftp://127.0.0.1/b")(e));
    check(
        308,
        "gopher://127.0.0.1/b",
        |e| matches!(e, http::Error::RedirectScheme { scheme, .. } if scheme == "gopher"),
    );
    // An https:// redirect from an http:// URL, here to the same plain-HTTP port, is another scheme too.
    check(
        303,
        "https://127.0.0.1:PORT/b",
        |e| matches!(e, http::Error::RedirectScheme { scheme, .. } if scheme == "https"),
    );
    check(302, "", |e| matches!(e, http::Error::RedirectLocation { status: 302, .. }));
    check(301, "http://[::1/b", |e| matches!(e, http::Error::RedirectLocation { status: 301, .. }));
    check(302, "http://127.0.0.1:99999/b", |e| matches!(e, http::Error::RedirectLocation { .. }));
    // Statuses of the 3xx class that are not redirects to follow.
    check(300, "/b", |e| matches!(e, http::Error::Status { status: 300, .. }));
    check(304, "/b", |e| matches!(e, http::Error::Status { status: 304, .. }));
}

#[test]
fn issue_14_redirect_loops_stop_at_the_limit() {
    let server = Server::start();
    server.redirect("/loop", 0, 302, "/loop");
    let mut fetch = fetch(&server, "/loop", options(3));
    let err = read_err(&mut fetch);
    assert!(matches!(err, http::Error::TooManyRedirects { limit: http::MAX_REDIRECTS, .. }), "{err:?}");
    assert_eq!(server.n_requests() as u32, http::MAX_REDIRECTS + 1);
    assert_eq!(fetch.stats().retries, 0);
}

#[test]
fn issue_14_a_trickle_fails_the_minimum_rate() {
    let server = Server::start();
    let content = bundle(2000, 16);
    server.put("/b", content.clone());
    server.trickle(Some((0, Duration::from_millis(5))));
    let mut fetch = fetch(&server, "/b", rate_options(3));
    let (err, data) = read(&mut fetch, 0, None).expect_err("too slow");
    let err = http_error(&err);
    assert!(matches!(err, http::Error::TooSlow { min_bytes: 1000, .. }), "{err:?}");
    assert!(err.is_final());
    assert!(data.len() < 1000 && data[..] == content[..data.len()], "{} bytes", data.len());
    // One request, never failed: a trickle is not an error to retry, only too slow.
    assert_eq!((server.n_requests(), fetch.stats().retries), (1, 0));
}

#[test]
fn issue_14_one_byte_answers_fail_the_minimum_rate() {
    let server = Server::start();
    let content = bundle(2000, 17);
    server.put("/b", content.clone());
    // Every answer a correct 206 whose connection closes after one byte of body.
    server.cut_bodies(Some((0, 1)));
    let options = HttpOptions {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(2),
        ..rate_options(3)
    };
    let mut fetch = fetch(&server, "/b", options);
    let (err, data) = read(&mut fetch, 0, None).expect_err("too slow");
    assert!(matches!(http_error(&err), http::Error::TooSlow { .. }), "{err:?}");
    assert!(data.len() < 1000 && data[..] == content[..data.len()], "{} bytes", data.len());
    // Each byte is progress, so the retry counter alone never stops it: more requests than retries allowed.
    assert!(server.n_requests() > 4, "{} requests", server.n_requests());
    assert!(server.requests().iter().all(|r| r.status == 206 && r.body_bytes <= 1));
}

#[test]
fn issue_14_a_refused_connection_is_retried_then_given_up() {
    let url = format!("http://127.0.0.1:{}/b", closed_port());
    let mut fetch = HttpFetch::new(&url, options(2)).expect("url");
    let err = read_err(&mut fetch);
    assert!(
        matches!(&err, http::Error::GaveUp { attempts: 3, last, .. } if matches!(**last, http::Error::Request { .. })),
        "{err:?}"
    );
    assert_eq!(fetch.stats().retries, 2);
    // The same with a minimum rate whose window is shorter than the backoff: the window ends it first.
    let options = HttpOptions {
        backoff_base: Duration::from_secs(10),
        backoff_max: Duration::from_secs(10),
        min_rate_window: Duration::from_millis(1),
        ..options(8)
    };
    let mut fetch = HttpFetch::new(&url, options).expect("url");
    let err = read_err(&mut fetch);
    assert!(
        matches!(&err, http::Error::TooSlow { received: 0, last: Some(last), .. } if matches!(**last, http::Error::Request { .. })),
        "{err:?}"
    );
}

#[test]
fn issue_14_tls_to_a_plain_http_port_is_final() {
    let server = Server::start();
    server.put("/b", bundle(1000, 18));
    let mut fetch = HttpFetch::new(&format!("https://127.0.0.1:{}/b", server.port()), options(3)).expect("url");
    let err = read_err(&mut fetch);
    assert!(matches!(err, http::Error::Request { .. }), "{err:?}");
    assert!(err.is_final(), "{err:?}");
    // The handshake was answered (with a plain 400) once, and not tried again.
    let statuses: Vec<_> = server.requests().into_iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400]);
    assert_eq!(fetch.stats().retries, 0);
}
