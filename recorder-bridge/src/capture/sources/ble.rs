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
}

impl BleNotificationDecoder {
    /// A decoder that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events of one notification, appended to `out`.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<SourceEvent<ImuRow>>) {
        let Ok(mut s) = decode_ble(payload) else {
            out.push(SourceEvent::DecodeError);
            return;
        };
        let low = s.seq.0 as u16;
        let full = match self.last {
            None => SeqNo(u32::from(low)),
            Some(last) => widen_seq16(last, low),
        };
        self.last = Some(full);
        s.seq = full;
        if let Some((seq, lost)) = self.sequence.accept(full) {
            if lost > 0 {
                out.push(SourceEvent::Lost(lost));
            }
            out.push(SourceEvent::Sample {
                seq,
                sample: imu_row(&s),
            });
        }
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

    use super::{BleNotificationDecoder, SAMPLE_UUID};
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
        overflow: std::sync::Arc<std::sync::atomic::AtomicU64>,
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
            let overflow = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let of = overflow.clone();
            tokio::spawn(async move {
                let _keep = peripheral;
                while let Some(n) = notes.next().await {
                    if n.uuid.as_u128() != SAMPLE_UUID {
                        continue;
                    }
                    match tx.try_send(n.value) {
                        Ok(()) => {}
                        // The gap shows up as lost sequence numbers; count it here too.
                        Err(std::sync::mpsc::TrySendError::Full(_)) => {
                            of.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            })
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
                let payload = match self.rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(p) => p,
                    Err(RecvTimeoutError::Timeout) => return Some(SourceEvent::Idle),
                    Err(RecvTimeoutError::Disconnected) => return None,
                };
                let mut evs = Vec::new();
                self.decoder.decode(&payload, &mut evs);
                while let Ok(more) = self.rx.try_recv().map_err(|e: TryRecvError| e) {
                    self.decoder.decode(&more, &mut evs);
                }
                let _ = self.overflow.load(std::sync::atomic::Ordering::Relaxed);
                self.pending.extend(evs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xiao_proto::{ImuSample, encode_ble};

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
}
