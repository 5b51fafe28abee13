//! Producer `push` latency while the writer thread formats, writes and fsyncs: an
//! hdrhistogram of every push of E-field rows paced at 128 kHz.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-rec cargo bench -p kwik-recorder --bench push_latency -- 20`
//! (argument: seconds, default 10). Prints percentiles and the drop count.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use kwik_recorder::{
    EfieldSample, Encoder, ExportConfig, Exporter, FileConfig, FileWriter, Format, RateHz,
    SignalGenerator, SimEfield, SizeLimitAction,
};

fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let rate = 128_000u64;
    let dir = tempfile::tempdir_in(".").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let path = dir.path().join("latency.csv");
    let writer = FileWriter::create(
        Encoder::<EfieldSample>::new(Format::default()).unwrap(),
        FileConfig {
            path,
            comments: vec![],
            size_limit: None,
            on_size_limit: SizeLimitAction::Stop,
            sync_interval: Duration::from_millis(100),
            fault: None,
        },
        std::sync::Arc::new(|| 0),
    )
    .unwrap();
    let mut ex = Exporter::start(ExportConfig::default(), writer).unwrap();
    let stats = ex.stats();
    let g = SimEfield {
        rate: RateHz::try_from(rate as u32).unwrap(),
    };
    // Pre-generate one second of samples so the generator's cost is not timed.
    let samples: Vec<EfieldSample> = (0..rate).map(|i| g.sample(i)).collect();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
    let t0 = Instant::now();
    let mut i = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
        while i < due {
            let mut s = samples[(i % rate) as usize];
            s.index = i;
            let a = Instant::now();
            let _ = ex.push(s);
            ex.poll(a);
            let ns = a.elapsed().as_nanos() as u64;
            hist.record(ns.max(1)).unwrap();
            i += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let c = stats.snapshot();
    ex.close();
    println!(
        "push latency over {i} pushes in {secs} s at {rate} rows/s (writer writing + fsync every 100 ms):"
    );
    for q in [50.0, 90.0, 99.0, 99.9, 99.99] {
        println!("  p{q:<6} {:>8} ns", hist.value_at_percentile(q));
    }
    println!("  max     {:>8} ns", hist.max());
    println!(
        "  accepted {} dropped {} swaps {}",
        c.accepted, c.dropped, c.swaps
    );
}
