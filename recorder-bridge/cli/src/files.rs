//! `kwik-record ls`, `recover` and `verify`: recordings already on disk.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use kwik_recorder::{RunPiece, RunsReport, Sidecar, VerifyReport, check_runs, recover, verify};

use crate::exit::{Exit, usage};

fn find_sidecars(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() && depth > 0 {
            find_sidecars(&p, depth - 1, out);
        } else if p.to_string_lossy().ends_with(".meta.json") {
            out.push(p);
        }
    }
}

pub(crate) fn cmd_ls(dir: &Path, json: bool) -> Result<ExitCode> {
    if !dir.is_dir() {
        return Err(usage(format!(
            "{} is not a folder; give the recordings folder (default `recordings`)",
            dir.display()
        )));
    }
    let mut paths = Vec::new();
    find_sidecars(dir, 3, &mut paths);
    paths.sort();
    let mut rows = Vec::new();
    for p in &paths {
        match Sidecar::read(p) {
            Ok(sc) => rows.push((p.clone(), Some(sc))),
            Err(_) => rows.push((p.clone(), None)),
        }
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, sc)| serde_json::json!({ "sidecar": p, "meta": sc }))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!("no recordings under {}", dir.display());
    }
    print_rows(rows.into_iter().map(|(p, sc)| {
        let name = p
            .strip_prefix(dir)
            .unwrap_or(&p)
            .to_string_lossy()
            .trim_end_matches(".meta.json")
            .to_owned();
        (name, sc)
    }));
    Ok(ExitCode::SUCCESS)
}

/// The table of `ls`: one row per recording (its name and sidecar, `None` if unreadable).
pub(crate) fn print_rows(rows: impl IntoIterator<Item = (String, Option<Sidecar>)>) {
    outln!(
        "{:<48} {:<8} {:<10} {:>10} {:>12} {:>9} {:>12}",
        "recording",
        "format",
        "state",
        "duration",
        "samples",
        "dropped",
        "bytes"
    );
    for (name, sc) in rows {
        match sc {
            Some(sc) => outln!(
                "{:<48} {:<8} {:<10} {:>9.1}s {:>12} {:>9} {:>12}",
                name,
                sc.format,
                format!("{:?}", sc.state).to_lowercase(),
                sc.duration_s,
                sc.samples,
                sc.dropped.total(),
                sc.file_size
            ),
            None => outln!("{name:<48} unreadable sidecar (try `kwik-record verify`)"),
        }
    }
}

pub(crate) fn cmd_recover(file: &Path, json: bool) -> Result<ExitCode> {
    let r = recover(file)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else if r.repaired {
        outln!(
            "recovered {}: {} samples, cut {} bytes of partial rows, added {} footer(s)",
            r.sidecar.display(),
            r.samples,
            r.truncated_bytes,
            r.footers_added
        );
    } else {
        outln!(
            "{} was already closed cleanly; nothing to do",
            r.sidecar.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what verifying several recordings found (each by its name, or the error
/// that kept it from being checked) and how their runs fit together; exit code as for
/// one recording, over all of them.
pub(crate) fn report_many(
    checked: Vec<(String, Result<VerifyReport, String>)>,
    runs: &RunsReport,
    json: bool,
) -> ExitCode {
    let ok = runs.problems.is_empty()
        && checked
            .iter()
            .all(|(_, r)| r.as_ref().is_ok_and(VerifyReport::is_ok));
    if json {
        let recordings: Vec<_> = checked
            .iter()
            .map(|(name, r)| match r {
                Ok(r) => serde_json::json!({ "recording": name, "ok": r.is_ok(), "report": r }),
                Err(e) => serde_json::json!({ "recording": name, "ok": false, "error": e }),
            })
            .collect();
        outln!(
            "{}",
            serde_json::json!({ "ok": ok, "recordings": recordings, "runs": runs })
        );
    } else {
        if checked.is_empty() {
            outln!("no recordings found");
        }
        for (name, r) in &checked {
            match r {
                Ok(r) if r.is_ok() => outln!(
                    "OK {name}: {} samples in {} file(s) match the sidecar",
                    r.samples,
                    r.parts
                ),
                Ok(r) => {
                    outln!("MISMATCH {name}:");
                    for p in &r.problems {
                        outln!("  - {p}");
                    }
                }
                Err(e) => outln!("ERROR {name}: {e}"),
            }
        }
        for run in &runs.runs {
            outln!(
                "run {} of {}: samples {}..{} in {} recording(s)",
                run.run,
                run.stream,
                run.first_seq,
                run.end_seq,
                run.recordings
            );
        }
        for d in &runs.duplicates {
            outln!("note: {d}: the same samples twice (a failover's unconfirmed tail)");
        }
        for p in &runs.problems {
            outln!("MISMATCH {p}");
        }
    }
    Exit::lossless(ok).into()
}

/// `verify FOLDER`: every recording below it, and how their runs fit together.
fn cmd_verify_folder(dir: &Path, json: bool) -> ExitCode {
    let mut sidecars = Vec::new();
    find_sidecars(dir, 4, &mut sidecars);
    sidecars.sort();
    let mut checked = Vec::new();
    let mut pieces = Vec::new();
    for sc in sidecars {
        let name = sc.display().to_string();
        if let Ok(s) = Sidecar::read(&sc) {
            pieces.extend(RunPiece::of(&name, &s));
        }
        checked.push((name, verify(&sc).map_err(|e| e.to_string())));
    }
    report_many(checked, &check_runs(pieces), json)
}

pub(crate) fn cmd_verify(file: &Path, json: bool) -> Result<ExitCode> {
    if file.is_dir() {
        return Ok(cmd_verify_folder(file, json));
    }
    let r = verify(file)?;
    if json {
        outln!("{}", serde_json::json!({ "ok": r.is_ok(), "report": r }));
    } else if r.is_ok() {
        outln!(
            "OK {}: {} samples in {} file(s) match the sidecar",
            r.sidecar.display(),
            r.samples,
            r.parts
        );
    } else {
        outln!("MISMATCH {}:", r.sidecar.display());
        for p in &r.problems {
            outln!("  - {p}");
        }
    }
    Ok(Exit::lossless(r.is_ok()).into())
}
