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
struct Staging {
    buf: [u8; STAGING],
    len: usize,
}

impl Staging {
    const fn new() -> Self {
        Self {
            buf: [0; STAGING],
            len: 0,
        }
    }

    fn room(&self) -> usize {
        STAGING - self.len
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Appends the sample's wire form; callers leave [`MAX_SAMPLE_BYTES`] of
    /// room, which always suffices, so a refusal (which would only drop this
    /// sample, seen by the host as a gap) cannot happen in practice.
    fn push_sample(&mut self, sample: &ImuSample) {
        if let Ok(n) = Sampler::encode(sample, FORMAT, &mut self.buf[self.len..]) {
            self.len += n;
        }
    }

    /// Sends everything in max-size packets, closing the transfer with a
    /// short (possibly zero-length) packet so the host returns the data now.
    async fn flush(&mut self, tx: &mut Sender<'static, UsbDriver>) -> Result<(), EndpointError> {
        let bytes = &self.buf[..self.len];
        for chunk in bytes.chunks(PACKET) {
            tx.write_packet(chunk).await?;
        }
        if self.len > 0 && self.len.is_multiple_of(PACKET) {
            tx.write_packet(&[]).await?;
        }
        self.len = 0;
        Ok(())
    }
}

/// What goes over the port in this build.
#[cfg(not(feature = "csv"))]
const FORMAT: StreamFormat = StreamFormat::Frames;
#[cfg(feature = "csv")]
const FORMAT: StreamFormat = StreamFormat::Csv;

const _: () = assert!(MAX_SAMPLE_BYTES <= STAGING);

/// One connected session.
async fn stream(tx: &mut Sender<'static, UsbDriver>) -> Result<(), EndpointError> {
    let mut staging = Staging::new();
    #[cfg(not(feature = "csv"))]
    let mut info_due = Instant::now();
    #[cfg(feature = "csv")]
    {
        staging.push(xiao_proto::CSV_HEADER.as_bytes());
        staging.push(xiao_proto::CSV_LINE_END.as_bytes());
    }
    loop {
        #[cfg(not(feature = "csv"))]
        if Instant::now() >= info_due {
            staging.push(xiao_proto::Frame::from(DEVICE_INFO).encode().as_bytes());
            info_due = Instant::now() + INFO_PERIOD;
        }
        let first = SAMPLES.receive().await;
        staging.push_sample(&first);
        // Take whatever else is already waiting, as long as it surely fits.
        while staging.room() >= MAX_SAMPLE_BYTES {
            match SAMPLES.try_receive() {
                Ok(sample) => staging.push_sample(&sample),
                Err(_) => break,
            }
        }
        staging.flush(tx).await?;
    }
}
