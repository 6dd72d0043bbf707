//! Reading a secret named by a `*_env` / `*_file` pair of keys (upstream
//! passwords, the admin token): one place for both, and for what `airlock
//! check` does with a secret it cannot read (notes it, see
//! [`super::Config::load_without_secrets`]).

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::secret::Secret;

/// What a `*_env` / `*_file` pair gave.
pub(super) enum Read {
    Value(Secret),
    /// Neither key is set.
    Unset,
    /// Set but not readable, and `optional`: noted in `unread`.
    Unread,
}

/// An error as the config reports it: span, key, message.
pub(super) type At = (Range<usize>, String, String);

/// Reads the secret of `{prefix}_env` or `{prefix}_file` (`prefix` is the
/// full key without the suffix, e.g. `targets.app.password`), a file
/// relative to `base` and without its trailing newline. With `optional`,
/// one that cannot be read is noted in `unread` instead of an error.
pub(super) fn read(
    prefix: &str,
    env: Option<&Spanned<String>>,
    file: Option<&Spanned<PathBuf>>,
    base: &Path,
    optional: bool,
    unread: &mut Vec<String>,
) -> Result<Read, At> {
    let (value, span, key) = match (env, file) {
        (Some(var), Some(_)) => {
            let file_key = prefix.rsplit('.').next().unwrap_or(prefix);
            return Err((
                var.span(),
                format!("{prefix}_env"),
                format!("set {file_key}_env or {file_key}_file, not both"),
            ));
        }
        (None, None) => return Ok(Read::Unset),
        (Some(var), None) => (
            std::env::var(var.get_ref())
                .map_err(|_| format!("environment variable {} is not set", var.get_ref())),
            var.span(),
            format!("{prefix}_env"),
        ),
        (None, Some(path)) => {
            let resolved = base.join(path.get_ref());
            (
                std::fs::read_to_string(&resolved)
                    .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
                    .map_err(|e| format!("cannot read {}: {e}", resolved.display())),
                path.span(),
                format!("{prefix}_file"),
            )
        }
    };
    match value {
        Ok(v) => Ok(Read::Value(Secret::new(v))),
        Err(why) if optional => {
            unread.push(format!("{key}: {why}"));
            Ok(Read::Unread)
        }
        Err(why) => Err((span, key, why)),
    }
}
