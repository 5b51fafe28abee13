//! kwik-recorder (work in progress).
