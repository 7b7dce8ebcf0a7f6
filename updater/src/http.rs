//! Bundles over HTTP(S): Range requests, timeouts, retries with jittered exponential backoff, and detection of a
//! bundle replaced on the server mid-download.
