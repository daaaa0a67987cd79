//! A minimal Confluent Schema Registry client: `GET /schemas/ids/{id}` over
//! plain HTTP/1.1, with every answer cached for the life of the process
//! (a schema id is immutable in a registry, so the cache never goes stale).
//!
//! Blocking by design: it runs on the Kafka runtime's consumer thread, once
//! per unknown schema id. Failures are errors to branch on
//! ([`RegistryErrorKind`]): a missing id becomes a dead letter, an
//! unreachable registry is retried by the next message with that id.

use apache_avro::Schema;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryErrorKind {
    /// The URL is not `http://host[:port][/path]`.
    BadUrl,
    /// Connecting, sending or reading failed (retryable).
    Unreachable,
    /// The registry does not know the id (HTTP 404).
    NotFound,
    /// Any other HTTP status or an unreadable answer.
    BadResponse,
    /// The schema text does not parse as Avro.
    BadSchema,
}

/// A Schema Registry failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("schema registry ({kind:?}): {message}")]
pub struct RegistryError {
    pub kind: RegistryErrorKind,
    pub message: String,
}

fn err(kind: RegistryErrorKind, message: impl Into<String>) -> RegistryError {
    RegistryError {
        kind,
        message: message.into(),
    }
}

/// A caching registry client.
#[derive(Debug)]
pub struct SchemaRegistry {
    host: String,
    port: u16,
    base_path: String,
    timeout: Duration,
    cache: Mutex<HashMap<u32, Arc<Schema>>>,
}

impl SchemaRegistry {
    /// A client for `url` (`http://host:port[/prefix]`).
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            err(
                RegistryErrorKind::BadUrl,
                format!("{url}: only http:// is supported"),
            )
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| err(RegistryErrorKind::BadUrl, format!("{url}: bad port")))?,
            ),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(err(RegistryErrorKind::BadUrl, format!("{url}: no host")));
        }
        Ok(SchemaRegistry {
            host: host.to_string(),
            port,
            base_path: path.to_string(),
            timeout: Duration::from_secs(5),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The schema registered under `id`, from the cache or the registry.
    pub fn schema(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(s) = self.cache.lock().ok().and_then(|c| c.get(&id).cloned()) {
            return Ok(s);
        }
        let text = self.fetch(id)?;
        let schema = Arc::new(
            Schema::parse_str(&text)
                .map_err(|e| err(RegistryErrorKind::BadSchema, e.to_string()))?,
        );
        if let Ok(mut c) = self.cache.lock() {
            c.insert(id, schema.clone());
        }
        Ok(schema)
    }

    /// Number of cached schemas.
    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn fetch(&self, id: u32) -> Result<String, RegistryError> {
        let unreachable = |e: std::io::Error| err(RegistryErrorKind::Unreachable, e.to_string());
        let addr = format!("{}:{}", self.host, self.port);
        let mut stream = TcpStream::connect(&addr).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(self.timeout))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(unreachable)?;
        let req = format!(
            "GET {}/schemas/ids/{id} HTTP/1.1\r\nHost: {}\r\nAccept: application/vnd.schemaregistry.v1+json, application/json\r\nConnection: close\r\n\r\n",
            self.base_path, self.host
        );
        stream.write_all(req.as_bytes()).map_err(unreachable)?;
        let mut r = BufReader::new(stream);
        let mut status = String::new();
        r.read_line(&mut status).map_err(unreachable)?;
        let code: u16 = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                err(
                    RegistryErrorKind::BadResponse,
                    format!("bad status line {status:?}"),
                )
            })?;
        let mut length = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).map_err(unreachable)? == 0 {
                break;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "content-length" {
                    length = v.parse::<usize>().ok();
                } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).map_err(unreachable)?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| err(RegistryErrorKind::BadResponse, "bad chunk size"))?;
                if n == 0 {
                    break;
                }
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).map_err(unreachable)?;
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            r.read_exact(&mut body).map_err(unreachable)?;
        } else {
            r.read_to_end(&mut body).map_err(unreachable)?;
        }
        match code {
            200 => {}
            404 => {
                return Err(err(
                    RegistryErrorKind::NotFound,
                    format!("schema id {id} is not registered"),
                ))
            }
            c => {
                return Err(err(
                    RegistryErrorKind::BadResponse,
                    format!("HTTP {c} for schema id {id}"),
                ))
            }
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            schema: String,
        }
        serde_json::from_slice::<Answer>(&body)
            .map(|a| a.schema)
            .map_err(|e| err(RegistryErrorKind::BadResponse, format!("body: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let r = SchemaRegistry::new("http://reg:8081/api/").unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.base_path.as_str()),
            ("reg", 8081, "/api")
        );
        assert_eq!(
            SchemaRegistry::new("https://x").unwrap_err().kind,
            RegistryErrorKind::BadUrl
        );
        assert_eq!(SchemaRegistry::new("http://h").unwrap().port, 80);
    }
}
