//! The critical-section implementation of the USB build.
//!
//! A single-core Cortex-M4 only needs PRIMASK: mask all configurable
//! interrupts and restore the previous state afterwards. The BLE build uses
//! `nrf-mpsl`'s implementation instead, which leaves the radio scheduler's
//! highest-priority interrupts running, so the two must not both be linked;
//! a cargo feature cannot be switched off by another, hence this cfg'd module
//! in place of `cortex-m/critical-section-single-core`.

struct SingleCore;

critical_section::set_impl!(SingleCore);

// SAFETY: on a single core, masking interrupts excludes every other context;
// `acquire` returns whether they were enabled and `release` restores exactly that,
// so nested sections work.
unsafe impl critical_section::Impl for SingleCore {
    unsafe fn acquire() -> bool {
        let was_enabled = cortex_m::register::primask::read().is_active();
        cortex_m::interrupt::disable();
        was_enabled
    }

    unsafe fn release(was_enabled: bool) {
        if was_enabled {
            // SAFETY: re-enables only what `acquire` found enabled.
            unsafe { cortex_m::interrupt::enable() }
        }
    }
}
