#![no_main]
//! The file parsers `verify` and `recover` run on data files: standard CSV for each
//! schema and the LabVIEW layout. The first byte picks the parser. Any bytes give
//! rows or a typed `ParseError`, never a panic.

use kwik_recorder::{EfieldSample, ImuRow, LabviewLayout, StagePosition, parse_csv, parse_labview};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    match pick % 4 {
        0 => drop(parse_csv::<ImuRow>(file)),
        1 => drop(parse_csv::<EfieldSample>(file)),
        2 => drop(parse_csv::<StagePosition>(file)),
        _ => drop(parse_labview(file, &LabviewLayout::default())),
    }
});
