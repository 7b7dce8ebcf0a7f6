//! Fuzz target: what an HTTP server sends that the updater reads itself (docs/updater.md, "HTTP"): the status class,
//! `Content-Length`, `Content-Range`, `ETag`, and a redirect's `Location` resolved against the request's URL. The
//! server is not trusted; ureq hands these values over as text.
//!
//! The first byte picks the parser; the rest is the header value (for `Location`: the request's URL, a newline, the
//! value). Beyond "no panic": every value accepted is one the updater can rely on and send back: a length or range
//! written out again parses to the same value, a range is never empty, inverted or past its total, an entity tag
//! sent back in `If-Range` parses to the same tag, and a resolved location is a URL with a scheme.
#![no_main]

use libfuzzer_sys::fuzz_target;
use updater::http::{
    classify_status, parse_content_length, parse_content_range, parse_etag, resolve_location, url_scheme,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 6 == 0 {
        let status = u16::from_le_bytes([rest.first().copied().unwrap_or(0), rest.get(1).copied().unwrap_or(0)]);
        let _ = classify_status(status);
        return;
    }
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match mode % 6 {
        1 => {
            if let Ok(n) = parse_content_length(text) {
                assert_eq!(parse_content_length(&n.to_string()), Ok(n), "{text:?}");
            }
        }
        2 => {
            if let Ok(r) = parse_content_range(text) {
                assert!(r.first < r.end, "an empty or inverted range from {text:?}");
                assert!(r.total.is_none_or(|t| r.end <= t), "a range past its total from {text:?}");
                let total = r.total.map_or("*".to_owned(), |t| t.to_string());
                let again = format!("bytes {}-{}/{total}", r.first, r.end - 1);
                assert_eq!(parse_content_range(&again), Ok(r), "{text:?}");
            }
        }
        3 => {
            if let Ok(tag) = parse_etag(text) {
                assert_eq!(parse_etag(&tag.to_header()).as_ref(), Ok(&tag), "{text:?}");
            }
        }
        4 => {
            if let Some(scheme) = url_scheme(text) {
                assert!(text.starts_with(scheme) && text[scheme.len()..].starts_with("://"), "{text:?}");
            }
        }
        _ => {
            let (base, location) = text.split_once('\n').unwrap_or(("http://10.0.2.100/b/v2.edgeb", text));
            if let Ok(url) = resolve_location(base, location) {
                assert!(url_scheme(&url).is_some(), "{url:?} from {location:?} against {base:?}");
            }
        }
    }
});
