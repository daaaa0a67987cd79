//! CSV front end of `reflex anomalies`: `timestamp,value` in,
//! `timestamp,value,anomaly_score` out, one row per input row, streaming.

use std::io::Write;
use std::path::Path;

use super::config::AnomalyConfig;
use super::detector::SeriesDetector;

/// What went wrong, for the caller to pick an exit code (bad input => 2, io => 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyCliErrorKind {
    /// The input is malformed (header, timestamp or value); exit code 2.
    BadInput,
    /// Reading or writing failed; exit code 1.
    Io,
}

/// Error of [`run_csv`].
#[derive(Debug, thiserror::Error)]
pub enum AnomalyCliError {
    /// Could not open, read or write a file.
    #[error("{path}: {source}")]
    Io {
        /// File (or `<stdout>`) concerned.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The CSV is malformed at the given 1-based line.
    #[error("{path}:{line}: {message}")]
    BadInput {
        /// Input file.
        path: String,
        /// 1-based line number in the input file (1 = header).
        line: u64,
        /// What is wrong.
        message: String,
    },
}

impl AnomalyCliError {
    /// The kind, to choose an exit code.
    pub fn kind(&self) -> AnomalyCliErrorKind {
        match self {
            AnomalyCliError::Io { .. } => AnomalyCliErrorKind::Io,
            AnomalyCliError::BadInput { .. } => AnomalyCliErrorKind::BadInput,
        }
    }
}

/// Summary of one run of [`run_csv`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CsvSummary {
    /// Data rows processed.
    pub rows: u64,
    /// Rows whose score reached `alert_level`.
    pub alerts: u64,
    /// Highest score seen.
    pub max_score: f64,
    /// Approximate detector state in bytes.
    pub state_bytes: usize,
}

/// Parses a timestamp: `YYYY-MM-DD HH:MM:SS[.fff]` (UTC, as NAB has them),
/// `YYYY-MM-DDTHH:MM:SS[.fff]`, RFC 3339, or integer epoch milliseconds.
pub fn parse_timestamp_ms(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if t.bytes().all(|b| b.is_ascii_digit())
        || (t.starts_with('-') && t.len() > 1 && t[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        return t.parse::<i64>().ok();
    }
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(dt.timestamp_millis());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt.and_utc().timestamp_millis());
        }
    }
    None
}

/// Runs one detector over `input` (CSV with columns `timestamp,value`) and writes
/// `timestamp,value,anomaly_score` to `output` (stdout when `None`).
pub fn run_csv(
    input: &Path,
    output: Option<&Path>,
    cfg: &AnomalyConfig,
) -> Result<CsvSummary, AnomalyCliError> {
    let in_name = input.display().to_string();
    let file = std::fs::File::open(input).map_err(|source| AnomalyCliError::Io {
        path: in_name.clone(),
        source,
    })?;
    let (sink, out_name): (Box<dyn Write>, String) = match output {
        Some(p) => {
            let f = std::fs::File::create(p).map_err(|source| AnomalyCliError::Io {
                path: p.display().to_string(),
                source,
            })?;
            (
                Box::new(std::io::BufWriter::new(f)),
                p.display().to_string(),
            )
        }
        None => (
            Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            "<stdout>".to_string(),
        ),
    };
    run_reader(
        std::io::BufReader::new(file),
        &in_name,
        sink,
        &out_name,
        cfg,
    )
}

fn csv_err(path: &str, line: u64, e: &csv::Error) -> AnomalyCliError {
    match e.kind() {
        csv::ErrorKind::Io(io) => AnomalyCliError::Io {
            path: path.to_string(),
            source: std::io::Error::new(io.kind(), io.to_string()),
        },
        _ => AnomalyCliError::BadInput {
            path: path.to_string(),
            line,
            message: e.to_string(),
        },
    }
}

/// [`run_csv`] over arbitrary reader / writer (used by tests).
pub fn run_reader<R: std::io::Read, W: Write>(
    reader: R,
    in_name: &str,
    sink: W,
    out_name: &str,
    cfg: &AnomalyConfig,
) -> Result<CsvSummary, AnomalyCliError> {
    let out_err = |source: std::io::Error| AnomalyCliError::Io {
        path: out_name.to_string(),
        source,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers = rdr.headers().map_err(|e| csv_err(in_name, 1, &e))?.clone();
    let find = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(tcol), Some(vcol)) = (find("timestamp"), find("value")) else {
        return Err(AnomalyCliError::BadInput {
            path: in_name.to_string(),
            line: 1,
            message: format!(
                "header must have columns timestamp,value (got {:?})",
                headers.iter().collect::<Vec<_>>()
            ),
        });
    };
    let mut wtr = csv::Writer::from_writer(sink);
    wtr.write_record(["timestamp", "value", "anomaly_score"])
        .map_err(|e| out_err(std::io::Error::other(e.to_string())))?;
    let mut det = SeriesDetector::new(cfg);
    let mut summary = CsvSummary::default();
    let mut record = csv::StringRecord::new();
    loop {
        let line = rdr.position().line();
        match rdr.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(in_name, line.max(2), &e)),
        }
        let line = record.position().map_or(line, |p| p.line());
        let bad = |message: String| AnomalyCliError::BadInput {
            path: in_name.to_string(),
            line,
            message,
        };
        let ts_text = record.get(tcol).unwrap_or("");
        let v_text = record.get(vcol).unwrap_or("");
        let ts =
            parse_timestamp_ms(ts_text).ok_or_else(|| bad(format!("bad timestamp {ts_text:?}")))?;
        let v: f64 = v_text
            .parse()
            .map_err(|_| bad(format!("bad value {v_text:?}")))?;
        let score = det.update(ts, v);
        summary.rows += 1;
        if score >= cfg.alert_level {
            summary.alerts += 1;
        }
        summary.max_score = summary.max_score.max(score);
        let score_text = format!("{score}");
        wtr.write_record([ts_text, v_text, score_text.as_str()])
            .map_err(|e| out_err(std::io::Error::other(e.to_string())))?;
    }
    wtr.flush().map_err(out_err)?;
    summary.state_bytes = det.state_bytes();
    Ok(summary)
}
