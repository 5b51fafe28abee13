//! Property tests of the wire formats against simple reference expectations.

use proptest::prelude::*;
use xiao_proto::{
    BLE_ACCEL_LSB_PER_G, BLE_GYRO_LSB_PER_DPS, DecodeError, Frame, FrameDecoder, ImuSample, SeqNo,
    decode_ble, decode_frame, encode_ble, parse_csv_line, write_csv_line,
};

fn any_f32() -> impl Strategy<Value = f32> {
    any::<u32>().prop_map(f32::from_bits)
}

prop_compose! {
    /// Any sample, including NaN payloads, infinities and subnormals.
    fn any_sample()(seq in any::<u32>(), millis in any::<u32>(),
                    accel in prop::array::uniform3(any_f32()), gyro in prop::array::uniform3(any_f32()),
                    temp in any_f32(), rms in any_f32()) -> ImuSample {
        ImuSample { seq: SeqNo(seq), millis, accel_g: accel, gyro_dps: gyro, temp_c: temp, audio_rms: rms }
    }
}

prop_compose! {
    /// A sample inside the sensor ranges.
    fn in_range_sample()(seq in any::<u32>(), millis in any::<u32>(),
                         accel in prop::array::uniform3(-15.9f32..15.9), gyro in prop::array::uniform3(-2000f32..2000.0),
                         temp in -40f32..63.0, rms in 0f32..32768.0) -> ImuSample {
        ImuSample { seq: SeqNo(seq), millis, accel_g: accel, gyro_dps: gyro, temp_c: temp, audio_rms: rms }
    }
}

/// Feeds `stream` cut at `cuts` and collects every result.
fn decode_chunked(
    stream: &[u8],
    cuts: &[usize],
) -> (Vec<Result<Frame, DecodeError>>, FrameDecoder) {
    let mut decoder = FrameDecoder::new();
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut at = 0;
    for cut in cuts.into_iter().chain([stream.len()]) {
        out.extend(decoder.decode(&stream[at..cut]));
        at = cut;
    }
    (out, decoder)
}

fn sample_of(r: &Result<Frame, DecodeError>) -> Option<ImuSample> {
    match r {
        Ok(Frame::Sample(s)) => Some(*s),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn frames_round_trip_in_any_chunking(samples in prop::collection::vec(any_sample(), 1..20),
                                         cuts in prop::collection::vec(any::<usize>(), 0..10)) {
        let stream: Vec<u8> = samples.iter().flat_map(|s| Frame::Sample(*s).encode().as_bytes().to_vec()).collect();
        let (results, decoder) = decode_chunked(&stream, &cuts);
        prop_assert_eq!(results.len(), samples.len());
        for (r, s) in results.iter().zip(&samples) {
            let got = sample_of(r);
            prop_assert!(got.is_some_and(|g| g.bitwise_eq(s)), "{:?} != {:?}", r, s);
        }
        prop_assert_eq!(decoder.stats().frames, samples.len() as u64);
        prop_assert_eq!(decoder.stats().errors(), 0);
        prop_assert_eq!(decoder.stats().bytes, stream.len() as u64);
    }

    #[test]
    fn random_bytes_never_panic_and_are_all_consumed(bytes in prop::collection::vec(any::<u8>(), 0..2000),
                                                     cuts in prop::collection::vec(any::<usize>(), 0..10)) {
        let (results, decoder) = decode_chunked(&bytes, &cuts);
        let stats = decoder.stats();
        prop_assert_eq!(stats.bytes, bytes.len() as u64);
        prop_assert_eq!(stats.frames + stats.errors(), results.len() as u64);
        prop_assert!(decoder.pending() < xiao_proto::MAX_WIRE_FRAME_LEN);
        // Chunking never changes the outcome, down to one byte at a time.
        let (whole, whole_decoder) = decode_chunked(&bytes, &[]);
        let mut bytewise = FrameDecoder::new();
        let one_by_one: Vec<_> = bytes.iter().filter_map(|&b| bytewise.push_byte(b)).collect();
        prop_assert_eq!(&results, &whole);
        prop_assert_eq!(&results, &one_by_one);
        prop_assert_eq!(whole_decoder.stats(), bytewise.stats());
        prop_assert_eq!(decoder.stats(), bytewise.stats());
        let _ = decode_frame(&bytes);
        let _ = decode_ble(&bytes);
        let _ = parse_csv_line(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn every_single_bit_flip_is_detected(sample in any_sample()) {
        let wire = Frame::Sample(sample).encode();
        let next = Frame::Sample(ImuSample { seq: SeqNo(sample.seq.0.wrapping_add(1)), ..sample }).encode();
        let last = Frame::Sample(ImuSample { seq: SeqNo(sample.seq.0.wrapping_add(2)), ..sample }).encode();
        for bit in 0..wire.len() * 8 {
            let mut stream = wire.as_bytes().to_vec();
            stream[bit / 8] ^= 1 << (bit % 8);
            let corrupt_len = stream.len();
            stream.extend_from_slice(next.as_bytes());
            stream.extend_from_slice(last.as_bytes());
            let mut decoder = FrameDecoder::new();
            let accepted: Vec<Frame> = decoder.decode(&stream).flatten().collect();
            prop_assert!(decoder.stats().errors() >= 1, "bit {} not detected", bit);
            // Only the good frames may come out, and at least the last one must.
            let good = [Frame::Sample(ImuSample { seq: SeqNo(sample.seq.0.wrapping_add(1)), ..sample }),
                        Frame::Sample(ImuSample { seq: SeqNo(sample.seq.0.wrapping_add(2)), ..sample })];
            for f in &accepted {
                let s = match f { Frame::Sample(s) => *s, other => return Err(TestCaseError::fail(format!("{other:?}"))) };
                prop_assert!(good.iter().any(|g| matches!(g, Frame::Sample(x) if x.bitwise_eq(&s))), "bit {} gave {:?}", bit, s);
            }
            prop_assert!(accepted.iter().any(|f| matches!(f, Frame::Sample(s) if s.seq.0 == sample.seq.0.wrapping_add(2))));
            // A flip inside the frame (not its delimiter) costs only that frame.
            if bit / 8 < corrupt_len - 1 {
                prop_assert_eq!(accepted.len(), 2, "bit {}", bit);
            }
        }
    }

    #[test]
    fn decoder_resyncs_after_garbage(garbage in prop::collection::vec(any::<u8>(), 0..600),
                                     samples in prop::collection::vec(any_sample(), 2..6),
                                     flush in any::<bool>()) {
        let mut stream = garbage.clone();
        if flush { stream.push(0); }
        for s in &samples { stream.extend_from_slice(Frame::Sample(*s).encode().as_bytes()); }
        let mut decoder = FrameDecoder::new();
        let got: Vec<ImuSample> = decoder.decode(&stream).filter_map(|r| sample_of(&r)).collect();
        // Without a delimiter after the garbage the first frame may merge with it
        // (a garbage frame passing CRC-32 has probability 2^-32; treat as impossible).
        let expected = if flush || garbage.is_empty() || garbage.last() == Some(&0) { &samples[..] } else { &samples[1..] };
        let tail = &got[got.len().saturating_sub(expected.len())..];
        prop_assert_eq!(tail.len(), expected.len());
        for (g, e) in tail.iter().zip(expected) { prop_assert!(g.bitwise_eq(e)); }
        prop_assert!(got.len() <= samples.len());
    }

    #[test]
    fn ble_round_trips_within_quantisation(sample in in_range_sample()) {
        let d = decode_ble(&encode_ble(&sample)).unwrap();
        prop_assert_eq!(d.seq.0, sample.seq.0 & 0xFFFF);
        prop_assert_eq!(d.millis, sample.millis);
        for k in 0..3 {
            prop_assert!((d.accel_g[k] - sample.accel_g[k]).abs() <= 0.5 / BLE_ACCEL_LSB_PER_G + 1e-5);
            prop_assert!((d.gyro_dps[k] - sample.gyro_dps[k]).abs() <= 0.5 / BLE_GYRO_LSB_PER_DPS + 1e-3);
        }
        prop_assert!((d.temp_c - sample.temp_c).abs() <= 0.25 + 1e-5);
        let root = d.audio_rms.sqrt();
        prop_assert!(d.audio_rms <= sample.audio_rms && sample.audio_rms < (root + 1.0) * (root + 1.0));
    }

    #[test]
    fn csv_round_trips_within_printed_decimals(sample in in_range_sample()) {
        let mut buf = [0u8; xiao_proto::CSV_LINE_CAPACITY];
        let n = write_csv_line(&sample, &mut buf).unwrap();
        let r = parse_csv_line(std::str::from_utf8(&buf[..n]).unwrap()).unwrap();
        prop_assert_eq!(r.millis, sample.millis);
        for k in 0..3 {
            prop_assert!((r.accel_g[k] - sample.accel_g[k]).abs() <= 0.5e-4 + 2e-6);
            prop_assert!((r.gyro_dps[k] - sample.gyro_dps[k]).abs() <= 0.5e-3 + 2e-4);
        }
        prop_assert!((r.temp_c - sample.temp_c).abs() <= 0.005 + 1e-5);
        prop_assert!((r.audio_rms - sample.audio_rms).abs() <= 0.005 + 4e-3);
    }
}
