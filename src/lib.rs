//! Test fixtures shared by the workspace's loopback tests and benches.
