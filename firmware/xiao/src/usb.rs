//! USB CDC-ACM transport: a virtual serial port carrying `xiao-proto` frames
//! (or, with feature `csv`, the `millis,ax,ay,az,gx,gy,gz,tempC,audioRMS`
//! lines of the original Arduino sketch).

use embassy_executor::Spawner;
use embassy_nrf::Peri;
use embassy_nrf::peripherals::USBD;
use embassy_nrf::usb::Driver;
use embassy_nrf::usb::vbus_detect::HardwareVbusDetect;
#[cfg(not(feature = "csv"))]
use embassy_time::{Duration, Instant};
use embassy_usb::UsbDevice;
use embassy_usb::class::cdc_acm::{CdcAcmClass, Sender, State};
use embassy_usb::driver::EndpointError;
use static_cell::StaticCell;
use xiao_fw_core::PacketBatch;
use xiao_proto::{ImuSample, MAX_SAMPLE_BYTES, Sampler, StreamFormat};

#[cfg(not(feature = "csv"))]
use crate::board::DEVICE_INFO;
use crate::board::Irqs;
use crate::sensor::SAMPLES;

type UsbDriver = Driver<'static, HardwareVbusDetect>;

/// pid.codes test VID/PID: fine on a bench, to be replaced before shipping.
const USB_VID: u16 = 0x1209;
const USB_PID: u16 = 0x0001;
/// Full-speed bulk packet size.
const PACKET: usize = 64;
/// Staging buffer: several frames go out back to back in one write burst.
const STAGING: usize = 4 * PACKET;
/// How often the device-info frame is repeated for late-attaching hosts.
#[cfg(not(feature = "csv"))]
const INFO_PERIOD: Duration = Duration::from_secs(2);

/// Builds the USB device and starts its two tasks.
pub(crate) fn start(spawner: Spawner, usbd: Peri<'static, USBD>) {
    let driver = Driver::new(usbd, Irqs, HardwareVbusDetect::new(Irqs));
    let mut config = embassy_usb::Config::new(USB_VID, USB_PID);
    config.manufacturer = Some("KWIK");
    config.product = Some("XIAO nRF52840 Sense sensor stream");
    config.serial_number = Some(env!("CARGO_PKG_VERSION"));
    config.max_power = 100;
    config.max_packet_size_0 = 64;

    static CONFIG_DESC: StaticCell<[u8; 256]> = StaticCell::new();
    static BOS_DESC: StaticCell<[u8; 64]> = StaticCell::new();
    static CONTROL: StaticCell<[u8; 64]> = StaticCell::new();
    static CDC_STATE: StaticCell<State<'static>> = StaticCell::new();
    let mut builder = embassy_usb::Builder::new(
        driver,
        config,
        CONFIG_DESC.init([0; 256]),
        BOS_DESC.init([0; 64]),
        &mut [],
        CONTROL.init([0; 64]),
    );
    let class = CdcAcmClass::new(&mut builder, CDC_STATE.init(State::new()), PACKET as u16);
    let device = builder.build();
    // The host's writes are not used; the OUT endpoint simply NAKs them.
    let (sender, _receiver) = class.split();
    // Each task is spawned once into its pool of one.
    spawner.spawn(usb_device_task(device).unwrap());
    spawner.spawn(stream_task(sender).unwrap());
}

#[embassy_executor::task]
async fn usb_device_task(mut device: UsbDevice<'static, UsbDriver>) -> ! {
    device.run().await
}

/// Waits for the host to configure the port, then streams until unplugged.
#[embassy_executor::task]
async fn stream_task(mut tx: Sender<'static, UsbDriver>) -> ! {
    loop {
        tx.wait_connection().await;
        // Ends with `Disabled` when the cable or the host goes away.
        let _ = stream(&mut tx).await;
    }
}

/// Bytes queued for one burst of packets.
type Staging = PacketBatch<STAGING>;

/// Sends everything queued, ended by a short or zero-length packet so the
/// host returns the data at once, and empties the batch.
async fn flush(
    staging: &mut Staging,
    tx: &mut Sender<'static, UsbDriver>,
) -> Result<(), EndpointError> {
    for packet in staging.packets(PACKET) {
        tx.write_packet(packet).await?;
    }
    staging.clear();
    Ok(())
}

/// Appends the sample's wire form. Callers leave [`MAX_SAMPLE_BYTES`] of
/// room, which always suffices; a refusal would drop only this sample, which
/// the host then sees as a gap.
fn push_sample(staging: &mut Staging, sample: &ImuSample) {
    let _ = staging.fill_with(|out| Sampler::encode(sample, FORMAT, out));
}

/// What goes over the port in this build.
#[cfg(not(feature = "csv"))]
const FORMAT: StreamFormat = StreamFormat::Frames;
#[cfg(feature = "csv")]
const FORMAT: StreamFormat = StreamFormat::Csv;

const _: () = assert!(MAX_SAMPLE_BYTES <= STAGING);
const _: () = assert!(
    xiao_proto::CSV_HEADER.len()
        + xiao_proto::CSV_LINE_END.len()
        + xiao_proto::MAX_WIRE_FRAME_LEN
        + MAX_SAMPLE_BYTES
        <= STAGING
);

/// One connected session: samples as they come, and (frames format) the
/// device-info frame at connection and every [`INFO_PERIOD`] even when no
/// sample arrives, so a host can tell a silent sensor from a dead link.
async fn stream(tx: &mut Sender<'static, UsbDriver>) -> Result<(), EndpointError> {
    let mut staging = Staging::new();
    #[cfg(not(feature = "csv"))]
    let mut info_due = Instant::now();
    #[cfg(feature = "csv")]
    {
        // The header row fits the empty batch (a const assertion above).
        let _ = staging.push(xiao_proto::CSV_HEADER.as_bytes());
        let _ = staging.push(xiao_proto::CSV_LINE_END.as_bytes());
    }
    loop {
        #[cfg(not(feature = "csv"))]
        let first = {
            use embassy_futures::select::{Either, select};
            // Channel::receive is cancel-safe: losing the race takes nothing.
            match select(SAMPLES.receive(), embassy_time::Timer::at(info_due)).await {
                Either::First(sample) => sample,
                Either::Second(()) => {
                    // The batch is empty here, and a frame is far smaller than it.
                    let _ = staging.push(xiao_proto::Frame::from(DEVICE_INFO).encode().as_bytes());
                    info_due = Instant::now() + INFO_PERIOD;
                    flush(&mut staging, tx).await?;
                    continue;
                }
            }
        };
        #[cfg(feature = "csv")]
        let first = SAMPLES.receive().await;
        push_sample(&mut staging, &first);
        // Take whatever else is already waiting, as long as it surely fits.
        while staging.room() >= MAX_SAMPLE_BYTES {
            match SAMPLES.try_receive() {
                Ok(sample) => push_sample(&mut staging, &sample),
                Err(_) => break,
            }
        }
        flush(&mut staging, tx).await?;
    }
}
