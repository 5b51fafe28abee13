//! xiao-proto (work in progress).
