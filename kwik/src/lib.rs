//! kwik (work in progress).
