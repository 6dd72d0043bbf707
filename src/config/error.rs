//! Config errors that point at the file, line and key.

use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {error}", file.display())]
    Io { file: PathBuf, error: String },
    #[error("{}{message}", place(file, *line, key))]
    At {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    #[error("{}: missing required key {key}", file.display())]
    Missing { file: PathBuf, key: String },
}

/// "file:line: key: " of an error, without the parts it does not have
/// (line 0 is unknown; an empty key is the whole document).
fn place(file: &Path, line: usize, key: &str) -> String {
    let mut out = file.display().to_string();
    if line != 0 {
        out.push_str(&format!(":{line}"));
    }
    out.push_str(": ");
    if !key.is_empty() {
        out.push_str(key);
        out.push_str(": ");
    }
    out
}

impl ConfigError {
    /// An error at a byte span of the file.
    pub fn at(file: &Path, text: &str, span: Range<usize>, key: String, message: String) -> Self {
        ConfigError::At {
            file: file.to_path_buf(),
            line: line_of(text, span.start),
            key,
            message,
        }
    }

    /// The error with a hint after its message.
    pub fn with_hint(self, hint: String) -> Self {
        match self {
            ConfigError::At {
                file,
                line,
                key,
                message,
            } => ConfigError::At {
                file,
                line,
                key,
                message: format!("{message} ({hint})"),
            },
            other => other,
        }
    }

    /// Wraps a TOML syntax or type error, keeping its position and key.
    pub fn from_toml(file: &Path, text: &str, e: &toml::de::Error) -> Self {
        let (line, key, message) = toml_error_parts(text, e);
        ConfigError::At {
            file: file.to_path_buf(),
            line,
            key,
            message,
        }
    }
}

/// Where a TOML error is and what it says, for every loader that reports
/// one (config, rules, masking rules): the 1-based line (0 when unknown),
/// the dotted key there (`policy[1].deny_columns`) and the message, with
/// the closest known key suggested for an unknown one.
pub(crate) fn toml_error_parts(text: &str, e: &toml::de::Error) -> (usize, String, String) {
    let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
    let key = e.span().map(|s| key_at(text, s.start)).unwrap_or_default();
    let mut message = e.message().trim().to_string();
    if let Some(near) = did_you_mean(&message) {
        // Before the list of every allowed name, which can be long.
        message = message.replacen(
            ", expected",
            &format!(": did you mean `{near}`? Expected"),
            1,
        );
    }
    (line, key, message)
}

/// For serde's "unknown field `x`, expected one of `a`, `b`": the expected
/// name closest to `x`, when one is close enough to be a typo of it.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (unknown, expected) = rest.split_once('`')?;
    let allowed = if unknown.chars().count() < 5 { 1 } else { 2 };
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|name| (strsim::damerau_levenshtein(unknown, name), name))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name.to_string())
}

/// The 1-based line of a byte offset in `text` (0 if out of range). Used by
/// every loader that reports TOML errors (config, rules, masking rules).
pub fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map(|t| t.bytes().filter(|&b| b == b'\n').count() + 1)
        .unwrap_or(0)
}

/// The dotted key whose value sits at `offset`: the nearest `[table]` header
/// at or above it (`[[policy]]` as `policy[i]`, counting from 0), plus the
/// `key =` on its line. A table's own errors (a missing field) sit at its
/// header, which names it (it once named the table above).
fn key_at(text: &str, offset: usize) -> String {
    let start = text.get(..offset).unwrap_or(text);
    let line_start = start.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let before = text.get(..line_start + line.len()).unwrap_or(text);
    let header = |l: &str| -> Option<String> {
        let l = l.trim();
        let end = l.rfind(']')?;
        l.starts_with('[').then(|| l[..=end].to_string())
    };
    let table = before.lines().rev().find_map(header).map(|h| {
        let name = h.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        if h.starts_with("[[") {
            let n = before
                .lines()
                .filter_map(header)
                .filter(|other| *other == h)
                .count();
            format!("{name}[{}]", n.saturating_sub(1))
        } else {
            name
        }
    });
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.starts_with('['));
    match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (Some(t), None) => t,
        (None, Some(k)) => k,
        (None, None) => String::new(),
    }
}
