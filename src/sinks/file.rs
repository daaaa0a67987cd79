//! The embedded sink: one JSON Lines file per output topic,
//! `DIR/<topic>.jsonl` with the `reflex.` prefix dropped. All five files are
//! created (empty when nothing was emitted) so consumers can rely on them.

use super::{Output, Sink, SinkError, Topic};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes each topic to `DIR/<short name>.jsonl`.
pub struct FileSink {
    files: Vec<(Topic, PathBuf, BufWriter<File>)>,
    buf: Vec<u8>,
}

impl FileSink {
    /// Creates (truncating) the five files in `dir`, creating `dir` if needed.
    pub fn create(dir: &Path) -> Result<Self, SinkError> {
        let io = |path: &Path, source| SinkError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut files = Vec::new();
        for t in Topic::ALL {
            let p = dir.join(format!("{}.jsonl", t.short_name()));
            let f = File::create(&p).map_err(|e| io(&p, e))?;
            files.push((t, p, BufWriter::with_capacity(256 * 1024, f)));
        }
        Ok(FileSink {
            files,
            buf: Vec::with_capacity(4096),
        })
    }
}

impl Sink for FileSink {
    fn write(&mut self, out: &Output) -> Result<(), SinkError> {
        let topic = out.topic();
        self.buf.clear();
        out.to_json(&mut self.buf)
            .map_err(|source| SinkError::Encode { topic, source })?;
        self.buf.push(b'\n');
        if let Some((_, p, w)) = self.files.iter_mut().find(|f| f.0 == topic) {
            w.write_all(&self.buf).map_err(|source| SinkError::Io {
                path: p.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        for (_, p, w) in &mut self.files {
            w.flush().map_err(|source| SinkError::Io {
                path: p.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }
}
