//! BLE transport (feature `ble`): Nordic's SoftDevice Controller (`nrf-sdc`,
//! linked as a library, with its `nrf-mpsl` scheduler) under the `trouble-host`
//! stack. The device advertises as `KWIK-XIAO` and offers one service with
//! two characteristics:
//!
//! * **sample** (read, notify): every sample as the 20-byte
//!   [`xiao_proto::encode_ble`] payload, which fits the default ATT MTU of 23,
//!   so no MTU exchange is needed;
//! * **info** (read): the [`xiao_proto::DeviceInfo`] as one COBS/CRC frame
//!   (`xiao_proto::decode_frame` reads it).
//!
//! Samples produced while no central is connected are dropped (sequence gaps),
//! and the queue is emptied on connection so the central starts with fresh data.

use embassy_executor::Spawner;
use embassy_futures::join::join;
use embassy_futures::select::select;
use embassy_nrf::mode::Async;
use embassy_nrf::peripherals::RNG;
use embassy_nrf::{Peri, rng};
use embassy_time::{Duration, Timer};
use nrf_mpsl::MultiprotocolServiceLayer;
use nrf_sdc::{self as sdc, SoftdeviceController};
use static_cell::StaticCell;
use trouble_host::prelude::*;
use xiao_proto::{BLE_PAYLOAD_LEN, Frame, MAX_WIRE_FRAME_LEN, encode_ble};

use crate::board::{DEVICE_INFO, Irqs};
use crate::sensor::SAMPLES;

/// Advertised name.
const NAME: &str = "KWIK-XIAO";
/// One central at a time.
const CONNECTIONS_MAX: usize = 1;
/// L2CAP channels: signalling + ATT.
const L2CAP_CHANNELS_MAX: usize = 2;
/// Outgoing / incoming ACL buffers per link in the controller.
const L2CAP_TXQ: u8 = 3;
const L2CAP_RXQ: u8 = 3;
/// Controller memory. The builder checks the real requirement at start-up
/// and refuses a smaller buffer; a larger one only costs RAM. trouble's
/// nRF52 example with this same configuration (1 peripheral link,
/// advertiser, default packet-pool MTU, 3 + 3 buffers) gives it 4720 bytes.
const SDC_MEM: usize = 8 * 1024;
/// Back-off after a failed advertising attempt.
const ADVERTISE_RETRY: Duration = Duration::from_secs(1);

/// Service and characteristic UUIDs, made up for this project (the first
/// four bytes spell "KWIK"); the service UUID is also in the scan response.
const SERVICE_UUID_LE: [u8; 16] = 0x4b57_494b_0001_4a8c_9f3e_5c6d_7a8b_9c0d_u128.to_le_bytes();
const SAMPLE_UUID_LE: [u8; 16] = 0x4b57_494b_0002_4a8c_9f3e_5c6d_7a8b_9c0d_u128.to_le_bytes();
const INFO_UUID_LE: [u8; 16] = 0x4b57_494b_0003_4a8c_9f3e_5c6d_7a8b_9c0d_u128.to_le_bytes();

/// The GATT server: GAP and GATT services plus ours.
#[gatt_server]
struct Server {
    stream: SensorStream,
}

/// The sensor stream service.
#[gatt_service(uuid = SERVICE_UUID_LE)]
struct SensorStream {
    /// Latest sample, 20-byte BLE payload.
    #[characteristic(uuid = SAMPLE_UUID_LE, read, notify)]
    sample: [u8; BLE_PAYLOAD_LEN],
    /// Device info as one serial frame.
    #[characteristic(uuid = INFO_UUID_LE, read)]
    info: heapless::Vec<u8, MAX_WIRE_FRAME_LEN>,
}

#[embassy_executor::task]
async fn mpsl_task(mpsl: &'static MultiprotocolServiceLayer<'static>) -> ! {
    mpsl.run().await
}

/// Starts the MPSL (radio scheduler, clock and TEMP owner) and its task.
pub(crate) fn start_mpsl(
    spawner: Spawner,
    p: nrf_mpsl::Peripherals<'static>,
) -> &'static MultiprotocolServiceLayer<'static> {
    use nrf_mpsl::raw;
    // The RC oscillator, calibrated by the MPSL, works on any board; the
    // XIAO's 32.768 kHz crystal would save a little current but is not needed.
    let lfclk = raw::mpsl_clock_lfclk_cfg_t {
        source: raw::MPSL_CLOCK_LF_SRC_RC as u8,
        rc_ctiv: raw::MPSL_RECOMMENDED_RC_CTIV as u8,
        rc_temp_ctiv: raw::MPSL_RECOMMENDED_RC_TEMP_CTIV as u8,
        accuracy_ppm: raw::MPSL_DEFAULT_CLOCK_ACCURACY_PPM as u16,
        skip_wait_lfclk_started: raw::MPSL_DEFAULT_SKIP_WAIT_LFCLK_STARTED != 0,
    };
    static MPSL: StaticCell<MultiprotocolServiceLayer<'static>> = StaticCell::new();
    // Fails only for an invalid clock configuration, and this one is
    // Nordic's recommended constant set; there is no useful way to go on
    // without the radio scheduler.
    let mpsl = MPSL.init(MultiprotocolServiceLayer::new(p, Irqs, lfclk).unwrap());
    // Spawned once into its pool of one.
    spawner.spawn(mpsl_task(mpsl).unwrap());
    mpsl
}

/// Builds the controller and starts the BLE task.
pub(crate) fn start(
    spawner: Spawner,
    mpsl: &'static MultiprotocolServiceLayer<'static>,
    p: sdc::Peripherals<'static>,
    rng: Peri<'static, RNG>,
) {
    static RNG_DRIVER: StaticCell<rng::Rng<'static, Async>> = StaticCell::new();
    static MEM: StaticCell<sdc::Mem<SDC_MEM>> = StaticCell::new();
    let rng = RNG_DRIVER.init(rng::Rng::new(rng, Irqs));
    // The configuration is constant and the memory generous (see SDC_MEM),
    // so this fails only if the controller library itself is unusable.
    let controller = sdc::Builder::new()
        .and_then(|b| b.support_adv().support_peripheral().peripheral_count(1))
        .and_then(|b| {
            b.buffer_cfg(
                DefaultPacketPool::MTU as u16,
                DefaultPacketPool::MTU as u16,
                L2CAP_TXQ,
                L2CAP_RXQ,
            )
        })
        .and_then(|b| b.build(p, rng, mpsl, MEM.init(sdc::Mem::new())))
        .unwrap();
    // Spawned once into its pool of one.
    spawner.spawn(ble_task(controller).unwrap());
}

/// A static random address from the chip's factory-programmed DEVICEADDR
/// (the two top bits set, as the Core spec requires for static addresses).
fn static_address() -> Address {
    let low = embassy_nrf::pac::FICR.deviceaddr(0).read();
    let high = embassy_nrf::pac::FICR.deviceaddr(1).read();
    let mut bytes = [0u8; 6];
    bytes[..4].copy_from_slice(&low.to_le_bytes());
    bytes[4..].copy_from_slice(&(high as u16 | 0xC000).to_le_bytes());
    Address::random(bytes)
}

#[embassy_executor::task]
async fn ble_task(controller: SoftdeviceController<'static>) -> ! {
    static RESOURCES: StaticCell<
        HostResources<DefaultPacketPool, CONNECTIONS_MAX, L2CAP_CHANNELS_MAX>,
    > = StaticCell::new();
    let resources = RESOURCES.init(HostResources::new());
    let stack = trouble_host::new(controller, resources)
        .set_random_address(static_address())
        .build();
    let mut peripheral = stack.peripheral();
    let runner = stack.runner();
    // The attribute table is sized at compile time by the macro for exactly
    // these services; building it cannot run out of room.
    let server = Server::new_with_config(GapConfig::Peripheral(PeripheralConfig {
        name: NAME,
        appearance: &appearance::UNKNOWN,
    }))
    .unwrap();
    let mut info = heapless::Vec::new();
    // A frame is at most MAX_WIRE_FRAME_LEN long, the Vec's capacity.
    let _ = info.extend_from_slice(Frame::from(DEVICE_INFO).encode().as_bytes());
    let _ = server.set(&server.stream.info, &info);

    let host = async {
        let mut runner = runner;
        loop {
            // The runner returns only on a controller/HCI error; start again.
            let _ = runner.run().await;
        }
    };
    let app = async {
        loop {
            match advertise(&mut peripheral, &server).await {
                Ok(conn) => {
                    SAMPLES.clear();
                    select(gatt_events(&conn), stream(&server, &conn)).await;
                }
                Err(_) => Timer::after(ADVERTISE_RETRY).await,
            }
        }
    };
    join(host, app).await;
    // Both halves loop forever.
    loop {
        Timer::after_secs(3600).await;
    }
}

/// Advertises until a central connects.
async fn advertise<'v, 's, C: Controller>(
    peripheral: &mut Peripheral<'v, C, DefaultPacketPool>,
    server: &'s Server<'v>,
) -> Result<GattConnection<'v, 's, DefaultPacketPool>, BleHostError<C::Error>> {
    let mut adv_data = [0u8; 31];
    let adv_len = AdStructure::encode_slice(
        &[
            AdStructure::Flags(LE_GENERAL_DISCOVERABLE | BR_EDR_NOT_SUPPORTED),
            AdStructure::CompleteLocalName(NAME.as_bytes()),
        ],
        &mut adv_data[..],
    )?;
    let mut scan_data = [0u8; 31];
    let scan_len = AdStructure::encode_slice(
        &[AdStructure::CompleteServiceUuids128(&[SERVICE_UUID_LE])],
        &mut scan_data[..],
    )?;
    let advertiser = peripheral
        .advertise(
            &Default::default(),
            Advertisement::ConnectableScannableUndirected {
                adv_data: &adv_data[..adv_len],
                scan_data: &scan_data[..scan_len],
            },
        )
        .await?;
    let conn = advertiser.accept().await?.with_attribute_server(server)?;
    Ok(conn)
}

/// Answers the central's reads and subscription writes until it disconnects.
async fn gatt_events<P: PacketPool>(conn: &GattConnection<'_, '_, P>) {
    loop {
        match conn.next().await {
            GattConnectionEvent::Disconnected { .. } => return,
            GattConnectionEvent::Gatt { event } => {
                // Values live in the attribute table; accept and let the
                // server answer from it. A failed reply only affects this
                // request; the central retries or times out.
                if let Ok(reply) = event.accept() {
                    reply.send().await;
                }
            }
            _ => {}
        }
    }
}

/// Forwards queued samples as notifications until one cannot be sent.
async fn stream<P: PacketPool>(server: &Server<'_>, conn: &GattConnection<'_, '_, P>) {
    loop {
        let sample = SAMPLES.receive().await;
        let payload = encode_ble(&sample);
        // `true`: also store it, so a read returns the latest sample.
        if server
            .stream
            .sample
            .notify(conn, &payload, true)
            .await
            .is_err()
        {
            return;
        }
    }
}
