#![no_main]
//! The `.meta.json` sidecar as `verify` and `recover` read it: any bytes give a
//! sidecar or a typed JSON error, its accounting check never overflows, and a sidecar
//! that parses writes back to JSON that parses to the same sidecar.

use kwik_recorder::Sidecar;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(sc) = serde_json::from_slice::<Sidecar>(data) else {
        return;
    };
    let _ = sc.accounting_problem();
    let json = serde_json::to_vec(&sc).expect("a sidecar serialises");
    let back: Sidecar = serde_json::from_slice(&json).expect("written JSON parses");
    assert_eq!(back, sc);
});
