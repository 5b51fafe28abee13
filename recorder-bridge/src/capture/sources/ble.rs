//! The XIAO board over Bluetooth LE: 20-byte notifications of its sample
//! characteristic (`xiao-proto`'s BLE payload, 16-bit sequence numbers).
//!
//! [`BleNotificationDecoder`] (always built, unit-tested) turns notification payloads
//! into numbered samples. `BleSource` (feature `ble`, via `btleplug`) finds the board
//! by name, subscribes and feeds the decoder; it needs a BLE adapter (BlueZ on Linux),
//! so it is built in CI but exercised only with hardware.

use xiao_proto::{SeqNo, decode_ble, widen_seq16};

use crate::capture::sample_source::SourceEvent;
use crate::capture::sources::sequence::DeviceSequence;
use crate::capture::sources::xiao::imu_row;
use crate::format::schema::ImuRow;

/// The board's GATT service (the first four bytes spell "KWIK").
pub const SERVICE_UUID: u128 = 0x4b57_494b_0001_4a8c_9f3e_5c6d_7a8b_9c0d;
/// The notifying sample characteristic.
pub const SAMPLE_UUID: u128 = 0x4b57_494b_0002_4a8c_9f3e_5c6d_7a8b_9c0d;

/// Decodes sample notifications: widens the 16-bit sequence numbers, reports gaps as
/// losses and malformed payloads as decode errors.
#[derive(Debug, Default)]
pub struct BleNotificationDecoder {
    last: Option<SeqNo>,
    sequence: DeviceSequence,
    counts: BleCounts,
}

/// What a [`BleNotificationDecoder`] made of the notifications it was given. Every
/// notification is exactly one of `samples`, `duplicates` or `malformed`; `lost` counts
/// the sequence numbers that never arrived (link losses and notifications the host
/// queue dropped alike).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BleCounts {
    /// Notifications decoded.
    pub notifications: u64,
    /// Samples yielded (new sequence numbers).
    pub samples: u64,
    /// Sequence numbers skipped between samples (reported as `SourceEvent::Lost`).
    pub lost: u64,
    /// Notifications whose sequence number was already seen or older (ignored).
    pub duplicates: u64,
    /// Notifications of the wrong length (reported as `SourceEvent::DecodeError`).
    pub malformed: u64,
}

impl BleNotificationDecoder {
    /// A decoder that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts so far.
    pub fn counts(&self) -> BleCounts {
        self.counts
    }

    /// The events of one notification, appended to `out`.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<SourceEvent<ImuRow>>) {
        self.counts.notifications += 1;
        let Ok(mut s) = decode_ble(payload) else {
            self.counts.malformed += 1;
            out.push(SourceEvent::DecodeError);
            return;
        };
        let low = s.seq.0 as u16;
        let full = match self.last {
            None => SeqNo(u32::from(low)),
            // A number at or up to half the 16-bit space behind the last one is a
            // repeated or late notification, not a jump of almost 65 536 samples:
            // widening it would count that many phantom losses and yield the sample
            // twice. So at most 32 767 samples may go missing in a row.
            Some(last) if (last.0 as u16).wrapping_sub(low) < 0x8000 => {
                self.counts.duplicates += 1;
                return;
            }
            Some(last) => widen_seq16(last, low),
        };
        self.last = Some(full);
        s.seq = full;
        let Some((seq, lost)) = self.sequence.accept(full) else {
            self.counts.duplicates += 1;
            return;
        };
        if lost > 0 {
            self.counts.lost += lost;
            out.push(SourceEvent::Lost(lost));
        }
        self.counts.samples += 1;
        out.push(SourceEvent::Sample {
            seq,
            sample: imu_row(&s),
        });
    }
}

#[cfg(feature = "ble")]
pub use hw::{BleError, BleSource};

#[cfg(feature = "ble")]
mod hw {
    use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
    use std::time::{Duration, Instant};

    use btleplug::api::{Central as _, Manager as _, Peripheral as _, ScanFilter};
    use btleplug::platform::Manager;
    use futures_util::StreamExt;

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::{BleCounts, BleNotificationDecoder, SAMPLE_UUID};
    use crate::capture::sample_source::{SampleSource, SourceEvent};
    use crate::format::schema::ImuRow;

    /// Why the board could not be reached over BLE.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum BleError {
        /// The Bluetooth stack failed (no adapter, permissions, BlueZ not running).
        #[error("bluetooth: {0}")]
        Stack(#[from] btleplug::Error),
        /// No adapter is present.
        #[error("no Bluetooth adapter found; BLE recording needs one (and BlueZ on Linux)")]
        NoAdapter,
        /// No device with that name advertised within the timeout.
        #[error("no BLE device named {0:?} found")]
        NotFound(String),
        /// The device lacks the sample characteristic.
        #[error("device {0:?} has no KWIK sample characteristic")]
        NoCharacteristic(String),
    }

    /// Notifications of a connected board, decoded into samples.
    #[derive(Debug)]
    pub struct BleSource {
        rx: Receiver<Vec<u8>>,
        decoder: BleNotificationDecoder,
        pending: std::collections::VecDeque<SourceEvent<ImuRow>>,
        overflow: Arc<QueueOverflow>,
        ended: bool,
    }

    /// Notifications the host queue had no room for. One that a later delivered
    /// notification follows shows up as a sequence gap (counted lost by the decoder);
    /// those after the last delivered one (`tail`) have no later number to reveal them,
    /// so the source reports them lost itself when the stream ends.
    #[derive(Debug, Default)]
    struct QueueOverflow {
        total: AtomicU64,
        tail: AtomicU64,
    }

    impl BleSource {
        /// Scans for a device advertising `name`, connects and subscribes (inside a
        /// tokio runtime; the notification task keeps running on it).
        pub async fn connect(name: &str, timeout: Duration) -> Result<Self, BleError> {
            let manager = Manager::new().await?;
            let central = manager
                .adapters()
                .await?
                .into_iter()
                .next()
                .ok_or(BleError::NoAdapter)?;
            central.start_scan(ScanFilter::default()).await?;
            let start = Instant::now();
            let peripheral = loop {
                let mut found = None;
                for p in central.peripherals().await? {
                    if let Ok(Some(props)) = p.properties().await {
                        if props.local_name.as_deref() == Some(name) {
                            found = Some(p);
                            break;
                        }
                    }
                }
                if let Some(p) = found {
                    break p;
                }
                if start.elapsed() > timeout {
                    return Err(BleError::NotFound(name.to_owned()));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            let _ = central.stop_scan().await;
            peripheral.connect().await?;
            peripheral.discover_services().await?;
            let ch = peripheral
                .characteristics()
                .into_iter()
                .find(|c| c.uuid.as_u128() == SAMPLE_UUID)
                .ok_or_else(|| BleError::NoCharacteristic(name.to_owned()))?;
            peripheral.subscribe(&ch).await?;
            let mut notes = peripheral.notifications().await?;
            let (tx, rx): (SyncSender<Vec<u8>>, _) = sync_channel(4096);
            let overflow = Arc::new(QueueOverflow::default());
            let of = overflow.clone();
            tokio::spawn(async move {
                let _keep = peripheral;
                while let Some(n) = notes.next().await {
                    if n.uuid.as_u128() != SAMPLE_UUID {
                        continue;
                    }
                    match tx.try_send(n.value) {
                        Ok(()) => of.tail.store(0, Ordering::Relaxed),
                        Err(std::sync::mpsc::TrySendError::Full(_)) => {
                            of.total.fetch_add(1, Ordering::Relaxed);
                            of.tail.fetch_add(1, Ordering::Relaxed);
                            metrics::counter!("kwik_recorder_ble_queue_overflow_total")
                                .increment(1);
                        }
                        Err(_) => break,
                    }
                }
            });
            Ok(BleSource {
                rx,
                decoder: BleNotificationDecoder::new(),
                pending: Default::default(),
                overflow,
                ended: false,
            })
        }

        /// Notifications dropped because the host queue was full (each is also in
        /// the losses: as a sequence gap, or at the end of the stream).
        pub fn queue_overflows(&self) -> u64 {
            self.overflow.total.load(Ordering::Relaxed)
        }

        /// The decoder's counts so far.
        pub fn counts(&self) -> BleCounts {
            self.decoder.counts()
        }
    }

    impl SampleSource for BleSource {
        type Sample = ImuRow;

        fn rate_hz(&self) -> u32 {
            0
        }

        fn next_event(&mut self) -> Option<SourceEvent<ImuRow>> {
            loop {
                if let Some(e) = self.pending.pop_front() {
                    return Some(e);
                }
                if self.ended {
                    return None;
                }
                let payload = match self.rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(p) => p,
                    Err(RecvTimeoutError::Timeout) => return Some(SourceEvent::Idle),
                    Err(RecvTimeoutError::Disconnected) => {
                        // The notification task is gone: its tail count is final.
                        self.ended = true;
                        let tail = self.overflow.tail.swap(0, Ordering::Relaxed);
                        if tail > 0 {
                            return Some(SourceEvent::Lost(tail));
                        }
                        return None;
                    }
                };
                let mut evs = Vec::new();
                self.decoder.decode(&payload, &mut evs);
                while let Ok(more) = self.rx.try_recv().map_err(|e: TryRecvError| e) {
                    self.decoder.decode(&more, &mut evs);
                }
                self.pending.extend(evs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xiao_proto::{BLE_PAYLOAD_LEN, ImuSample, encode_ble};

    #[test]
    fn notifications_decode_with_wrap_gaps_and_errors() {
        let mut d = BleNotificationDecoder::new();
        let mut out = Vec::new();
        let mk = |seq: u32| ImuSample {
            seq: SeqNo(seq),
            millis: seq * 40,
            accel_g: [0.5, -0.25, 1.0],
            gyro_dps: [10.0, -20.0, 0.0],
            temp_c: 24.5,
            audio_rms: 4.0,
        };
        for seq in [0xFFFE, 0xFFFF, 0x1_0000, 0x1_0003] {
            d.decode(&encode_ble(&mk(seq)), &mut out);
        }
        d.decode(&[0; 5], &mut out);
        let seqs: Vec<u64> = out
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Sample { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, [0xFFFE, 0xFFFF, 0x1_0000, 0x1_0003]);
        assert!(out.contains(&SourceEvent::Lost(2)));
        assert_eq!(out.last(), Some(&SourceEvent::DecodeError));
        let SourceEvent::Sample { sample, .. } = &out[0] else {
            panic!("first event is a sample");
        };
        assert_eq!(sample.millis, 0xFFFE * 40);
        assert_eq!(sample.ax, 0.5);
        assert_eq!(sample.temp_c, 24.5);
    }

    /// The simulated board's samples through the firmware's own BLE encoder, over a
    /// link that loses some notifications (the simulator's drops), truncates others
    /// (its corruptions: BLE has its own CRC, so a damaged notification reaches the
    /// host short or not at all) and repeats some: across a 16-bit sequence wrap every
    /// intact sample arrives once and in order, and every notification is counted as a
    /// sample, a duplicate or malformed, every missing number as lost.
    #[test]
    fn simulator_notifications_are_all_accounted_for() {
        let n = 70_000u64; // past one 16-bit sequence wrap
        let mut cfg = xiao_sim::SimConfig::new(11, std::num::NonZeroU32::new(1000).unwrap());
        cfg.faults.drop = xiao_sim::Probability::try_from(0.01).unwrap();
        cfg.faults.corrupt = xiao_sim::Probability::try_from(0.01).unwrap();
        let mut sim = xiao_sim::Simulator::new(cfg);
        let mut d = BleNotificationDecoder::new();
        let mut out = Vec::new();
        let (mut sent, mut truncated, mut repeated) = (Vec::new(), 0u64, 0u64);
        let (mut first_sent, mut last_sent) = (None, None);
        for i in 0..n {
            let t = sim.tick();
            let payload = encode_ble(&t.sample);
            match t.fate {
                xiao_sim::Fate::Sent => {
                    d.decode(&payload, &mut out);
                    sent.push(imu_row(&decode_ble(&payload).unwrap()));
                    first_sent = first_sent.or(Some(i));
                    last_sent = Some(i);
                    if i % 97 == 0 {
                        d.decode(&payload, &mut out);
                        repeated += 1;
                    }
                }
                xiao_sim::Fate::Dropped => {}
                xiao_sim::Fate::Corrupted { index } => {
                    d.decode(&payload[..index % BLE_PAYLOAD_LEN], &mut out);
                    truncated += 1;
                }
                other => panic!("unexpected fate {other:?}"),
            }
        }
        let rows: Vec<ImuRow> = out
            .iter()
            .filter_map(|e| match e {
                SourceEvent::Sample { sample, .. } => Some(*sample),
                _ => None,
            })
            .collect();
        let lost: u64 = out
            .iter()
            .map(|e| match e {
                SourceEvent::Lost(k) => *k,
                _ => 0,
            })
            .sum();
        let errors = out
            .iter()
            .filter(|e| matches!(e, SourceEvent::DecodeError))
            .count() as u64;
        assert_eq!(rows, sent);
        let c = d.counts();
        assert_eq!(c.samples, sent.len() as u64);
        assert_eq!((c.duplicates, c.malformed), (repeated, truncated));
        assert_eq!((c.lost, errors), (lost, truncated));
        assert_eq!(c.notifications, c.samples + c.duplicates + c.malformed);
        // Every number from the first to the last intact sample is a sample or lost.
        let first = out
            .iter()
            .find_map(|e| match e {
                SourceEvent::Sample { seq, .. } => Some(*seq),
                _ => None,
            })
            .unwrap();
        assert_eq!(Some(first), first_sent);
        assert_eq!(c.samples + c.lost, last_sent.unwrap() + 1 - first);
        assert!(c.lost > 0 && c.duplicates > 0 && c.malformed > 0, "{c:?}");
    }
}
