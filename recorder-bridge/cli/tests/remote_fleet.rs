//! `kwik-record stream --fleet N` against a real `kwik-record serve`: N simulated
//! devices from one process, each its own gateway and KWIK session, batched samples;
//! every device's file equals its simulator value by value.

use std::path::Path;

use kwik_recorder::{ImuRow, RateHz, SignalGenerator, SimImu, parse_csv};

mod support;
use support::{csv_files, free_udp_port, run, start_serve, stop_serve};

/// Rows recorded for `device` under `out`, in file order.
fn rows(out: &Path, device: &str) -> Vec<ImuRow> {
    let mut all = Vec::new();
    for f in csv_files(&out.join(device)) {
        all.extend(
            parse_csv::<ImuRow>(&std::fs::read(&f).unwrap())
                .unwrap()
                .rows,
        );
    }
    all
}

fn fleet(batch_delay: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let server = start_serve(dir.path(), port, &[]);
    let ca = dir.path().join("tls").join("ca.der");
    let to = format!("127.0.0.1:{port}");
    let out = run(
        &[
            "stream",
            "--json",
            "--to",
            &to,
            "--ca",
            ca.to_str().unwrap(),
            "--source",
            "sim-imu",
            "--fleet",
            "3",
            "--device",
            "lab",
            "--rate",
            "500",
            "--duration",
            "2s",
            "--batch-delay",
            batch_delay,
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["devices"], 3);
    assert_eq!(report["lossless_devices"], 3, "{report}");
    let c = &report["counts"];
    assert_eq!(c["device_samples"], 3000, "{report}");
    assert_eq!(c["acked"], 3000, "{report}");
    let (sent, writes) = (c["sent"].as_u64().unwrap(), c["writes"].as_u64().unwrap());
    assert!(sent >= 3000 && writes > 0, "{report}");
    if batch_delay != "0" {
        // Samples shared writes (the devices deliver every 10 ms, and the gateway
        // waits up to the batch delay for more).
        assert!(writes < sent, "{writes} writes for {sent} samples");
    }
    stop_serve(server);
    let sim = SimImu {
        rate: RateHz::try_from(500).unwrap(),
    };
    let want: Vec<ImuRow> = (0..1000).map(|i| sim.sample(i)).collect();
    for d in ["lab-0000", "lab-0001", "lab-0002"] {
        assert_eq!(rows(dir.path(), d), want, "{d}");
    }
}

#[test]
fn a_fleet_of_three_simulated_devices_records_every_sample_batched() {
    fleet("10ms");
}

#[test]
fn a_fleet_without_batch_delay_records_every_sample() {
    fleet("0");
}
