//! `reflex templates`: mines a text file, one message per line, and writes
//! `LineId,EventId,EventTemplate` CSV with templates as they stand at the
//! end of the input.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::config::MinerConfig;
use super::miner::{TemplateId, TemplateMiner};

/// What went wrong, for the caller to branch on (exit code, message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplatesCliErrorKind {
    /// The input could not be opened or read.
    Input,
    /// The output could not be created or written.
    Output,
}

/// Error of [`run_file`].
#[derive(Debug, thiserror::Error)]
pub enum TemplatesCliError {
    /// Reading the input failed.
    #[error("cannot read input {path}: {source}")]
    Input {
        /// The input path (`-` for stdin).
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Writing the output failed.
    #[error("cannot write output {path}: {source}")]
    Output {
        /// The output path (`-` for stdout).
        path: String,
        /// The underlying error.
        source: csv::Error,
    },
}

impl TemplatesCliError {
    /// The kind of failure.
    pub fn kind(&self) -> TemplatesCliErrorKind {
        match self {
            TemplatesCliError::Input { .. } => TemplatesCliErrorKind::Input,
            TemplatesCliError::Output { .. } => TemplatesCliErrorKind::Output,
        }
    }
}

/// Summary of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliSummary {
    /// Lines (messages) read.
    pub lines: u64,
    /// Distinct templates the lines were finally assigned to.
    pub templates: usize,
}

/// Mines `input` (`-` = stdin), writes CSV to `output` (stdout when `None`).
pub fn run_file(
    input: &Path,
    output: Option<&Path>,
    cfg: &MinerConfig,
) -> Result<CliSummary, TemplatesCliError> {
    let in_name = input.display().to_string();
    let in_err = |source| TemplatesCliError::Input {
        path: in_name.clone(),
        source,
    };
    let reader: Box<dyn Read> = if input.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(input).map_err(in_err)?)
    };
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let mut miner = TemplateMiner::new(cfg);
    let mut ids: Vec<TemplateId> = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(in_err)?;
        if n == 0 {
            break;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        let line = match std::str::from_utf8(&buf) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(&buf),
        };
        ids.push(miner.observe(&line));
    }

    let out_name = output.map_or_else(|| "-".to_string(), |p| p.display().to_string());
    let out_err = |source| TemplatesCliError::Output {
        path: out_name.clone(),
        source,
    };
    let sink: Box<dyn Write> = match output {
        Some(p) if p.as_os_str() != "-" => {
            Box::new(File::create(p).map_err(|e| out_err(csv::Error::from(e)))?)
        }
        _ => Box::new(io::stdout().lock()),
    };
    let mut w = csv::Writer::from_writer(BufWriter::with_capacity(1 << 16, sink));
    w.write_record(["LineId", "EventId", "EventTemplate"])
        .map_err(out_err)?;
    let mut used = std::collections::HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        let live = miner.resolve(*id);
        used.insert(live);
        let text = miner.template(live).unwrap_or("");
        w.write_record([
            (i + 1).to_string().as_str(),
            live.to_string().as_str(),
            text,
        ])
        .map_err(out_err)?;
    }
    w.flush().map_err(|e| out_err(csv::Error::from(e)))?;
    Ok(CliSummary {
        lines: ids.len() as u64,
        templates: used.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_csv_with_final_templates_and_handles_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.txt");
        let output = dir.path().join("out.csv");
        std::fs::write(
            &input,
            "Took 1 seconds to spawn, \"quoted\"\r\nTook 22 seconds to spawn, \"quoted\"\r\nhello world\n",
        )
        .unwrap();
        let s = run_file(&input, Some(&output), &MinerConfig::default()).unwrap();
        assert_eq!(s.lines, 3);
        assert_eq!(s.templates, 2);
        let mut r = csv::Reader::from_path(&output).unwrap();
        let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(&rows[0][0], "1");
        assert_eq!(rows[0][1], rows[1][1]);
        assert_eq!(&rows[0][2], "Took <*> to spawn, \"quoted\"");
        assert_eq!(&rows[2][2], "hello world");
    }

    #[test]
    fn missing_input_is_an_input_error() {
        let e = run_file(
            Path::new("/nonexistent/definitely/not/here.txt"),
            None,
            &MinerConfig::default(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), TemplatesCliErrorKind::Input);
    }

    #[test]
    fn unwritable_output_is_an_output_error() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.txt");
        std::fs::write(&input, "a b c\n").unwrap();
        let out = dir.path().join("no/such/dir/out.csv");
        let e = run_file(&input, Some(&out), &MinerConfig::default()).unwrap_err();
        assert_eq!(e.kind(), TemplatesCliErrorKind::Output);
    }
}
