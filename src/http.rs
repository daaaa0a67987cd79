//! The one outbound HTTP(S) stack of reflex (the webhook executor and the
//! Schema Registry client): `reqwest` over rustls with the ring crypto
//! provider, and one retry helper built on `backon`.
//!
//! Guarantees:
//! - Server certificates are always verified (there is no switch to turn
//!   that off). With a `ca_file` the PEM bundle in it is the only set of
//!   trusted roots; without one the platform's roots are used.
//! - One crypto stack is linked: [`install_crypto_provider`] installs ring
//!   once per process (a provider installed earlier, e.g. by kube, is kept).
//! - Failures carry a kind ([`HttpError`] variants) to branch on, never
//!   message text; a refused certificate is its own kind
//!   ([`HttpError::Certificate`]) and says what is wrong with it.
//! - [`RetryPolicy::run`] retries only what [`HttpError::retryable`] (or the
//!   caller's predicate) allows, with exponential backoff between
//!   `min_delay` and `max_delay`, at most `max_attempts` attempts, and
//!   reports how many attempts it made.

use backon::{BlockingRetryable, ExponentialBuilder, Retryable};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Installs rustls' ring provider as the process default, once. A provider
/// already installed (by kube or an earlier call) is left in place.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err = some provider is installed already: that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// How a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Bound of one attempt: connect, TLS handshake, request and response.
    pub timeout: Duration,
    /// PEM file of the CA certificates to trust instead of the platform's.
    pub ca_file: Option<PathBuf>,
    /// Sent as `User-Agent`.
    pub user_agent: &'static str,
}

/// Why a request failed (or a client could not be built).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The client configuration is unusable (unreadable CA file, bad URL).
    #[error("bad HTTP client configuration: {0}")]
    Config(String),
    /// The server's TLS certificate was refused (expired, wrong host name,
    /// unknown issuer, ...).
    #[error("TLS certificate refused: {0}")]
    Certificate(String),
    /// Connecting, the TLS handshake, sending or reading failed.
    #[error("connection failed: {0}")]
    Connect(String),
    /// No complete answer within the attempt's timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The server answered with a status that is not a success.
    #[error("HTTP {0}")]
    Status(u16),
    /// The answer's body is unreadable or not what was expected.
    #[error("bad response: {0}")]
    BadResponse(String),
}

impl HttpError {
    /// Whether another attempt may succeed: connection trouble, timeouts,
    /// refused certificates (they get rotated), 429 and 5xx.
    pub fn retryable(&self) -> bool {
        match self {
            HttpError::Status(s) => *s == 429 || *s >= 500,
            HttpError::Certificate(_) | HttpError::Connect(_) | HttpError::Timeout(_) => true,
            HttpError::Config(_) | HttpError::BadResponse(_) => false,
        }
    }

    /// Classifies a reqwest failure of a request bounded by `timeout`.
    pub fn from_reqwest(e: &reqwest::Error, timeout: Duration) -> Self {
        if let Some(cert) = certificate_problem(e) {
            return HttpError::Certificate(cert);
        }
        if e.is_timeout() {
            return HttpError::Timeout(timeout);
        }
        if let Some(s) = e.status() {
            return HttpError::Status(s.as_u16());
        }
        if e.is_builder() {
            return HttpError::Config(chain(e));
        }
        if e.is_decode() {
            return HttpError::BadResponse(chain(e));
        }
        HttpError::Connect(chain(e))
    }
}

/// The error and its sources, `: `-joined (reqwest's own text is terse).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

/// The rustls certificate error somewhere in `e`'s source chain, described.
fn certificate_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return describe_tls(r);
        }
        // `io::Error::source` skips the error it wraps (and TLS streams
        // wrap the rustls error in an io::Error, sometimes twice).
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            let inner: &(dyn std::error::Error + 'static) = inner;
            if let Some(found) = certificate_problem(inner) {
                return Some(found);
            }
        }
        cur = err.source();
    }
    None
}

fn describe_tls(e: &rustls::Error) -> Option<String> {
    use rustls::CertificateError as C;
    let what = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "the server certificate has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the server certificate is not valid yet"
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the server certificate is not valid for this host name"
            }
            C::UnknownIssuer => {
                "the server certificate is signed by an unknown issuer (configure ca_file)"
            }
            C::Revoked => "the server certificate is revoked",
            C::BadSignature => "the server certificate has a bad signature",
            _ => "the server certificate is invalid",
        },
        rustls::Error::InvalidCertRevocationList(_) => "a certificate revocation list is invalid",
        _ => return None,
    };
    Some(format!("{what} ({e})"))
}

/// Reads a PEM bundle of CA certificates.
fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, HttpError> {
    let pem = std::fs::read(path)
        .map_err(|e| HttpError::Config(format!("ca_file {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| HttpError::Config(format!("ca_file {}: {}", path.display(), chain(&e))))?;
    if certs.is_empty() {
        return Err(HttpError::Config(format!(
            "ca_file {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// A client for `opts`: rustls (ring), certificates verified against the
/// CA file or the platform's roots, each request bounded by `timeout`.
pub fn client(opts: &ClientOptions) -> Result<reqwest::Client, HttpError> {
    install_crypto_provider();
    let mut b = reqwest::Client::builder()
        .tls_backend_rustls()
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout)
        // A redirect is an answer like any other non-2xx (a POST must not
        // silently turn into a GET somewhere else).
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(opts.user_agent);
    if let Some(path) = &opts.ca_file {
        b = b.tls_certs_only(read_ca_file(path)?);
    }
    b.build()
        .map_err(|e| HttpError::Config(format!("building the HTTP client: {}", chain(&e))))
}

/// How often and how fast a failed request is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 0 = no limit (for loops that
    /// stop through their `retryable` predicate; configuration asks for >= 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles per retry.
    pub min_delay: Duration,
    /// Largest delay between two attempts.
    pub max_delay: Duration,
}

/// What a retried operation gave, and how many attempts it took.
#[derive(Debug)]
pub struct Retried<T, E> {
    /// The last attempt's result.
    pub result: Result<T, E>,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
}

impl RetryPolicy {
    /// The policy as a backon builder (no jitter: delays are as configured).
    pub fn backoff(&self) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay.max(self.min_delay))
            .with_factor(2.0);
        if self.max_attempts == 0 {
            builder.without_max_times()
        } else {
            builder.with_max_times(self.max_attempts.saturating_sub(1) as usize)
        }
    }

    /// Runs `op` until it succeeds, fails with an error `retryable` refuses,
    /// or `max_attempts` are used up. `on_retry(error, attempt, delay)` is
    /// called before each wait (for logs).
    pub async fn run<T, E, Fut>(
        &self,
        op: impl FnMut() -> Fut,
        retryable: impl Fn(&E) -> bool,
        mut on_retry: impl FnMut(&E, u32, Duration),
    ) -> Retried<T, E>
    where
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let attempts = AtomicU32::new(0);
        let mut op = op;
        let result = (|| {
            attempts.fetch_add(1, Ordering::Relaxed);
            op()
        })
        .retry(self.backoff())
        .when(|e| retryable(e))
        .notify(|e, d| on_retry(e, attempts.load(Ordering::Relaxed), d))
        .await;
        Retried {
            result,
            attempts: attempts.load(Ordering::Relaxed),
        }
    }

    /// The blocking form of [`RetryPolicy::run`] (sleeps the thread);
    /// `max_attempts = 0` retries for as long as `retryable` allows.
    pub fn run_blocking<T, E>(
        &self,
        op: impl FnMut() -> Result<T, E>,
        retryable: impl Fn(&E) -> bool,
        mut on_retry: impl FnMut(&E, u32, Duration),
    ) -> Retried<T, E> {
        let attempts = AtomicU32::new(0);
        let mut op = op;
        let result = (|| {
            attempts.fetch_add(1, Ordering::Relaxed);
            op()
        })
        .retry(self.backoff())
        .sleep(std::thread::sleep)
        .when(|e| retryable(e))
        .notify(|e, d| on_retry(e, attempts.load(Ordering::Relaxed), d))
        .call();
        Retried {
            result,
            attempts: attempts.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn retries_only_retryable_errors_up_to_max_attempts() {
        let r: Retried<(), HttpError> = policy(4)
            .run(
                || async { Err(HttpError::Status(503)) },
                HttpError::retryable,
                |_, _, _| {},
            )
            .await;
        assert_eq!((r.attempts, r.result), (4, Err(HttpError::Status(503))));
        let r: Retried<(), HttpError> = policy(4)
            .run(
                || async { Err(HttpError::Status(404)) },
                HttpError::retryable,
                |_, _, _| {},
            )
            .await;
        assert_eq!(r.attempts, 1, "a 404 is final");
        let mut n = 0;
        let r = policy(5).run_blocking(
            || {
                n += 1;
                if n < 3 {
                    Err(HttpError::Timeout(Duration::ZERO))
                } else {
                    Ok(n)
                }
            },
            HttpError::retryable,
            |_, _, _| {},
        );
        assert_eq!((r.attempts, r.result), (3, Ok(3)));
    }

    #[test]
    fn error_kinds_decide_retries() {
        assert!(HttpError::Status(429).retryable());
        assert!(HttpError::Status(500).retryable());
        assert!(!HttpError::Status(400).retryable());
        assert!(HttpError::Certificate("expired".into()).retryable());
        assert!(!HttpError::Config("x".into()).retryable());
    }

    #[test]
    fn an_unreadable_or_empty_ca_file_is_a_config_error() {
        let opts = |p: &str| ClientOptions {
            timeout: Duration::from_secs(1),
            ca_file: Some(PathBuf::from(p)),
            user_agent: "t",
        };
        assert!(matches!(
            client(&opts("/nonexistent/ca.pem")),
            Err(HttpError::Config(_))
        ));
        let dir = std::env::temp_dir().join(format!("reflex-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate\n").unwrap();
        let r = client(&opts(dir.to_str().unwrap()));
        let _ = std::fs::remove_file(&dir);
        assert!(matches!(r, Err(HttpError::Config(_))), "{r:?}");
    }
}
