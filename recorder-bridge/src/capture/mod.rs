//! Getting samples into the recorder. Layers: [`ring`] (the ring buffer every source
//! writes into) and [`device_notes`] → [`sample_source`] (what a source yields) →
//! [`sources`] (simulators, the XIAO board over serial or BLE) → [`producer`] (the one
//! thread that moves any source into a ring).

pub mod device_notes;
pub mod producer;
pub mod ring;
pub mod sample_source;
pub mod sources;
