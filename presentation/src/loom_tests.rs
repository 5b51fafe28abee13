//! loom models of the concurrent parts (built only with `--cfg loom`).
