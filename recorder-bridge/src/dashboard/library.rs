//! The recordings on disk as the browser sees them: listed by folder with their
//! sidecars, resolved strictly inside the recordings root (no `..`, no absolute path,
//! no symlink leading out), deleted whole (data parts and sidecar) unless in progress,
//! and previewed as min/max columns read row by row (bounded memory).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::check::verify::layout_of;
use crate::dashboard::channels::Channels;
use crate::dashboard::columnar_preview;
use crate::dashboard::decimate::{Columns, MinMax};
use crate::format::csv::CsvLines;
use crate::format::labview::{LABVIEW_ROWS, parse_labview};
use crate::format::schema::{EfieldSample, ImuRow, SchemaKind, StagePosition};
use crate::format::segment::LineState;
use crate::store::sidecar::{Sidecar, SidecarError, sidecar_path};

/// Folders below the root that are searched (`<device>/<date>/` under `serve`).
const LIST_DEPTH: usize = 3;

/// Why a path from a request was refused or not found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path is absolute, empty, or has `..`/`.` parts.
    #[error("path {0:?} is not a plain path inside the recordings folder")]
    NotRelative(String),
    /// The path resolves (through a symlink) outside the root.
    #[error("path {0:?} leads outside the recordings folder")]
    Outside(String),
    /// Nothing is there.
    #[error("no recording file at {0:?}")]
    NotFound(String),
}

/// Why a recording could not be deleted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeleteError {
    /// Its path was refused.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Its sidecar could not be read.
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    /// It is being recorded.
    #[error("{0} is being recorded; stop the recording before deleting it")]
    InProgress(String),
    /// A file could not be removed.
    #[error("cannot delete {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Why a preview could not be drawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreviewError {
    /// Its path was refused.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Its sidecar could not be read.
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    /// The layout or schema has no preview.
    #[error(
        "no preview for {0}; previews read the xiao-imu, efield and stage schemas in CSV, Parquet and MCAP, and the LabVIEW layout"
    )]
    Unsupported(String),
    /// A data file could not be read or parsed.
    #[error("cannot read {path}: {reason}")]
    Data {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// One recording (one stream's sidecar) in the list.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The sidecar, relative to the root (the id the other endpoints take).
    pub path: String,
    /// Its folder, relative to the root (a date, or `<device>/<date>`).
    pub folder: String,
    /// Data files, relative to the root.
    pub data: Vec<String>,
    /// True while it is being recorded by this process.
    pub live: bool,
    /// The sidecar, when readable.
    pub meta: Option<Sidecar>,
    /// Why the sidecar is unreadable.
    pub error: Option<String>,
}

/// A decimated preview of a recorded stream.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The sidecar, relative to the root.
    pub path: String,
    /// Schema name.
    pub schema: String,
    /// Channel names.
    pub channels: &'static [&'static str],
    /// Channel units.
    pub units: &'static [&'static str],
    /// Samples read.
    pub samples: u64,
    /// Samples per column.
    pub per_column: u64,
    /// The columns.
    pub columns: Columns,
}

/// The recordings root of a dashboard.
#[derive(Debug, Clone)]
pub struct RecordingsRoot {
    root: PathBuf,
}

impl RecordingsRoot {
    /// The folder `root` (created if missing), resolved once so that later requests
    /// are checked against its real location.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(RecordingsRoot {
            root: root.canonicalize()?,
        })
    }

    /// The resolved root.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Resolves `rel` to an existing file inside the root.
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, PathError> {
        let p = Path::new(rel);
        let plain = !rel.is_empty()
            && p.components().all(|c| matches!(c, Component::Normal(_)))
            && !rel.contains('\\');
        if !plain {
            return Err(PathError::NotRelative(rel.to_owned()));
        }
        let joined = self.root.join(p);
        let real = joined
            .canonicalize()
            .map_err(|_| PathError::NotFound(rel.to_owned()))?;
        if !real.starts_with(&self.root) {
            return Err(PathError::Outside(rel.to_owned()));
        }
        if !real.is_file() {
            return Err(PathError::NotFound(rel.to_owned()));
        }
        Ok(real)
    }

    /// `abs` relative to the root, `/`-separated (abs must be inside it).
    pub fn relative(&self, abs: &Path) -> String {
        let rel = abs.strip_prefix(&self.root).unwrap_or(abs);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Every recording under the root, newest folder first, then by name; `live` are the
    /// sidecars being written now.
    pub fn list(&self, live: &[PathBuf]) -> Vec<Entry> {
        let mut sidecars = Vec::new();
        find_sidecars(&self.root, LIST_DEPTH, &mut sidecars);
        let live: Vec<PathBuf> = live.iter().filter_map(|p| p.canonicalize().ok()).collect();
        let mut out: Vec<Entry> = sidecars
            .into_iter()
            .map(|p| {
                let dir = p.parent().unwrap_or(&self.root);
                let (meta, error) = match Sidecar::read(&p) {
                    Ok(m) => (Some(m), None),
                    Err(e) => (None, Some(e.to_string())),
                };
                let data = meta
                    .as_ref()
                    .map(|m| {
                        m.parts
                            .iter()
                            .map(|part| self.relative(&dir.join(&part.file)))
                            .collect()
                    })
                    .unwrap_or_default();
                Entry {
                    path: self.relative(&p),
                    folder: self.relative(dir),
                    data,
                    live: live.contains(&p),
                    meta,
                    error,
                }
            })
            .collect();
        out.sort_by(|a, b| b.folder.cmp(&a.folder).then(a.path.cmp(&b.path)));
        out
    }

    /// Resolves the sidecar of the recording `rel` names (its sidecar or a data file).
    fn sidecar_of(&self, rel: &str) -> Result<PathBuf, PathError> {
        let real = self.resolve(rel)?;
        let sc = sidecar_path(&real);
        if sc.is_file() && sc.starts_with(&self.root) {
            Ok(sc)
        } else {
            Err(PathError::NotFound(rel.to_owned()))
        }
    }

    /// Deletes the recording `rel` names: every data part and the sidecar. Refused while
    /// its sidecar is among `live`. Returns the removed files, relative to the root.
    pub fn delete(&self, rel: &str, live: &[PathBuf]) -> Result<Vec<String>, DeleteError> {
        let sc = self.sidecar_of(rel)?;
        if live
            .iter()
            .filter_map(|p| p.canonicalize().ok())
            .any(|p| p == sc)
        {
            return Err(DeleteError::InProgress(self.relative(&sc)));
        }
        let meta = Sidecar::read(&sc)?;
        let dir = sc.parent().unwrap_or(&self.root).to_path_buf();
        let mut files = Vec::new();
        for part in &meta.parts {
            let rel_part = self.relative(&dir.join(&part.file));
            match self.resolve(&rel_part) {
                Ok(p) => files.push(p),
                // A part already gone (deleted by hand) is not an error.
                Err(PathError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        files.push(sc);
        let mut removed = Vec::new();
        for f in files {
            std::fs::remove_file(&f).map_err(|source| DeleteError::Io {
                path: self.relative(&f),
                source,
            })?;
            removed.push(self.relative(&f));
        }
        Ok(removed)
    }

    /// A preview of the recording `rel` names in at most `width` columns.
    pub fn preview(&self, rel: &str, width: usize) -> Result<Preview, PreviewError> {
        let sc = self.sidecar_of(rel)?;
        let meta = Sidecar::read(&sc)?;
        if !matches!(meta.format.as_str(), "csv" | "labview" | "parquet" | "mcap") {
            return Err(PreviewError::Unsupported(format!(
                "the {} layout",
                meta.format
            )));
        }
        let dir = sc.parent().unwrap_or(&self.root).to_path_buf();
        let mut parts = Vec::new();
        for part in &meta.parts {
            parts.push(self.resolve(&self.relative(&dir.join(&part.file)))?);
        }
        let path = self.relative(&sc);
        match meta.format.as_str() {
            "labview" => return preview_labview(self, path, &meta, &parts, width),
            "parquet" | "mcap" => {
                return columnar_preview::preview(self, path, &meta, &parts, width);
            }
            _ => {}
        }
        match SchemaKind::from_name(&meta.schema) {
            Some(SchemaKind::Imu) => preview_of::<ImuRow>(self, path, &meta, &parts, width),
            Some(SchemaKind::Efield) => {
                preview_of::<EfieldSample>(self, path, &meta, &parts, width)
            }
            Some(SchemaKind::Stage) => {
                preview_of::<StagePosition>(self, path, &meta, &parts, width)
            }
            _ => Err(PreviewError::Unsupported(format!("schema {}", meta.schema))),
        }
    }
}

/// A preview being drawn: samples pushed in file order become at most `width` min/max
/// columns (each covering the same number of the sidecar's samples).
pub(super) struct PreviewDraw {
    dec: MinMax,
    columns: Columns,
    per_column: u64,
    samples: u64,
}

impl PreviewDraw {
    /// A preview of `channels` channels of the recording `meta` in `width` columns.
    pub(super) fn new(meta: &Sidecar, channels: usize, width: usize) -> Self {
        let per_column = meta.samples.div_ceil(width.max(1) as u64).max(1);
        PreviewDraw {
            dec: MinMax::new(channels, per_column),
            columns: Columns::new(channels),
            per_column,
            samples: 0,
        }
    }

    /// One sample at `t` seconds.
    pub(super) fn push(&mut self, t: f64, values: &[f64]) {
        self.dec.push(t, values, &mut self.columns);
        self.samples += 1;
    }

    /// The preview of the sidecar `path`.
    pub(super) fn finish(
        mut self,
        path: String,
        meta: &Sidecar,
        channels: &'static [&'static str],
        units: &'static [&'static str],
    ) -> Preview {
        self.dec.flush(&mut self.columns);
        Preview {
            path,
            schema: meta.schema.clone(),
            channels,
            units,
            samples: self.samples,
            per_column: self.per_column,
            columns: self.columns,
        }
    }
}

fn preview_of<S: Channels>(
    root: &RecordingsRoot,
    path: String,
    meta: &Sidecar,
    parts: &[PathBuf],
    width: usize,
) -> Result<Preview, PreviewError> {
    let mut draw = PreviewDraw::new(meta, S::NAMES.len(), width);
    let mut values = vec![0.0; S::NAMES.len()];
    for part in parts {
        let data_err = |reason: String| PreviewError::Data {
            path: root.relative(part),
            reason,
        };
        let f = File::open(part).map_err(|e| data_err(e.to_string()))?;
        let mut lines = BufReader::new(f);
        let mut line = String::new();
        // The same rules as `verify` (comment lines, the bench layout's empty line, the
        // header row, the footer).
        let mut csv = CsvLines::<S>::default();
        loop {
            line.clear();
            let read = lines
                .read_line(&mut line)
                .map_err(|e| data_err(e.to_string()))?;
            // End of file, or a last row cut by a crash (no newline): stop there.
            if read == 0 || !line.ends_with('\n') {
                break;
            }
            let l = line.trim_end_matches(['\n', '\r']);
            let Some(row) = csv.push(l).map_err(|e| data_err(e.to_string()))? else {
                continue;
            };
            row.values(&mut values);
            draw.push(row.time_s(), &values);
        }
    }
    Ok(draw.finish(path, meta, S::NAMES, S::UNITS))
}

/// What a LabVIEW file holds of each E-field sample (ADC2 ch3/ch4 are not in it), as
/// its preview draws it.
pub(super) const LABVIEW_CHANNELS: &[&str] = &[
    "ex_real (adc1_ch1)",
    "ex_imag (adc1_ch2)",
    "ey_real (adc1_ch3)",
    "ey_imag (adc1_ch4)",
    "ez_real (adc2_ch1)",
    "ez_imag (adc2_ch2)",
    "scan_state",
];
pub(super) const LABVIEW_UNITS: &[&str] = &["V", "V", "V", "V", "V", "V", "0/1"];

/// The preview of a LabVIEW layout recording: read one 16-row block at a time (memory
/// bounded by the block size), each block parsed by the same parser `verify` uses, with
/// the sidecar's constants.
fn preview_labview(
    root: &RecordingsRoot,
    path: String,
    meta: &Sidecar,
    parts: &[PathBuf],
    width: usize,
) -> Result<Preview, PreviewError> {
    let layout = layout_of(meta).map_err(|reason| PreviewError::Data {
        path: path.clone(),
        reason,
    })?;
    let n = LABVIEW_CHANNELS.len();
    let mut draw = PreviewDraw::new(meta, n, width);
    for part in parts {
        let data_err = |reason: String| PreviewError::Data {
            path: root.relative(part),
            reason,
        };
        let f = File::open(part).map_err(|e| data_err(e.to_string()))?;
        let mut lines = BufReader::new(f);
        let mut block = String::new();
        let (mut rows, mut blocks) = (0, 0usize);
        loop {
            let at = block.len();
            let read = lines
                .read_line(&mut block)
                .map_err(|e| data_err(e.to_string()))?;
            // End of file, or a last row cut by a crash (no newline): stop there; an
            // unfinished block is left out.
            if read == 0 || !block.ends_with('\n') {
                block.truncate(at);
                break;
            }
            rows += 1;
            if rows < LABVIEW_ROWS {
                continue;
            }
            let parsed = parse_labview(block.as_bytes(), &layout)
                .map_err(|e| data_err(format!("block {}: {e}", blocks + 1)))?;
            for v in &parsed.samples {
                let values = [
                    v.ex_real,
                    v.ex_imag,
                    v.ey_real,
                    v.ey_imag,
                    v.ez_real,
                    v.ez_imag,
                    f64::from(u8::from(v.line == LineState::Active)),
                ];
                draw.push(v.time.as_secs_f64(), &values);
            }
            block.clear();
            rows = 0;
            blocks += 1;
        }
    }
    Ok(draw.finish(path, meta, LABVIEW_CHANNELS, LABVIEW_UNITS))
}

/// Collects `*.meta.json` files, following no symlink.
fn find_sidecars(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let p = e.path();
        if ft.is_dir() && depth > 0 {
            find_sidecars(&p, depth - 1, out);
        } else if ft.is_file() && p.to_string_lossy().ends_with(".meta.json") {
            out.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_inside_the_root_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let root = RecordingsRoot::new(&dir.path().join("rec")).unwrap();
        std::fs::create_dir_all(root.path().join("2026-01-01")).unwrap();
        std::fs::write(root.path().join("2026-01-01/a.csv"), b"x").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.path().join("link")).unwrap();
        assert!(root.resolve("2026-01-01/a.csv").is_ok());
        for bad in [
            "../secret",
            "/etc/passwd",
            "2026-01-01/../../secret",
            "./x",
            "",
        ] {
            assert!(
                matches!(root.resolve(bad), Err(PathError::NotRelative(_))),
                "{bad}"
            );
        }
        assert!(matches!(root.resolve("link"), Err(PathError::Outside(_))));
        assert!(matches!(
            root.resolve("2026-01-01"),
            Err(PathError::NotFound(_))
        ));
        assert!(matches!(
            root.resolve("nope.csv"),
            Err(PathError::NotFound(_))
        ));
    }
}
