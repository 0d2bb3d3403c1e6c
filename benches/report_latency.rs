//! Monthly report latency over the demo's lake: runs `mxpulse demo` (the whole pipeline:
//! simulator, hooks, Kafka, ingest, lake, query service), waits for its history, then asks
//! the figures API for a year's monthly report, every figure with its breakdowns, MoM, YoY and
//! peak days, several times, and a dashboard-sized request (two figures), once the demo has
//! compacted its lake, with its live activity flowing. Prints a report: the demo's generation
//! rate, the time to its first figures, and the latencies.
//!
//! Run: `cargo bench --bench report_latency -- [SCALE] [REPEATS]` (defaults 0.01 and 5).
//! Add `--profile dev` to measure the dev build the tests use.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::demo::Demo;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let scale: String = args.next().unwrap_or_else(|| "0.01".into());
    let repeats: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().expect("temp dir");

    let started = Instant::now();
    let mut demo = Demo::start(dir.path(), &["--scale", &scale, "--trickle-messages", "1"]);
    demo.wait_line("Ctrl-C stops everything", Duration::from_secs(120));
    let services_up = started.elapsed();
    // The first figures: January 2023's messages, as soon as the lake has them.
    // Busy generating, the service may time out: that counts as not there yet.
    let first = harness::wait_for(Duration::from_secs(1800), || {
        demo.try_monthly("messages", "2023-01", "2023-01")
            .ok()?
            .get(&("messages".into(), "2023-01".into()))
            .and_then(|v| v.as_f64())
    })
    .expect("first figures");
    let first_figures = started.elapsed();
    let history = demo.wait_line("history generated", Duration::from_secs(7200));
    let history_done = started.elapsed();
    // The demo compacts the lake once the history is in, then lets live activity flow.
    let compacted = demo.wait_line("live activity flowing", Duration::from_secs(3600));

    let mut timings = Vec::new();
    for (label, figures) in [
        ("every figure, 2024 by month", ""),
        ("two figures (a dashboard tile)", "active_users,messages"),
    ] {
        let mut samples = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            let cells = demo.monthly(figures, "2024-01", "2024-12");
            samples.push(t.elapsed().as_secs_f64());
            assert!(!cells.is_empty(), "the report has cells");
        }
        samples.sort_by(f64::total_cmp);
        timings.push((label, samples));
    }
    let status = demo.interrupt();

    println!("# Monthly report latency over the demo's lake\n");
    println!("- scale {scale}: {history}");
    println!(
        "- services up {:.1} s after the command; first figures (January 2023) at {:.1} s ({first} messages); history complete at {:.1} s",
        services_up.as_secs_f64(),
        first_figures.as_secs_f64(),
        history_done.as_secs_f64()
    );
    for (label, samples) in timings {
        let median = samples[samples.len() / 2];
        println!(
            "- {label}: median {median:.2} s, min {:.2} s, max {:.2} s over {} requests",
            samples[0],
            samples[samples.len() - 1],
            samples.len()
        );
    }
    println!("- {compacted}");
    println!("- demo stopped: {status:?}");
}
