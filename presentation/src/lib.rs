//! kwik-presentation (work in progress).
