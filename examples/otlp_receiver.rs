//! A counting OTLP/gRPC receiver (traces and metrics), for measuring the
//! cost of telemetry export without a collector:
//!
//! ```sh
//! cargo run --release --example otlp_receiver -- 127.0.0.1:4317 &
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 reflex run --input events.jsonl
//! ```
//!
//! Prints what it received every time its count changes, and on ctrl-c.

#[path = "../tests/support/otlp.rs"]
mod otlp;

use std::sync::atomic::Ordering;

#[tokio::main]
async fn main() {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".to_string());
    let (addr, rec) = otlp::start_on(&bind, false).await;
    println!("otlp receiver listening on {addr}");
    let report = |rec: &otlp::Received| {
        println!(
            "spans {} metric exports {}",
            rec.span_count.load(Ordering::SeqCst),
            rec.metric_requests.load(Ordering::SeqCst)
        )
    };
    let mut last = (0, 0);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                let now = (
                    rec.span_count.load(Ordering::SeqCst),
                    rec.metric_requests.load(Ordering::SeqCst),
                );
                if now != last {
                    last = now;
                    report(&rec);
                }
            }
        }
    }
    report(&rec);
}
