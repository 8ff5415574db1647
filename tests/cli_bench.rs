//! `bench` end to end: what it prints is measured, so only its shape and sanity are pinned
//! (never a time).

mod common;
use common::*;

#[test]
fn bench_prints_the_peak_and_a_row_of_finite_rates_per_model() {
    let w = workspace("bench");
    let d = w.path();
    let out = mnist_lab(
        d,
        &[
            "bench",
            "experiments/tiny.toml",
            "--steps",
            "10",
            "--workers",
            "2",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let peak = t
        .lines()
        .find(|l| l.starts_with("GEMM peak (1024³, f32): "))
        .unwrap_or_else(|| panic!("{t}"));
    assert!(
        peak.contains(" GFLOP/s on 1 thread, ") && peak.ends_with(" GFLOP/s on 2 threads"),
        "{peak}"
    );
    let numbers = |line: &str| -> Vec<f64> {
        line.trim_matches('|')
            .split('|')
            .skip(1)
            .map(|c| c.trim().trim_end_matches('%').parse().unwrap())
            .collect()
    };
    let rows: Vec<&str> = t.lines().filter(|l| l.starts_with("| tiny |")).collect();
    assert_eq!(rows.len(), 3, "throughput, algorithms, parts: {t}");
    // Throughput: MFLOP/sample (forward: 2·(26·26·4·9) + 2·676·16 + 2·16·10 MACs), then
    // rates, all finite and positive.
    let rates = numbers(rows[0]);
    assert_eq!(rates.len(), 9, "{}", rows[0]);
    assert_eq!(rates[0], 0.07, "{}", rows[0]);
    assert!(
        rates.iter().all(|v| v.is_finite() && *v > 0.0),
        "{}",
        rows[0]
    );
    assert_eq!(rows[1], "| tiny | 0: direct |");
    let parts = numbers(rows[2]);
    assert_eq!(parts[0], 32.0, "batch: {}", rows[2]);
    assert!(
        parts.iter().all(|v| v.is_finite() && *v >= 0.0),
        "{}",
        rows[2]
    );
}
