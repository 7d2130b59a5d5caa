//! Line sources for replaying history: files (JSON lines, plain or gzip),
//! stdin and memory. Kafka records are consumed by [`crate::kafka`]. A
//! source yields raw records with their coordinates (`file:line`) so a bad
//! record can be reported precisely.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;

/// Where a record came from, for error messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Coord {
    pub source: Arc<str>,
    pub line: u64,
}

impl std::fmt::Display for Coord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

/// Counts bytes read from the underlying file (for progress bars).
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A line-oriented reader over one file or stdin.
pub struct LineSource {
    name: Arc<str>,
    reader: Box<dyn BufRead + Send>,
    line: u64,
    /// Bytes consumed from the file on disk (compressed size for .gz).
    pub progress: Arc<AtomicU64>,
    /// Size on disk, when known.
    pub size: Option<u64>,
    /// Longest line kept in memory: the rest of a longer line is skipped
    /// as it is read, so one huge line never takes the process's memory.
    max_line: usize,
}

/// Lines kept whole by default (a caller sets its `max_record_bytes`).
const DEFAULT_MAX_LINE: usize = 64 << 20;

impl LineSource {
    /// Open `path` (`-` for stdin); `.gz` files are decompressed.
    pub fn open(path: &str) -> io::Result<LineSource> {
        let progress = Arc::new(AtomicU64::new(0));
        if path == "-" {
            let r = Counting {
                inner: io::stdin(),
                read: progress.clone(),
            };
            return Ok(LineSource {
                name: Arc::from("<stdin>"),
                reader: Box::new(BufReader::with_capacity(1 << 16, r)),
                line: 0,
                progress,
                size: None,
                max_line: DEFAULT_MAX_LINE,
            });
        }
        let file = File::open(path)?;
        let size = file.metadata().ok().map(|m| m.len());
        let counted = Counting {
            inner: file,
            read: progress.clone(),
        };
        let reader: Box<dyn BufRead + Send> =
            if Path::new(path).extension().is_some_and(|e| e == "gz") {
                Box::new(BufReader::with_capacity(
                    1 << 16,
                    MultiGzDecoder::new(BufReader::new(counted)),
                ))
            } else {
                Box::new(BufReader::with_capacity(1 << 16, counted))
            };
        Ok(LineSource {
            name: Arc::from(path),
            reader,
            line: 0,
            progress,
            size,
            max_line: DEFAULT_MAX_LINE,
        })
    }

    /// From an in-memory buffer (tests, the demo).
    pub fn from_bytes(name: &str, data: Vec<u8>) -> LineSource {
        let size = data.len() as u64;
        let progress = Arc::new(AtomicU64::new(0));
        let counted = Counting {
            inner: io::Cursor::new(data),
            read: progress.clone(),
        };
        LineSource {
            name: Arc::from(name),
            reader: Box::new(BufReader::new(counted)),
            line: 0,
            progress,
            size: Some(size),
            max_line: DEFAULT_MAX_LINE,
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Keep at most `max + 1` bytes of a line: a longer one arrives cut at
    /// `max + 1` bytes (so the decoder drops it as `too_large`) and the
    /// rest of it is skipped without being buffered.
    pub fn with_max_line(mut self, max: usize) -> LineSource {
        self.max_line = max;
        self
    }

    /// Read the next line into `buf` (without the newline). Returns its
    /// coordinates, or `None` at end of input. Read errors are returned so
    /// the caller can count them and stop this source only.
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<Coord>> {
        buf.clear();
        let n = read_line_bounded(&mut self.reader, buf, self.max_line.saturating_add(1))?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(Some(Coord {
            source: self.name.clone(),
            line: self.line,
        }))
    }
}

/// `read_until(b'\n')` that keeps at most `keep` bytes of the line in `buf`
/// and consumes the rest of it unbuffered. Returns the bytes consumed.
fn read_line_bounded(r: &mut dyn BufRead, buf: &mut Vec<u8>, keep: usize) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(total);
        }
        let (n, done) = match memchr::memchr(b'\n', avail) {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        let room = keep.saturating_sub(buf.len()).min(n);
        buf.extend_from_slice(avail.get(..room).unwrap_or_default());
        r.consume(n);
        total += n;
        if done {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14, point 13: a huge line is cut and skipped as it is read.
    #[test]
    fn a_line_longer_than_the_limit_is_cut_without_being_buffered() {
        let mut data = b"{\"a\":1}\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 50 << 20));
        data.extend_from_slice(b"\n{\"b\":2}\r\nlast");
        let mut src = LineSource::from_bytes("t", data).with_max_line(1 << 20);
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while let Some(c) = src.next_line(&mut buf).unwrap() {
            assert!(
                buf.capacity() <= 4 << 20,
                "buffer grew to {}",
                buf.capacity()
            );
            lines.push((c.line, buf.len(), buf.first().copied()));
        }
        assert_eq!(
            lines,
            vec![
                (1, 7, Some(b'{')),
                (2, (1 << 20) + 1, Some(b'x')),
                (3, 7, Some(b'{')),
                (4, 4, Some(b'l'))
            ]
        );
    }
}
