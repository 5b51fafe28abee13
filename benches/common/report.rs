//! The `RESULT` lines: the figures docs/BENCHMARKS.md records.

use super::stats::median;

/// Prints `RESULT <name> median=<m> <unit> runs=[...]`, or `RESULT <name> no runs`.
pub(crate) fn report_median(name: &str, unit: &str, values: &[f64]) {
    if values.is_empty() {
        println!("RESULT {name} no runs");
        return;
    }
    let runs: Vec<String> = values.iter().map(|v| format!("{v:.3}")).collect();
    println!(
        "RESULT {name} median={:.3} {unit} runs=[{}]",
        median(values),
        runs.join(", ")
    );
}
