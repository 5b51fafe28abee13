#![no_main]
//! BLE notification payloads: `decode_ble` never panics and what it accepts
//! re-encodes to the same payload; the host's notification decoder, fed the input as
//! a run of 20-byte notifications, accounts for every one (sample, loss or error).

use kwik_recorder::{BleNotificationDecoder, SourceEvent};
use xiao_proto::{BLE_PAYLOAD_LEN, decode_ble, encode_ble};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = decode_ble(data) {
        let again = encode_ble(&s);
        let back = decode_ble(&again).expect("an encoded payload decodes");
        assert_eq!(encode_ble(&back), again);
    }
    let mut decoder = BleNotificationDecoder::new();
    let mut out = Vec::new();
    let mut notifications = 0u64;
    for payload in data.chunks(BLE_PAYLOAD_LEN) {
        notifications += 1;
        decoder.decode(payload, &mut out);
    }
    let c = decoder.counts();
    assert_eq!(c.notifications, notifications);
    assert_eq!(c.notifications, c.samples + c.duplicates + c.malformed);
    let samples = out
        .iter()
        .filter(|e| matches!(e, SourceEvent::Sample { .. }))
        .count() as u64;
    assert_eq!(samples, c.samples);
});
