#![no_main]
//! The recorder's remote wire: a message decoder fed a stream in chunks the input
//! chooses never panics, holds at most one partial message, and every message it
//! yields re-encodes to bytes that decode to the same bytes again.

use kwik_recorder::{Message, MessageDecoder};

/// A partial message plus the largest chunk fed at once (the decoder's bound).
const HELD_MAX: usize = 4 + 65_535 + 256;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut decoder = MessageDecoder::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let take = (usize::from(n) + 1).min(tail.len());
        let (chunk, tail) = tail.split_at(take);
        rest = tail;
        decoder.push(chunk);
        while let Some(r) = decoder.next_message() {
            let Ok(m) = r else { continue };
            let Ok(bytes) = m.to_bytes() else { continue };
            let mut again = MessageDecoder::new();
            again.push(&bytes);
            let back: Message = again
                .next_message()
                .expect("a whole message")
                .expect("a re-encoded message decodes");
            assert_eq!(back.to_bytes().ok(), Some(bytes));
        }
        assert!(
            decoder.pending() <= HELD_MAX,
            "{} bytes held",
            decoder.pending()
        );
    }
});
