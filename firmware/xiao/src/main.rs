//! XIAO nRF52840 Sense firmware (skeleton).
#![no_std]
#![no_main]
use embassy_executor::Spawner;
use panic_halt as _;
#[embassy_executor::main]
async fn main(_s: Spawner) {
    let _p = embassy_nrf::init(Default::default());
    loop {
        embassy_time::Timer::after_millis(100).await;
    }
}
