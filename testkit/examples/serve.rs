//! `serve`: the files of a directory over HTTP on loopback, with the server the HTTP tests use
//! (`testkit::http_server`: Range, HEAD, ETag, If-Range, keep-alive), so that benchmarks and manual runs install from
//! an `http://` URL exactly the way the tests do (bench/update.sh).
//!
//! `cargo run --release -p testkit --example serve -- DIR [PORT]` reads every regular file directly in DIR into
//! memory, serves each at `/NAME` on 127.0.0.1 (never another address), prints the URL base
//! `http://127.0.0.1:PORT/` as its first line on stdout, and serves until it is killed.
//! PORT may only be 0 (any free port, the default), because the test server always picks its own.
//! Each line read on stdin makes it print one JSON line of totals so far on stdout:
//! `{"requests":N,"connections":N,"bytes_sent":N}`, where `bytes_sent` counts response body bytes, so a benchmark can
//! check what a client says it fetched.

use testkit::http_server;

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: serve DIR [PORT]   (PORT 0, the default, takes any free port on 127.0.0.1)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, port) = match args.as_slice() {
        [dir] => (dir, "0"),
        [dir, port] => (dir, port.as_str()),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match port.parse::<u16>() {
        Ok(0) => {}
        Ok(p) => {
            eprintln!("serve: error: port {p}: the test server always binds a free port of its own; pass 0");
            return ExitCode::from(2);
        }
        Err(_) => {
            eprintln!("serve: error: port {port:?} is not a number from 0 to 65535\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let server = http_server::Server::start();
    match put_files(&server, Path::new(dir)) {
        Ok(0) => eprintln!("serve: warning: {dir} holds no regular files"),
        Ok(_) => {}
        Err(e) => {
            eprintln!("serve: error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{}", server.url("/")).and_then(|()| stdout.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    drop(stdout);

    // Totals on request; at the end of stdin the server carries on, so it can also run with stdin closed.
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
        let totals = format!(
            "{{\"requests\":{},\"connections\":{},\"bytes_sent\":{}}}",
            server.n_requests(),
            server.n_connections(),
            server.bytes_sent()
        );
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{totals}").and_then(|()| stdout.flush()).is_err() {
            break;
        }
    }
    // The connection threads do the serving; this one only waits (park may wake spuriously, hence the loop).
    loop {
        std::thread::park();
    }
}

/// Puts each regular file directly in `dir` at `/NAME`, read whole into memory; returns how many.
fn put_files(server: &http_server::Server, dir: &Path) -> Result<usize, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut n = 0;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let path = entry.path();
        let is_file = std::fs::metadata(&path).map_err(|e| format!("cannot stat {}: {e}", path.display()))?.is_file();
        if !is_file {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            eprintln!("serve: warning: skipping {}: the name is not UTF-8", path.display());
            continue;
        };
        let content = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        eprintln!("serve: /{name}: {} bytes", content.len());
        server.put(&format!("/{name}"), content);
        n += 1;
    }
    Ok(n)
}
