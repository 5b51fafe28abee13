//! Object storage on the command line: the `--store` flags of `record` and `serve`, the
//! `upload` command (finish what a stopped recorder left), and `ls` / `verify` of
//! `s3://` addresses. The work is the library's (`kwik_recorder::upload`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use kwik_recorder::{
    PartSize, Retention, StoreConfig, StoreUrl, UploadConfig, UploadReport, Uploader,
    fetch_recording, list_sidecars, verify,
};

use crate::exit::{Exit, usage};
use crate::runtime::{err, runtime};

/// How to reach an S3-compatible store; unset values come from the `AWS_*` variables.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct StoreConnArgs {
    /// Endpoint URL of an S3-compatible store, e.g. http://127.0.0.1:9000 (default
    /// AWS_ENDPOINT, else AWS itself); requests are path-style.
    #[arg(long, value_name = "URL")]
    store_endpoint: Option<String>,
    /// Region of the bucket (default AWS_REGION or AWS_DEFAULT_REGION, else us-east-1).
    #[arg(long, value_name = "REGION")]
    store_region: Option<String>,
    /// Access key id (default AWS_ACCESS_KEY_ID).
    #[arg(long, value_name = "ID")]
    store_access_key_id: Option<String>,
    /// Secret access key (default AWS_SECRET_ACCESS_KEY, which is better: a flag shows in
    /// the process list).
    #[arg(long, value_name = "KEY")]
    store_secret_access_key: Option<String>,
    /// Allow a plain-http endpoint, e.g. a store on this machine (default AWS_ALLOW_HTTP).
    #[arg(long)]
    store_allow_http: bool,
}

impl StoreConnArgs {
    fn config(&self, url: StoreUrl) -> StoreConfig {
        let mut c = StoreConfig::new(url);
        c.endpoint = self.store_endpoint.clone();
        c.region = self.store_region.clone();
        c.access_key_id = self.store_access_key_id.clone();
        c.secret_access_key = self.store_secret_access_key.clone();
        c.allow_http |= self.store_allow_http;
        c
    }
}

/// The `--store` flags of `record` and `serve` (and `upload`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct UploadArgs {
    /// Upload every finished data part and sidecar below the output folder to
    /// s3://BUCKET/PREFIX (key PREFIX/PATH, PATH the path below the folder), verify each object's
    /// SHA-256, then remove the local copy (see --keep-local, --keep-hours).
    #[arg(long, value_name = "s3://BUCKET/PREFIX", value_parser = parse_store_url)]
    store: Option<StoreUrl>,
    #[command(flatten)]
    conn: StoreConnArgs,
    /// Multipart part size, 5M to 5G; a file up to this size goes up in one request.
    #[arg(long, value_name = "SIZE", value_parser = parse_part_size, default_value = "16M")]
    store_part_size: PartSize,
    /// Keep the local files after their upload is verified.
    #[arg(long, conflicts_with = "keep_hours")]
    keep_local: bool,
    /// Keep the local files this many hours after their upload is verified, then remove
    /// them.
    #[arg(long, value_name = "HOURS", value_parser = parse_hours)]
    keep_hours: Option<Duration>,
    /// The longest wait between two attempts of a failed upload (the wait starts at
    /// 250 ms and doubles).
    #[arg(long, value_name = "DURATION", value_parser = crate::args::parse_duration, default_value = "30s")]
    store_retry_max: Duration,
    /// When recording stops, wait at most this long for the uploads to finish; what is
    /// left stays on disk, and `kwik-record upload` continues it.
    #[arg(long, value_name = "DURATION", value_parser = crate::args::parse_duration, default_value = "10m")]
    store_wait: Duration,
    /// Upload at most this many bytes per second on average (e.g. 2M; default no limit).
    #[arg(long, value_name = "BYTES", value_parser = crate::record::parse_size)]
    store_bandwidth: Option<u64>,
}

fn parse_store_url(s: &str) -> Result<StoreUrl, String> {
    StoreUrl::parse(s).map_err(|e| e.to_string())
}

fn parse_part_size(s: &str) -> Result<PartSize, String> {
    let n = crate::record::parse_size(s)?;
    PartSize::try_from(n).map_err(|e| e.to_string())
}

fn parse_hours(s: &str) -> Result<Duration, String> {
    let h: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of hours"))?;
    if !h.is_finite() || h < 0.0 {
        return Err(format!("{s:?} is not a number of hours"));
    }
    Ok(Duration::from_secs_f64(h * 3600.0))
}

impl UploadArgs {
    /// Starts the uploader over `root` when `--store` is given.
    pub(crate) fn start(&self, root: &Path) -> Result<Option<Running>> {
        let Some(url) = &self.store else {
            return Ok(None);
        };
        let mut config = UploadConfig::new(self.conn.config(url.clone()));
        config.part_size = self.store_part_size;
        config.retention = match (self.keep_local, self.keep_hours) {
            (true, _) => Retention::Keep,
            (false, Some(d)) => Retention::KeepFor(d),
            (false, None) => Retention::Remove,
        };
        config.retry_cap = self.store_retry_max;
        config.bandwidth = self.store_bandwidth;
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let uploader = Uploader::spawn(root, config)
            .with_context(|| format!("cannot upload {} to {url}", root.display()))?;
        Ok(Some(Running {
            uploader,
            root: root.to_path_buf(),
            wait: self.store_wait,
        }))
    }
}

/// An uploader started by a command, and what it needs to finish.
#[derive(Debug)]
pub(crate) struct Running {
    uploader: Uploader,
    root: PathBuf,
    wait: Duration,
}

impl Running {
    /// The upload counts so far, as a short phrase for progress lines.
    pub(crate) fn progress(&self) -> String {
        let c = self.uploader.counts();
        format!("{} uploaded, {} pending", c.files, c.pending)
    }

    /// Uploads what is left (waiting at most `--store-wait`) and reports.
    pub(crate) fn finish(self) -> Finished {
        let report = self.uploader.finish(self.wait);
        Finished {
            report,
            root: self.root,
        }
    }
}

/// The end of an upload run.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The library's report.
    pub(crate) report: UploadReport,
    root: PathBuf,
}

impl Finished {
    /// One line of text for the command's summary.
    pub(crate) fn line(&self) -> String {
        let c = &self.report.counts;
        format!(
            "upload to {}: {} file(s), {} bytes stored and verified ({} multipart parts), \
             {} retries, {} resumed, {} pending, {} local file(s) removed",
            self.report.store,
            c.files,
            c.bytes,
            c.parts,
            c.retries,
            c.resumed,
            c.pending,
            c.removed_local
        )
    }

    /// The exit status of a command that would end with `exit`: an incomplete upload is
    /// reported on standard error and turns a success into [`Exit::Environment`] (3).
    pub(crate) fn exit(&self, exit: Exit) -> Exit {
        match self.outcome() {
            Ok(()) => exit,
            Err(e) => {
                // Not eprintln!: a closed stderr must not turn this into a panic.
                let _ = writeln!(std::io::stderr(), "error: {e:#}");
                if exit == Exit::Ok {
                    Exit::Environment
                } else {
                    exit
                }
            }
        }
    }

    /// Ok when everything was stored; else the error that says what is left and how to
    /// finish it (exit code 3).
    pub(crate) fn outcome(&self) -> Result<()> {
        if self.report.is_complete() {
            return Ok(());
        }
        let why = self
            .report
            .error
            .clone()
            .or_else(|| self.report.last_failure.clone())
            .unwrap_or_else(|| "the wait for the uploads ended".into());
        Err(anyhow!(
            "upload to {} incomplete: {why}. The files not yet stored are kept in {}; \
             `kwik-record upload {} --store {}` continues",
            self.report.store,
            self.root.display(),
            self.root.display(),
            self.report.store
        ))
    }
}

/// `kwik-record upload DIR --store s3://…`.
#[derive(Debug, clap::Args)]
pub(crate) struct UploadCommandArgs {
    /// The recordings folder (default `recordings`).
    dir: Option<PathBuf>,
    #[command(flatten)]
    upload: UploadArgs,
}

/// Resumes the journal of DIR and uploads every finished recording in it, then exits.
pub(crate) fn cmd_upload(a: UploadCommandArgs, json: bool) -> Result<ExitCode> {
    let dir = a.dir.unwrap_or_else(|| PathBuf::from("recordings"));
    if !dir.is_dir() {
        return Err(usage(format!("{} is not a folder", dir.display())));
    }
    let Some(running) = a.upload.start(&dir)? else {
        return Err(usage("upload needs --store s3://BUCKET/PREFIX"));
    };
    let done = running.finish();
    if json {
        outln!("{}", serde_json::to_string_pretty(&done.report)?);
    } else {
        outln!("{}", done.line());
    }
    done.outcome()?;
    Ok(ExitCode::SUCCESS)
}

/// True when a command's path argument is an object-store address.
pub(crate) fn is_store_address(p: &Path) -> bool {
    p.to_str().is_some_and(|s| s.starts_with("s3://"))
}

fn connect(address: &Path, conn: &StoreConnArgs) -> Result<kwik_recorder::RecordingStore> {
    let s = address.to_string_lossy();
    let url = StoreUrl::parse(&s).map_err(|e| usage(e.to_string()))?;
    kwik_recorder::RecordingStore::connect(&conn.config(url)).map_err(err)
}

/// `kwik-record ls s3://bucket/prefix`: the sidecars in the store, as `ls` shows a folder.
pub(crate) fn cmd_ls_store(address: &Path, conn: &StoreConnArgs, json: bool) -> Result<ExitCode> {
    let store = connect(address, conn)?;
    let found = runtime()?.block_on(list_sidecars(&store)).map_err(err)?;
    let prefix = store.url().prefix();
    let rows: Vec<(String, Option<kwik_recorder::Sidecar>)> = found
        .into_iter()
        .map(|s| {
            let name = s
                .key
                .strip_prefix(prefix)
                .unwrap_or(&s.key)
                .trim_start_matches('/')
                .to_owned();
            (name, s.sidecar.ok())
        })
        .collect();
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(k, sc)| {
                serde_json::json!({
                    "sidecar": format!("{}/{}", store.url(), k),
                    "meta": sc,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!("no recordings under {}", store.url());
    }
    crate::files::print_rows(
        rows.into_iter()
            .map(|(k, sc)| (k.trim_end_matches(".meta.json").to_owned(), sc)),
    );
    Ok(ExitCode::SUCCESS)
}

/// `kwik-record verify s3://bucket/key`: the recording downloaded into a temporary
/// folder and checked there.
pub(crate) fn cmd_verify_store(
    address: &Path,
    conn: &StoreConnArgs,
    json: bool,
) -> Result<ExitCode> {
    let store = connect(address, conn)?;
    let key = store.url().object_key().to_owned();
    let tmp = tempfile::tempdir().context("cannot make a temporary folder")?;
    // A folder (s3://BUCKET/PREFIX/DEVICE, ending in / or with no file suffix): every
    // recording below it, and how the recordings of each run fit together.
    let last = key.rsplit('/').next().unwrap_or("");
    if key.is_empty() || key.ends_with('/') || !last.contains('.') {
        let rt = runtime()?;
        let found = rt.block_on(list_sidecars(&store)).map_err(err)?;
        let mut checked = Vec::new();
        let mut pieces = Vec::new();
        for (i, s) in found.into_iter().enumerate() {
            let name = format!("s3://{}/{}", store.url().bucket(), s.key);
            if let Ok(sc) = &s.sidecar {
                pieces.extend(kwik_recorder::RunPiece::of(&name, sc));
            }
            let into = tmp.path().join(i.to_string());
            let r = std::fs::create_dir_all(&into)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    rt.block_on(fetch_recording(&store, &s.key, &into))
                        .map_err(|e| e.to_string())
                })
                .and_then(|local| verify(&local).map_err(|e| e.to_string()));
            checked.push((name, r));
        }
        let runs = kwik_recorder::check_runs(pieces);
        return Ok(crate::files::report_many(checked, &runs, json));
    }
    let local = runtime()?
        .block_on(fetch_recording(&store, &key, tmp.path()))
        .map_err(err)?;
    let r = verify(&local)?;
    let name = format!(
        "s3://{}/{}",
        store.url().bucket(),
        kwik_recorder::sidecar_path(Path::new(&key)).display()
    );
    if json {
        outln!(
            "{}",
            serde_json::json!({ "ok": r.is_ok(), "sidecar": name, "report": r })
        );
    } else if r.is_ok() {
        outln!(
            "OK {name}: {} samples in {} file(s) match the sidecar",
            r.samples,
            r.parts
        );
    } else {
        outln!("MISMATCH {name}:");
        for p in &r.problems {
            outln!("  - {p}");
        }
    }
    Ok(Exit::lossless(r.is_ok()).into())
}
