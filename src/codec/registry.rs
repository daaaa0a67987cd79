//! A minimal Confluent Schema Registry client: `GET /schemas/ids/{id}` over
//! HTTP or HTTPS (the shared client of [`crate::http`]: rustls, certificates
//! always verified, against `ca_file` when configured), each fetch retried
//! per [`RegistryOptions::retry`], and every answer cached for the life of
//! the process (a schema id is immutable in a registry, so the cache never
//! goes stale).
//!
//! Blocking by design: it runs on the Kafka runtime's consumer thread, once
//! per unknown schema id (the client drives its own single-threaded tokio
//! runtime). Failures are errors to branch on ([`RegistryErrorKind`]): a
//! missing id becomes a dead letter, an unreachable registry (or one whose
//! certificate is refused) is retried by the caller until it answers.

use crate::http::{ClientOptions, HttpError, RetryPolicy};
use apache_avro::Schema;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryErrorKind {
    /// The URL is not `http(s)://host[:port][/path]`, or the client cannot
    /// be built (e.g. an unreadable `ca_file`).
    BadUrl,
    /// Connecting, sending or reading failed, or no answer in time (retryable).
    Unreachable,
    /// The registry's TLS certificate was refused (expired, wrong host,
    /// unknown issuer); retryable, as the certificate may be rotated.
    Certificate,
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
    /// Requests made for the failed lookup (0 when none was sent).
    pub attempts: u32,
}

fn err(kind: RegistryErrorKind, message: impl Into<String>) -> RegistryError {
    RegistryError {
        kind,
        message: message.into(),
        attempts: 0,
    }
}

/// How the client talks to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Bound of one request.
    pub timeout: Duration,
    /// PEM CA bundle trusted for an `https` registry instead of the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// Attempts per lookup and the backoff between them.
    pub retry: RetryPolicy,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            timeout: Duration::from_secs(5),
            ca_file: None,
            retry: RetryPolicy {
                max_attempts: 3,
                min_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(2),
            },
        }
    }
}

/// A caching registry client.
#[derive(Debug)]
pub struct SchemaRegistry {
    base: reqwest::Url,
    opts: RegistryOptions,
    client: reqwest::Client,
    /// Drives the requests; `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    cache: Mutex<HashMap<u32, Arc<Schema>>>,
}

impl SchemaRegistry {
    /// A client for `url` (`http(s)://host:port[/prefix]`) with the default options.
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        Self::with_options(url, RegistryOptions::default())
    }

    /// A client for `url` with `opts`.
    pub fn with_options(url: &str, opts: RegistryOptions) -> Result<Self, RegistryError> {
        let bad = |m: String| err(RegistryErrorKind::BadUrl, format!("{url}: {m}"));
        let mut base = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(bad("must be an http:// or https:// URL".into()));
        }
        // `…/prefix/` and `…/prefix` both mean the prefix.
        let path = base.path().trim_end_matches('/').to_string();
        base.set_path(&path);
        let client = crate::http::client(&ClientOptions {
            timeout: opts.timeout,
            ca_file: opts.ca_file.clone(),
            user_agent: "reflex",
        })
        .map_err(|e| bad(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad(format!("starting the client runtime: {e}")))?;
        Ok(SchemaRegistry {
            base,
            opts,
            client,
            rt: Some(rt),
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

    /// The lookup URL of `id`.
    fn url_of(&self, id: u32) -> String {
        format!(
            "{}/schemas/ids/{id}",
            self.base.as_str().trim_end_matches('/')
        )
    }

    /// Fetches with retries, blocking the calling thread.
    fn fetch(&self, id: u32) -> Result<String, RegistryError> {
        let url = self.url_of(id);
        let rt = self.rt.as_ref().ok_or_else(|| {
            err(
                RegistryErrorKind::Unreachable,
                "the client is shutting down",
            )
        })?;
        let run = || {
            rt.block_on(self.opts.retry.run(
                || get_schema(&self.client, &url, self.opts.timeout),
                HttpError::retryable,
                |error, attempt, delay| {
                    tracing::warn!(%error, url, attempt, ?delay, "Schema Registry request failed; retrying.");
                },
            ))
        };
        // Called from inside an async runtime, `block_on` would panic: run on
        // a helper thread then.
        let done = if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| s.spawn(run).join()).map_err(|_| {
                err(
                    RegistryErrorKind::Unreachable,
                    "the request thread panicked",
                )
            })?
        } else {
            run()
        };
        let attempts = done.attempts;
        done.result.map_err(|e| {
            let kind = match &e {
                HttpError::Status(404) => RegistryErrorKind::NotFound,
                HttpError::Status(_) | HttpError::BadResponse(_) => RegistryErrorKind::BadResponse,
                HttpError::Certificate(_) => RegistryErrorKind::Certificate,
                HttpError::Connect(_) | HttpError::Timeout(_) => RegistryErrorKind::Unreachable,
                HttpError::Config(_) => RegistryErrorKind::BadUrl,
            };
            let message = match kind {
                RegistryErrorKind::NotFound => format!("schema id {id} is not registered"),
                _ => format!("{url}: {e} (after {attempts} attempt(s))"),
            };
            RegistryError {
                kind,
                message,
                attempts,
            }
        })
    }
}

impl Drop for SchemaRegistry {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside an async context.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// One `GET` of a schema by id: the `schema` text of the answer.
async fn get_schema(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<String, HttpError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        schema: String,
    }
    let resp = client
        .get(url)
        .header(
            reqwest::header::ACCEPT,
            "application/vnd.schemaregistry.v1+json, application/json",
        )
        .send()
        .await
        .map_err(|e| HttpError::from_reqwest(&e, timeout))?;
    if !resp.status().is_success() {
        return Err(HttpError::Status(resp.status().as_u16()));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| HttpError::from_reqwest(&e, timeout))?;
    serde_json::from_slice::<Answer>(&body)
        .map(|a| a.schema)
        .map_err(|e| HttpError::BadResponse(format!("body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let r = SchemaRegistry::new("http://reg:8081/api/").unwrap();
        assert_eq!(r.url_of(7), "http://reg:8081/api/schemas/ids/7");
        let r = SchemaRegistry::new("https://reg").unwrap();
        assert_eq!(r.url_of(7), "https://reg/schemas/ids/7");
        assert_eq!(
            SchemaRegistry::new("ftp://x").unwrap_err().kind,
            RegistryErrorKind::BadUrl
        );
        assert_eq!(
            SchemaRegistry::new("not a url").unwrap_err().kind,
            RegistryErrorKind::BadUrl
        );
    }
}
