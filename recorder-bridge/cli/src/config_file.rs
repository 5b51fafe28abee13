//! `--config FILE`: settings of `serve`, `stream` and `record` from a TOML file.
//!
//! The file has one table per command, `[serve]`, `[stream]` and `[record]`, whose keys
//! are the command's long flag names (`listen = "0.0.0.0:4433"`, `tls-dir = "/etc/kwik"`,
//! `path = ["10.0.0.2:0"]` for a flag that repeats, `quiet = true` for a switch). The
//! file is read before clap parses the command line: each value is checked by the same
//! parser as its flag (so a bad value names its key and the file's line), and becomes
//! flag tokens appended to the command line for every flag the command line does not
//! give itself. Flags therefore override the file, and a value that parses from the
//! file parses the same as a flag.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The commands a config file configures, each by the table of its name.
pub(crate) const TABLES: [&str; 3] = ["serve", "stream", "record"];

/// Flags that are never read from a file.
const NOT_IN_FILES: [&str; 3] = ["config", "help", "version"];

/// Why a config file cannot be used. Each variant names the file, and where the file
/// is at fault its line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// `--config` without a file name.
    #[error("--config needs a file name")]
    MissingPath,
    /// The file cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What reading it said.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("config file {}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message (with the line and column).
        message: String,
    },
    /// A top-level key that is not one of the command tables.
    #[error(
        "{}:{line}: unknown table [{name}]; a config file has the tables [serve], [stream] and [record]",
        path.display()
    )]
    UnknownTable {
        /// The file.
        path: PathBuf,
        /// The line of the table's name.
        line: usize,
        /// The name.
        name: String,
    },
    /// A key of a command table that is no flag of the command.
    #[error("{}:{line}: unknown key `{key}` in [{table}]; known keys: {known}", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key's line.
        line: usize,
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// The command's keys, comma-separated.
        known: String,
    },
    /// A value its flag's parser refuses, or of the wrong TOML type.
    #[error("{}:{line}: bad value for `{key}` in [{table}]: {message}", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The value's line.
        line: usize,
        /// The table.
        table: String,
        /// The key.
        key: String,
        /// Why it is refused.
        message: String,
    },
}

/// Where an effective setting came from, as `config print` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The flag's default.
    Default,
    /// The config file, at this line.
    File(usize),
    /// The command line.
    Flag,
}

/// A command line with the config file's settings merged in.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The command line to parse: the given one plus the file's flags.
    pub(crate) argv: Vec<OsString>,
    /// The config file, if `--config` named one.
    pub(crate) file: Option<PathBuf>,
    /// The subcommand named on the command line.
    pub(crate) command: Option<String>,
    /// Argument ids set from the file, with the line of each.
    pub(crate) from_file: BTreeMap<String, usize>,
}

impl Resolved {
    /// Where the value of argument `id` came from, given clap's view of it.
    pub(crate) fn origin(&self, id: &str, source: Option<clap::parser::ValueSource>) -> Origin {
        match (self.from_file.get(id), source) {
            (Some(line), _) => Origin::File(*line),
            (None, Some(clap::parser::ValueSource::CommandLine)) => Origin::Flag,
            _ => Origin::Default,
        }
    }
}

/// Merges the config file named by `--config` (if any) into `argv`. `cli` is the
/// whole command line's definition.
///
/// # Errors
/// [`ConfigError`] for a missing, unreadable or bad file, an unknown table or key, or
/// a value its flag refuses.
pub(crate) fn resolve(cli: &Command, argv: Vec<OsString>) -> Result<Resolved, ConfigError> {
    let mut cli = cli.clone();
    // Propagates the global flags into the subcommands, so they can be looked up there.
    cli.build();
    let scan = scan(&cli, &argv)?;
    let mut resolved = Resolved {
        argv,
        file: scan.config.clone(),
        command: scan.command.as_ref().map(|(_, c)| c.clone()),
        from_file: BTreeMap::new(),
    };
    let (Some(path), Some((at, name))) = (scan.config, scan.command) else {
        return Ok(resolved);
    };
    if !TABLES.contains(&name.as_str()) {
        return Ok(resolved);
    }
    let Some(sub) = cli.find_subcommand(&name) else {
        return Ok(resolved);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let settings = read_table(&path, &text, sub)?;
    let given = given_flags(sub, &resolved.argv[at + 1..]);
    for s in settings {
        if given.contains(&s.id) {
            continue;
        }
        resolved.argv.extend(s.tokens);
        resolved.from_file.insert(s.id, s.line);
    }
    Ok(resolved)
}

/// What [`scan`] finds on a command line before clap parses it.
#[derive(Debug)]
struct Scan {
    /// The value of `--config`.
    config: Option<PathBuf>,
    /// The subcommand and its position.
    command: Option<(usize, String)>,
}

/// Finds `--config FILE` (anywhere) and the subcommand: the first word that is neither
/// a flag nor the value of a global flag.
fn scan(cli: &Command, argv: &[OsString]) -> Result<Scan, ConfigError> {
    let mut out = Scan {
        config: None,
        command: None,
    };
    let mut i = 1;
    while i < argv.len() {
        let token = argv[i].to_string_lossy();
        if token == "--" {
            break;
        }
        if token == "--config" {
            let file = argv.get(i + 1).ok_or(ConfigError::MissingPath)?;
            out.config = Some(PathBuf::from(file));
            i += 2;
            continue;
        }
        if let Some(file) = token.strip_prefix("--config=") {
            out.config = Some(PathBuf::from(file));
        } else if let Some(long) = token.strip_prefix("--") {
            if out.command.is_none() && !long.contains('=') {
                let takes_value = cli
                    .get_arguments()
                    .find(|a| a.get_long() == Some(long))
                    .is_some_and(|a| a.get_action().takes_values());
                if takes_value {
                    i += 1;
                }
            }
        } else if out.command.is_none() && !token.starts_with('-') {
            out.command = Some((i, token.into_owned()));
        }
        i += 1;
    }
    Ok(out)
}

/// The ids of the arguments of `sub` that `tokens` (its part of the command line) set.
fn given_flags(sub: &Command, tokens: &[OsString]) -> Vec<String> {
    tokens
        .iter()
        .filter_map(|t| {
            let t = t.to_str()?;
            let long = t.strip_prefix("--")?;
            let long = long.split_once('=').map_or(long, |(k, _)| k);
            find_arg(sub, long).map(|a| a.get_id().to_string())
        })
        .collect()
}

/// The argument of `sub` whose long name (or an alias of it) is `long`.
fn find_arg<'a>(sub: &'a Command, long: &str) -> Option<&'a Arg> {
    sub.get_arguments().find(|a| {
        a.get_long() == Some(long) || a.get_all_aliases().is_some_and(|al| al.contains(&long))
    })
}

/// The keys a table of `sub` may hold, in the command's order.
pub(crate) fn known_keys(sub: &Command) -> Vec<&str> {
    sub.get_arguments()
        .filter_map(Arg::get_long)
        .filter(|l| !NOT_IN_FILES.contains(l))
        .collect()
}

/// One setting of the file, checked: the flag tokens it stands for.
#[derive(Debug)]
struct Setting {
    /// The argument's id.
    id: String,
    /// The key's line.
    line: usize,
    /// `--key value` (repeated for a list; `--key` alone for a switch that is on).
    tokens: Vec<OsString>,
}

/// The checked settings of the table of `sub` in `text` (the file at `path`).
fn read_table(path: &Path, text: &str, sub: &Command) -> Result<Vec<Setting>, ConfigError> {
    let doc = DeTable::parse(text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let line_of = |span: std::ops::Range<usize>| line_at(text, span.start);
    let mut table = None;
    for (name, value) in doc.get_ref() {
        let n: &str = name.get_ref();
        if !TABLES.contains(&n) || !value.get_ref().is_table() {
            return Err(ConfigError::UnknownTable {
                path: path.to_owned(),
                line: line_of(name.span()),
                name: n.to_owned(),
            });
        }
        if n == sub.get_name() {
            table = value.get_ref().as_table();
        }
    }
    let Some(table) = table else {
        return Ok(Vec::new());
    };
    let table_name = sub.get_name().to_owned();
    let mut settings = Vec::new();
    for (key, value) in table {
        let k: &str = key.get_ref();
        let line = line_of(key.span());
        let arg = find_arg(sub, k).filter(|a| !NOT_IN_FILES.contains(&a.get_id().as_str()));
        let Some(arg) = arg else {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                line,
                table: table_name,
                key: k.to_owned(),
                known: known_keys(sub).join(", "),
            });
        };
        let bad = |message: String| ConfigError::BadValue {
            path: path.to_owned(),
            line: line_of(value.span()),
            table: table_name.clone(),
            key: k.to_owned(),
            message,
        };
        let tokens = tokens_of(arg, value).map_err(bad)?;
        settings.push(Setting {
            id: arg.get_id().to_string(),
            line,
            tokens,
        });
    }
    Ok(settings)
}

/// The flag tokens of `value` for `arg`, each value checked by the flag's own parser.
fn tokens_of(arg: &Arg, value: &Spanned<DeValue<'_>>) -> Result<Vec<OsString>, String> {
    let long = format!("--{}", arg.get_long().unwrap_or_default());
    let switch = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
    if switch {
        return match value.get_ref().as_bool() {
            Some(true) => Ok(vec![long.into()]),
            Some(false) => Ok(Vec::new()),
            None => Err(format!(
                "expected true or false, found {}",
                value.get_ref().type_str()
            )),
        };
    }
    let items: Vec<&DeValue<'_>> = match value.get_ref().as_array() {
        Some(list) if matches!(arg.get_action(), ArgAction::Append) => {
            list.iter().map(Spanned::get_ref).collect()
        }
        Some(_) => return Err("expected one value, found an array".into()),
        None => vec![value.get_ref()],
    };
    let mut tokens = Vec::new();
    for item in items {
        let text = scalar(item)?;
        check_value(arg, &text)?;
        tokens.push(OsString::from(&long));
        tokens.push(OsString::from(text));
    }
    Ok(tokens)
}

/// Runs `arg`'s own value parser on `text`, as if `--flag text` were given.
fn check_value(arg: &Arg, text: &str) -> Result<(), String> {
    let long = arg.get_long().unwrap_or_default();
    let alone = arg.clone().required(false);
    Command::new("kwik-record")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(alone)
        .try_get_matches_from([OsString::from(format!("--{long}")), OsString::from(text)])
        .map(drop)
        .map_err(|e| clap_message(&e))
}

/// A TOML scalar as the text a flag would be given.
fn scalar(value: &DeValue<'_>) -> Result<String, String> {
    match value {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            let digits = digits.trim_start_matches("0x").trim_start_matches("0o");
            let digits = digits.trim_start_matches("0b");
            i64::from_str_radix(digits, i.radix())
                .map(|n| n.to_string())
                .map_err(|e| format!("{}: {e}", i.as_str()))
        }
        DeValue::Float(f) => Ok(f.as_str().replace('_', "")),
        DeValue::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("expected a value, found {}", other.type_str())),
    }
}

/// The first line of a clap error without its `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// The 1-based line of byte `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn run(file: &str, args: &[&str]) -> Result<Resolved, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kwik.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = vec!["kwik-record".into(), "--config".into()];
        argv.push(path.into());
        argv.extend(args.iter().map(OsString::from));
        resolve(&crate::Cli::command(), argv)
    }

    #[test]
    fn file_values_become_flags_unless_the_command_line_gives_them() {
        let r = run(
            "[serve]\nlisten = \"127.0.0.1:5000\"\nout = \"/data\"\nname = [\"a\", \"b\"]\n\n[stream]\nrate = 10\n",
            &["serve", "--out", "/elsewhere"],
        )
        .unwrap();
        let tail: Vec<String> = r.argv[4..]
            .iter()
            .map(|t| t.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            tail,
            [
                "--out",
                "/elsewhere",
                "--listen",
                "127.0.0.1:5000",
                "--name",
                "a",
                "--name",
                "b"
            ]
        );
        assert_eq!(r.from_file.get("listen"), Some(&2));
        assert_eq!(r.from_file.get("names"), Some(&4));
        assert!(!r.from_file.contains_key("out"));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_line() {
        let e = run(
            "[serve]\n\nlisten = \"127.0.0.1:1\"\nlisen = 3\n",
            &["serve"],
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("kwik.toml:4: unknown key `lisen` in [serve]"),
            "{text}"
        );
        assert!(text.contains("known keys: listen, out"), "{text}");
        let e = run("[serve]\nlisten = \"nowhere\"\n", &["serve"]).unwrap_err();
        assert!(
            matches!(&e, ConfigError::BadValue { line: 2, key, .. } if key == "listen"),
            "{e}"
        );
        let e = run("[stream]\nscheduler = \"fastest\"\n", &["stream"]).unwrap_err();
        assert!(
            e.to_string().contains(":2: bad value for `scheduler`"),
            "{e}"
        );
        let e = run("[serve]\nduration = \"ten\"\n", &["serve"]).unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
        let e = run("[record]\nquiet = \"yes\"\n", &["record"]).unwrap_err();
        assert!(e.to_string().contains("expected true or false"), "{e}");
        let e = run("[serv]\nlisten = 1\n", &["serve"]).unwrap_err();
        assert!(
            matches!(e, ConfigError::UnknownTable { line: 1, .. }),
            "{e}"
        );
        let e = run("[serve\n", &["serve"]).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn switches_lists_and_numbers() {
        let r = run(
            "[record]\nquiet = true\nno-comments = false\nsource = [\"sim-imu\", \"sim-stage\"]\nbatch = 1_024\n",
            &["record"],
        )
        .unwrap();
        let tail: Vec<String> = r.argv[4..]
            .iter()
            .map(|t| t.to_string_lossy().into_owned())
            .collect();
        assert!(tail.contains(&"--quiet".to_owned()), "{tail:?}");
        assert!(!tail.contains(&"--no-comments".to_owned()), "{tail:?}");
        assert!(
            tail.windows(2).any(|w| w == ["--batch", "1024"]),
            "{tail:?}"
        );
        assert_eq!(tail.iter().filter(|t| *t == "--source").count(), 2);
    }

    #[test]
    fn lines_count_from_one() {
        assert_eq!(line_at("a\nb\nc", 0), 1);
        assert_eq!(line_at("a\nb\nc", 2), 2);
        assert_eq!(line_at("a\nb\nc", 99), 3);
    }
}
