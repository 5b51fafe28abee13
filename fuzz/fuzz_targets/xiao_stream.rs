#![no_main]
//! The host's COBS+CRC frame decoder fed a byte stream in chunks the input chooses:
//! never panics, every frame it accepts re-encodes to a frame that decodes the same,
//! and its counters add up to what it yielded.

use xiao_proto::{FrameDecoder, decode_frame};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(split).min(stream.len());
    let mut decoder = FrameDecoder::new();
    let (mut ok, mut bad) = (0u64, 0u64);
    for chunk in [&stream[..cut], &stream[cut..]] {
        decoder.decode_with(chunk, |r| match r {
            Ok(frame) => {
                ok += 1;
                let wire = frame.encode();
                let bytes = wire.as_bytes();
                // The wire form ends with the delimiter; the decoder takes the body.
                let body = &bytes[..bytes.len() - 1];
                let again = decode_frame(body).expect("a re-encoded frame decodes");
                assert_eq!(again.encode().as_bytes(), bytes);
            }
            Err(_) => bad += 1,
        });
    }
    let stats = decoder.stats();
    assert_eq!(stats.frames, ok);
    let _ = bad;
});
