//! One shutdown signal for the whole process (after mini-redis'
//! `shutdown.rs`): a [`Shutdown`] is cloned into every task and loop that
//! must stop; async code awaits [`Shutdown::wait`], the synchronous Kafka
//! runtime polls [`Shutdown::is_triggered`] (an atomic load per loop turn).
//!
//! Guarantees: SIGINT/SIGTERM are listened for once per process — the
//! first [`Shutdown::on_signals`] installs the handlers (on a small thread
//! of its own, so callers need no runtime), later calls get a clone of the
//! same signal. Handlers are installed only when a command asks, so a
//! command that never does keeps the default (terminating) behaviour.
//! Triggering is sticky: once triggered, every clone and every later
//! `wait` sees it at once.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;

/// Why the signal handlers could not be installed (one kind).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("cannot install signal handlers: {0}")]
pub struct ShutdownError(String);

/// A process-wide "stop now" signal; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal nothing triggers yet (tests, embedding programs).
    pub fn new() -> Self {
        let (tx, _) = watch::channel(false);
        Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            tx: Arc::new(tx),
        }
    }

    /// The process's signal, triggered by the first SIGINT or SIGTERM.
    pub fn on_signals() -> Result<Shutdown, ShutdownError> {
        static SIGNALS: OnceLock<Result<Shutdown, ShutdownError>> = OnceLock::new();
        SIGNALS.get_or_init(listen).clone()
    }

    /// Stops everything that holds a clone.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }

    /// Whether a stop was asked for.
    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The flag itself, for loops that take one.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Resolves once triggered (at once if it already was).
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let tx = self.tx.clone();
        let mut rx = tx.subscribe();
        async move {
            // The sender lives in `tx`, so this only ends by a trigger.
            let _ = rx.wait_for(|stop| *stop).await;
            drop(tx);
        }
    }
}

/// Installs the handlers on their own thread and triggers on the first signal.
fn listen() -> Result<Shutdown, ShutdownError> {
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ShutdownError(e.to_string()))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async move {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{signal, SignalKind};
                    let (mut term, mut int) = match (
                        signal(SignalKind::terminate()),
                        signal(SignalKind::interrupt()),
                    ) {
                        (Ok(t), Ok(i)) => (t, i),
                        (Err(e), _) | (_, Err(e)) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                #[cfg(not(unix))]
                {
                    let _ = ready_tx.send(Ok(()));
                    let _ = tokio::signal::ctrl_c().await;
                }
                tracing::info!("Signal received: stopping.");
                s.trigger();
            })
        })
        .map_err(|e| ShutdownError(e.to_string()))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(shutdown),
        Ok(Err(e)) => Err(ShutdownError(e)),
        Err(_) => Err(ShutdownError("the signal thread ended".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_trigger_reaches_every_clone_and_later_waits() {
        let s = Shutdown::new();
        let c = s.clone();
        let waiting = tokio::spawn(c.wait());
        assert!(!c.is_triggered());
        s.trigger();
        waiting.await.expect("the waiter ends");
        assert!(c.is_triggered() && c.flag().load(Ordering::SeqCst));
        // Sticky: a wait that starts afterwards resolves at once.
        c.wait().await;
    }

    #[tokio::test]
    async fn an_untriggered_wait_stays_pending() {
        let s = Shutdown::new();
        let mut w = std::pin::pin!(s.wait());
        let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(w.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
        drop(s);
        // Dropping the handle does not fire it either: the future owns a sender.
        let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(w.as_mut().poll(cx))).await;
        assert!(polled.is_pending());
    }

    #[test]
    fn signals_are_installed_once() {
        let a = Shutdown::on_signals().expect("handlers install");
        let b = Shutdown::on_signals().expect("the same signal");
        assert!(Arc::ptr_eq(&a.flag, &b.flag));
    }
}
