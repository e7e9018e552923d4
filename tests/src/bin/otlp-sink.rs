//! `otlp-sink [ADDR]`: an OTLP/gRPC trace endpoint that counts and drops
//! what it receives (default `127.0.0.1:4319`), so a benchmark can measure
//! what exporting spans costs the services without a Jaeger on the machine:
//!
//! ```sh
//! target/debug/otlp-sink 127.0.0.1:4319 &
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4319 scripts/bench.sh "fanout traced" …
//! ```
//!
//! It prints the spans received so far every 5 s on stderr.

use std::time::Duration;

use sb_tests::otlp::Collector;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4319".to_owned());
    let (collector, bound) = Collector::start_counting(&addr).await;
    eprintln!("otlp-sink: OTLP/gRPC on {bound}");
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let received = collector.received();
        if received != last {
            eprintln!("otlp-sink: {received} spans received");
            last = received;
        }
    }
}
