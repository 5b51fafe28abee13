//! Getting samples into the recorder: the ring buffer every source writes into, and
//! the notes a device gives of itself.

pub mod device_notes;
pub mod ring;
