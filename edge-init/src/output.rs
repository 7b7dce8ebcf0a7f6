//! Services' output: read from each service's pipe, cut into lines, and written to the kernel log with the
//! service's name in front, or to a file that is rotated once (to `.1`) before it would pass its cap.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use crate::error::{chain, Error, Result};
use crate::log_sink::Sink;
use crate::services::Output;
use crate::sys;

/// Longer lines are cut here.
const MAX_LINE: usize = 4096;

/// Where one service's lines go.
#[derive(Debug)]
enum Dest {
    Log,
    File { path: PathBuf, max: u64, file: Option<File>, size: u64 },
}

/// The read end of one service's output.
#[derive(Debug)]
pub struct Reader {
    /// The service it belongs to (its index).
    pub idx: usize,
    name: String,
    fd: OwnedFd,
    partial: Vec<u8>,
    dest: Dest,
}

impl Reader {
    /// A reader of service `idx`'s pipe `fd`.
    pub fn new(idx: usize, name: &str, fd: OwnedFd, output: &Output) -> Reader {
        let dest = match output {
            Output::Kmsg(_) => Dest::Log,
            Output::File { file, max_bytes } => Dest::File { path: file.clone(), max: *max_bytes, file: None, size: 0 },
        };
        Reader { idx, name: name.to_owned(), fd, partial: Vec::new(), dest }
    }

    /// The pipe, to poll.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads what is there, up to a pipe's worth (64 KiB) so that a service that never stops writing cannot hold
    /// the loop, and passes on each whole line; `false` once every writer has closed the pipe.
    pub fn readable(&mut self, sink: &Sink) -> bool {
        let mut buf = [0u8; 4096];
        for _ in 0..16 {
            match sys::read(self.fd.as_fd(), &mut buf) {
                Ok(0) => {
                    if !self.partial.is_empty() {
                        let line = std::mem::take(&mut self.partial);
                        self.emit(sink, &line);
                    }
                    return false;
                }
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = self.partial.drain(..=pos).collect();
                        self.emit(sink, &line[..line.len() - 1]);
                    }
                    if self.partial.len() >= MAX_LINE {
                        let line = std::mem::take(&mut self.partial);
                        self.emit(sink, &line);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("{}: output: {e}", self.name);
                    return false;
                }
            }
        }
        true
    }

    fn emit(&mut self, sink: &Sink, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        match &mut self.dest {
            Dest::Log => sink.service_line(&self.name, &text),
            Dest::File { path, max, file, size } => {
                if let Err(e) = append(path, *max, file, size, text.as_bytes()) {
                    // The line is not lost: it goes to the kernel log instead.
                    log::warn!("{}: {}; the line goes to the kernel log", self.name, chain(&e));
                    *file = None;
                    sink.service_line(&self.name, &text);
                }
            }
        }
    }
}

/// Appends one line to `path`, first moving it to `path.1` when the line would take it past `max`.
fn append(path: &PathBuf, max: u64, file: &mut Option<File>, size: &mut u64, line: &[u8]) -> Result<()> {
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::OpenLogFile { path: path.clone(), source })
    };
    let f = match file {
        Some(f) => f,
        None => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| Error::MakeDir { path: dir.to_owned(), source })?;
            }
            let f = open()?;
            *size = f.metadata().map_err(|source| Error::OpenLogFile { path: path.clone(), source })?.len();
            file.insert(f)
        }
    };
    let len = line.len() as u64 + 1;
    if *size + len > max && *size > 0 {
        let mut old = path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(path, &old).map_err(|source| Error::RotateLogFile { path: path.clone(), source })?;
        *f = open()?;
        *size = 0;
    }
    let mut rec = Vec::with_capacity(line.len() + 1);
    rec.extend_from_slice(line);
    rec.push(b'\n');
    f.write_all(&rec).map_err(|source| Error::AppendLogFile { path: path.clone(), source })?;
    *size += len;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_file_is_rotated_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log/app.log");
        let (mut file, mut size) = (None, 0);
        let line = [b'x'; 99];
        for _ in 0..25 {
            append(&path, 1000, &mut file, &mut size, &line).expect("append");
        }
        // 25 lines of 100 bytes with a cap of 1000: the last 5 in the file, the 10 before them in `.1`.
        assert_eq!(std::fs::metadata(&path).expect("log").len(), 500);
        assert_eq!(std::fs::metadata(dir.path().join("log/app.log.1")).expect("log.1").len(), 1000);
    }
}
