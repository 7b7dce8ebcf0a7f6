//! Where bundle bytes come from: a file, stdin, or an HTTP server (`http`). This is the seam where the network
//! fails, so tests put faulty sources behind it; the install never knows which kind it reads.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A source of bundle bytes.
// An empty source is not a case worth a method: the bundle reader reports it as a truncated header.
#[allow(clippy::len_without_is_empty)]
pub trait Fetch: Send {
    /// The source as the operator named it (a path, `-`, a URL), for messages and the journal.
    fn name(&self) -> &str;
    /// Whether a read may start anywhere (a file, an HTTP server honouring Range); a pipe only reads on, and so
    /// does an HTTP server without Range, which an HTTP source knows only once it has sent its first request.
    fn seekable(&self) -> bool;
    /// The bundle's length, when the source knows it.
    fn len(&mut self) -> io::Result<Option<u64>>;
    /// A reader over bytes `start..end` of the bundle (`end` `None`: to its end). A source that is not seekable
    /// refuses a `start` before its position and skips forward to a later one.
    fn open(&mut self, start: u64, end: Option<u64>) -> io::Result<Box<dyn Read + Send + '_>>;
    /// Bytes received from the source so far, counting every byte received more than once.
    fn bytes_received(&self) -> u64;
}

/// A shared byte counter, cloned into the readers a source hands out.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n` bytes.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The total so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A reader that counts what passes through it.
pub struct Counted<R> {
    inner: R,
    counter: Counter,
}

impl<R: Read> Counted<R> {
    /// Counts the bytes read from `inner` into `counter`.
    pub fn new(inner: R, counter: Counter) -> Counted<R> {
        Counted { inner, counter }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.add(n as u64);
        Ok(n)
    }
}

/// A bundle in a file (or on a block device, such as a USB stick).
pub struct FileFetch {
    name: String,
    path: PathBuf,
    counter: Counter,
}

impl FileFetch {
    /// A file source; nothing is opened until the first read.
    pub fn new(path: PathBuf) -> FileFetch {
        FileFetch { name: path.display().to_string(), path, counter: Counter::default() }
    }
}

impl Fetch for FileFetch {
    fn name(&self) -> &str {
        &self.name
    }
    fn seekable(&self) -> bool {
        true
    }
    fn len(&mut self) -> io::Result<Option<u64>> {
        let mut f = File::open(&self.path)?;
        Ok(Some(f.seek(SeekFrom::End(0))?))
    }
    fn open(&mut self, start: u64, end: Option<u64>) -> io::Result<Box<dyn Read + Send + '_>> {
        let mut f = File::open(&self.path)?;
        f.seek(SeekFrom::Start(start))?;
        let counted = Counted::new(f, self.counter.clone());
        Ok(match end {
            Some(end) => Box::new(counted.take(end.saturating_sub(start))),
            None => Box::new(counted),
        })
    }
    fn bytes_received(&self) -> u64 {
        self.counter.get()
    }
}

/// A bundle on a pipe (`-`, standard input): read once, front to back.
pub struct PipeFetch<R: Read + Send> {
    name: String,
    inner: R,
    pos: u64,
    counter: Counter,
}

impl<R: Read + Send> PipeFetch<R> {
    /// A pipe source named `name` (`-` for stdin).
    pub fn new(name: &str, inner: R) -> PipeFetch<R> {
        PipeFetch { name: name.to_owned(), inner, pos: 0, counter: Counter::default() }
    }
}

/// A reader that advances a pipe source's position as it reads.
struct PipeReader<'a, R: Read> {
    inner: &'a mut R,
    pos: &'a mut u64,
    left: Option<u64>,
    counter: Counter,
}

impl<R: Read> Read for PipeReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = match self.left {
            Some(0) => return Ok(0),
            Some(l) => buf.len().min(usize::try_from(l).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..want])?;
        *self.pos += n as u64;
        self.counter.add(n as u64);
        if let Some(l) = &mut self.left {
            *l -= n as u64;
        }
        Ok(n)
    }
}

impl<R: Read + Send> Fetch for PipeFetch<R> {
    fn name(&self) -> &str {
        &self.name
    }
    fn seekable(&self) -> bool {
        false
    }
    fn len(&mut self) -> io::Result<Option<u64>> {
        Ok(None)
    }
    fn open(&mut self, start: u64, end: Option<u64>) -> io::Result<Box<dyn Read + Send + '_>> {
        if start < self.pos {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("a pipe cannot go back from byte {} to byte {start}", self.pos),
            ));
        }
        let skip = start - self.pos;
        let copied = io::copy(&mut (&mut self.inner).take(skip), &mut io::sink())?;
        self.pos += copied;
        self.counter.add(copied);
        if copied < skip {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("the pipe ended at byte {}", self.pos)));
        }
        Ok(Box::new(PipeReader {
            inner: &mut self.inner,
            pos: &mut self.pos,
            left: end.map(|e| e.saturating_sub(start)),
            counter: self.counter.clone(),
        }))
    }
    fn bytes_received(&self) -> u64 {
        self.counter.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: &mut dyn Read) -> Vec<u8> {
        let mut v = Vec::new();
        r.read_to_end(&mut v).expect("read");
        v
    }

    #[test]
    fn a_file_reads_any_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b");
        std::fs::write(&path, b"0123456789").expect("write");
        let mut f = FileFetch::new(path);
        assert_eq!(f.len().expect("len"), Some(10));
        assert_eq!(read_all(&mut *f.open(7, None).expect("open")), b"789");
        assert_eq!(read_all(&mut *f.open(2, Some(5)).expect("open")), b"234");
        assert_eq!(f.bytes_received(), 6);
    }

    #[test]
    fn a_pipe_only_reads_on() {
        let mut p = PipeFetch::new("-", &b"0123456789"[..]);
        assert_eq!(read_all(&mut *p.open(0, Some(3)).expect("open")), b"012");
        assert_eq!(read_all(&mut *p.open(5, Some(7)).expect("skip forward")), b"56");
        assert_eq!(p.open(1, None).err().map(|e| e.kind()), Some(io::ErrorKind::Unsupported));
        assert_eq!(read_all(&mut *p.open(7, None).expect("open")), b"789");
        assert_eq!(p.bytes_received(), 10);
        assert_eq!(p.open(12, None).err().map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
    }
}
