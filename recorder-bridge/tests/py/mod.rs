//! Runs the Python reader scripts beside this file with the test venv's interpreter.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The interpreter: `$KWIK_PYTHON`, else `<workspace>/target/py-venv/bin/python`. When
/// it is missing, prints one line saying so and returns `None` (the test skips), unless
/// `KWIK_REQUIRE_PYTHON=1`, where it fails.
pub(crate) fn python() -> Option<PathBuf> {
    let p = match std::env::var_os("KWIK_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/py-venv/bin/python"),
    };
    if p.exists() {
        return Some(p);
    }
    let msg = format!(
        "no Python interpreter at {} (set KWIK_PYTHON or run tools/py-venv); skipping the reader check",
        p.display()
    );
    if std::env::var("KWIK_REQUIRE_PYTHON").as_deref() == Ok("1") {
        panic!("{msg}");
    }
    eprintln!("{msg}");
    None
}

/// Runs `tests/py/<script>` with `args`; panics with its output unless it exits 0.
/// Returns its standard output.
pub(crate) fn run(python: &Path, script: &str, args: &[&Path]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let out = Command::new(python).arg(&path).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
