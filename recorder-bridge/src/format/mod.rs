//! What the files hold and how it is written, pure (no I/O, no clock). Layers, each using
//! only the ones before it: [`time`] and [`segment`] (column values) → [`number`] (the
//! text of numbers), [`packed`] (a sample as words, for the ring) → [`schema`] (the sample types and their rows) → [`footer`],
//! [`parse_error`] → [`compat`] (other tools' conventions) → [`csv`], [`labview`] (the two text layouts) → [`encoder`]; [`columns`] and [`json_rows`] (rows as
//! typed columns and as JSON, for the columnar writers).

pub mod columns;
pub mod compat;
pub mod csv;
pub mod encoder;
pub mod footer;
pub mod json_rows;
pub mod labview;
pub mod number;
pub mod packed;
pub mod parse_error;
pub mod schema;
pub mod segment;
pub mod time;
