//! JSON Lines input: one event per line from a file or stdin (`-`).
//!
//! Lines are handed out in batches with their 1-based line numbers (the
//! dead-letter "offset" in embedded mode). `\r\n` endings are accepted;
//! whitespace-only lines carry no event and are counted, not decoded.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// A batch of raw lines: one buffer plus (line number, start, end) spans.
#[derive(Debug, Default)]
pub struct LineBatch {
    pub buf: Vec<u8>,
    pub spans: Vec<(u64, usize, usize)>,
    pub blank: u64,
}

impl LineBatch {
    /// The lines with their numbers.
    pub fn lines(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.spans.iter().map(|&(n, s, e)| (n, &self.buf[s..e]))
    }
}

/// Reads JSON Lines in batches.
pub struct LineReader {
    inner: Box<dyn BufRead + Send>,
    line_no: u64,
    scratch: Vec<u8>,
}

impl LineReader {
    /// Opens `path`, or stdin for `-`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let inner: Box<dyn BufRead + Send> = if path.as_os_str() == "-" {
            Box::new(BufReader::with_capacity(1 << 20, std::io::stdin()))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, File::open(path)?))
        };
        Ok(Self::from_reader(inner))
    }

    /// Reads from any buffered reader.
    pub fn from_reader(inner: Box<dyn BufRead + Send>) -> Self {
        LineReader {
            inner,
            line_no: 0,
            scratch: Vec::new(),
        }
    }

    /// Fills `batch` with up to `max` lines; returns false at end of input.
    pub fn next_batch(&mut self, max: usize, batch: &mut LineBatch) -> std::io::Result<bool> {
        batch.buf.clear();
        batch.spans.clear();
        batch.blank = 0;
        while batch.spans.len() < max {
            self.scratch.clear();
            let n = self.inner.read_until(b'\n', &mut self.scratch)?;
            if n == 0 {
                return Ok(!batch.spans.is_empty() || batch.blank > 0);
            }
            self.line_no += 1;
            let mut line = &self.scratch[..];
            if line.last() == Some(&b'\n') {
                line = &line[..line.len() - 1];
            }
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                batch.blank += 1;
                continue;
            }
            let start = batch.buf.len();
            batch.buf.extend_from_slice(line);
            batch.spans.push((self.line_no, start, batch.buf.len()));
        }
        Ok(true)
    }
}
