//! The microphone task: PDM → 16 kHz PCM → RMS per window, published as the
//! latest value for the sensor task to pick up.

use core::sync::atomic::{AtomicU32, Ordering};

use embassy_nrf::gpio::Output;
use embassy_nrf::pdm::Pdm;
use embassy_time::{Duration, Timer};

use xiao_proto::pcm_rms;

/// Samples per RMS window: 1024 at 16 kHz = 64 ms.
const WINDOW: usize = 1024;
/// Microphone power-up (MSM261D3526H1CPM start-up is ~10 ms) and the PDM
/// decimation filter's settling, with margin.
const STARTUP: Duration = Duration::from_millis(50);

/// f32 bits of the latest RMS (0.0 until the first window completes).
static LATEST_RMS: AtomicU32 = AtomicU32::new(0);

/// The most recent window's RMS in 16-bit full-scale counts.
pub(crate) fn latest_rms() -> f32 {
    f32::from_bits(LATEST_RMS.load(Ordering::Relaxed))
}

/// Owns the PDM peripheral and the microphone's power switch.
#[embassy_executor::task]
pub(crate) async fn mic_task(mut pdm: Pdm<'static>, mic_power: Output<'static>) -> ! {
    // Held for the life of the task: dropping the Output would float the pin
    // and switch the microphone off.
    let _power = mic_power;
    Timer::after(STARTUP).await;
    pdm.start().await;
    Timer::after(STARTUP).await;
    let mut pcm = [0i16; WINDOW];
    loop {
        match pdm.sample(&mut pcm).await {
            Ok(()) => LATEST_RMS.store(pcm_rms(&pcm).to_bits(), Ordering::Relaxed),
            Err(_) => {
                // Only `NotRunning` can happen with this fixed, non-empty buffer.
                pdm.start().await;
                Timer::after(STARTUP).await;
            }
        }
    }
}
