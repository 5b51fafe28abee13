#!/usr/bin/env bash
# Build the firmware and turn it into a UF2 file for the XIAO's bootloader.
#
#   tools/build-uf2.sh NAME [cargo build args...]
#   tools/build-uf2.sh usb                     # default features (USB CDC-ACM frames)
#   tools/build-uf2.sh csv --features csv      # USB, CSV text lines
#   tools/build-uf2.sh ble --features ble      # BLE notifications (needs clang)
#   XIAO_RATE_HZ=100 tools/build-uf2.sh usb-100hz
#
# Writes $CARGO_TARGET_DIR (or ./target)/uf2/xiao-NAME.{bin,uf2} and prints
# the flash/RAM sizes. Needs `rustup component add llvm-tools` and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: tools/build-uf2.sh NAME [cargo build args...]}
shift
target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release "$@"
elf=$target_dir/thumbv7em-none-eabihf/release/xiao-firmware
bindir=$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin
out=$target_dir/uf2/xiao-$name
mkdir -p "$target_dir/uf2"
# The vector table must sit at the bootloader's application base.
base=$("$bindir/llvm-objdump" -h "$elf" | awk '$2 == ".vector_table" { print "0x" $4 }')
if [[ $((base)) -ne $((0x27000)) ]]; then
    echo "build-uf2.sh: .vector_table at $base, expected 0x27000 (check memory.x)" >&2
    exit 1
fi
"$bindir/llvm-objcopy" -O binary "$elf" "$out.bin"
python3 tools/uf2.py convert "$out.bin" "$out.uf2" --base "$base" --family 0xADA52840
"$bindir/llvm-size" "$elf"
