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
}

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
        }
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Read the next line into `buf` (without the newline). Returns its
    /// coordinates, or `None` at end of input. Read errors are returned so
    /// the caller can count them and stop this source only.
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<Coord>> {
        buf.clear();
        let n = self.reader.read_until(b'\n', buf)?;
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
