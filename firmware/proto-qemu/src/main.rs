//! Boots on a Cortex-M4, runs `xiao_proto::selftest` and reports through semihosting:
//! one line per test on the host's stdout, exit status 0 when all pass, 1 otherwise
//! (a panic also exits with 1).
#![no_std]
#![no_main]

use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::{debug, hprintln};

#[entry]
fn main() -> ! {
    hprintln!("xiao-proto self-tests on Cortex-M4");
    let result = xiao_proto::selftest::run_all(|name, result| match result {
        Ok(()) => hprintln!("test {} ... ok", name),
        Err(f) => hprintln!("test {} ... FAILED: {} (case {})", name, f.check, f.case),
    });
    match result {
        Ok(n) => {
            hprintln!("{} passed", n);
            debug::exit(debug::EXIT_SUCCESS);
        }
        Err(_) => {
            hprintln!("FAILED");
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    // Only reached when no debugger/emulator handles semihosting.
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    hprintln!("panic: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

/// A fault (e.g. an FPU or memory error) must fail the run, not hang it.
#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("hard fault at pc {:#010x}", frame.pc());
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

/// Any unexpected interrupt or exception fails the run.
#[exception]
unsafe fn DefaultHandler(irq: i16) {
    hprintln!("unexpected exception {}", irq);
    debug::exit(debug::EXIT_FAILURE);
}
