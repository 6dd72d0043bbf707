//! Masking rules: the `[[mask]]` tables and the `[masking]` table of the
//! rule files, compiled into [`MaskingRules`].
//!
//! The same files hold the guardrails' `[[policy]]` and `[settings]`; this
//! loader ignores those (the guardrails loader ignores ours). Inside our
//! own tables unknown keys are errors, and every error names the file, the
//! line and the key.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::detect::{DetectorSet, Kind};
use super::strategy::Strategy;
use crate::policy::rule_files;
use crate::policy::rules::Ctx;
use crate::policy::Principal;

/// A masking rule error: `file:line: key: message`, the same error the
/// guardrail rules report (both read the same files).
pub type MaskError = crate::policy::rules::RulesError;

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    mask: Vec<Spanned<RawMask>>,
    masking: Option<Spanned<RawSettings>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWho {
    #[serde(default)]
    identities: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    targets: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMask {
    id: Spanned<String>,
    description: Option<String>,
    columns: Vec<Spanned<String>>,
    strategy: Spanned<String>,
    keep_first: Option<usize>,
    keep_last: Option<usize>,
    #[serde(default)]
    applies_to: RawWho,
    #[serde(default)]
    unmasked: RawWho,
    on_unsafe: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    hash_key_env: Option<String>,
    detectors: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    unmasked: RawWho,
    cache_entries: Option<usize>,
}

/// A principal filter: empty lists match everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Who {
    pub identities: Vec<String>,
    pub groups: Vec<String>,
    pub targets: Vec<String>,
}

impl Who {
    fn from_raw(r: RawWho) -> Self {
        Who {
            identities: r.identities,
            groups: r.groups,
            targets: r.targets,
        }
    }

    /// Matches when empty (`empty_matches`) or when any list names `who`.
    fn matches(&self, who: &Principal, empty_matches: bool) -> bool {
        let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        let target_ok = self.targets.is_empty() || any(&self.targets, &who.target);
        let named = self.identities.is_empty() && self.groups.is_empty();
        let who_ok = if named {
            empty_matches || !self.targets.is_empty()
        } else {
            any(&self.identities, &who.identity) || who.groups.iter().any(|g| any(&self.groups, g))
        };
        target_ok && who_ok
    }
}

/// What to do where a masked value cannot be masked in place (whole-row
/// references, JSON aggregates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnUnsafe {
    /// Refuse the statement.
    Block,
    /// Return NULL in that column.
    Null,
}

/// A compiled `[[mask]]` rule.
#[derive(Debug, Clone)]
pub struct MaskRule {
    pub id: String,
    pub description: Option<String>,
    pub file: PathBuf,
    /// The patterns as written (lower-cased).
    pub patterns: Vec<String>,
    /// Full `schema.table.column` patterns.
    pub columns: GlobSet,
    /// Table parts (`schema.table`) of the patterns, for whole-row checks
    /// on tables whose columns are unknown.
    pub tables: GlobSet,
    /// Column-name parts of patterns whose table part is all wildcards
    /// (`*.email`), for columns whose table is unknown.
    pub names: GlobSet,
    pub strategy: Strategy,
    pub on_unsafe: OnUnsafe,
    pub applies_to: Who,
    pub unmasked: Who,
}

impl MaskRule {
    /// Does this rule mask data for `who`?
    pub fn active_for(&self, who: &Principal) -> bool {
        self.applies_to.matches(who, true) && !self.unmasked.matches(who, false)
    }

    /// May one of this rule's patterns match a column of a table in
    /// `schema` (lower-case)? Never `false` where one could: `*.email` and
    /// `customers.email` may match any schema's (see
    /// [`crate::policy::rules::may_cover_schema`]).
    pub fn may_cover_schema(&self, schema: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| crate::policy::rules::may_cover_schema(&full_pattern(p), schema))
    }
}

/// Everything the masking rule files say.
#[derive(Debug, Clone, Default)]
pub struct MaskingRules {
    pub rules: Vec<MaskRule>,
    /// Detectors for unclassified text (default: none).
    pub detectors: DetectorSet,
    /// Principals the detectors do not apply to.
    pub detectors_unmasked: Who,
    /// Env var holding the `hash`/`fake` key.
    pub hash_key_env: Option<String>,
    /// Plan cache capacity; 0 disables it.
    pub cache_entries: usize,
    /// sha256 of the masking tables (first 16 hex digits).
    pub version: String,
}

impl MaskingRules {
    /// Indices of the rules that mask data for `who`, in file order.
    pub fn active_for(&self, who: &Principal) -> Vec<usize> {
        (0..self.rules.len())
            .filter(|&i| self.rules[i].active_for(who))
            .collect()
    }

    pub fn detectors_for(&self, who: &Principal) -> DetectorSet {
        if self.detectors_unmasked.matches(who, false) {
            DetectorSet::NONE
        } else {
            self.detectors
        }
    }
}

/// Loads masking rules from one rule file or every `*.toml` in a directory
/// (sorted by name), like the guardrails' `load_rules`.
pub fn load_masking_path(path: &Path) -> Result<MaskingRules, MaskError> {
    let sources = rule_files::read(path).map_err(|(file, e)| MaskError {
        file,
        line: 0,
        key: String::new(),
        message: e.to_string(),
    })?;
    load_masking(&rule_files::as_refs(&sources))
}

/// Parses masking rules from rule files in memory: `(name, text)` pairs.
pub fn load_masking(files: &[(&Path, &str)]) -> Result<MaskingRules, MaskError> {
    let mut set = MaskingRules {
        cache_entries: 4096,
        ..MaskingRules::default()
    };
    let mut hasher = Sha256::new();
    let mut settings_file: Option<PathBuf> = None;
    for (file, text) in files {
        let ctx = Ctx { file, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let (line, key, message) = crate::config::toml_error_parts(text, &e);
            ctx.err(line, &key, &message)
        })?;
        if raw.mask.is_empty() && raw.masking.is_none() {
            continue;
        }
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
        if let Some(s) = raw.masking {
            let line = ctx.line(s.span().start);
            if let Some(prev) = &settings_file {
                return Err(ctx.err(
                    line,
                    "masking",
                    &format!("already set in {}", prev.display()),
                ));
            }
            settings_file = Some(file.to_path_buf());
            let s = s.into_inner();
            set.hash_key_env = s.hash_key_env;
            set.detectors_unmasked = Who::from_raw(s.unmasked);
            if let Some(c) = s.cache_entries {
                set.cache_entries = c;
            }
            for d in s.detectors.unwrap_or_default() {
                let k = Kind::parse(d.get_ref()).ok_or_else(|| {
                    ctx.err(
                        ctx.line(d.span().start),
                        "masking.detectors",
                        &format!(
                            "unknown detector {:?}; known: email, card, ssn, phone, iban, secret",
                            d.get_ref()
                        ),
                    )
                })?;
                set.detectors = set.detectors.with(k);
            }
        }
        for (i, m) in raw.mask.into_iter().enumerate() {
            let rule = compile(&ctx, i, m)?;
            if set.rules.iter().any(|r| r.id == rule.id) {
                return Err(ctx.err(
                    0,
                    &format!("mask[{i}].id"),
                    &format!("duplicate mask id {:?}", rule.id),
                ));
            }
            set.rules.push(rule);
        }
    }
    let digest = hasher.finalize();
    set.version = crate::hex::encode(&digest[..8]);
    Ok(set)
}

fn glob(s: &str) -> Result<Glob, globset::Error> {
    Glob::new(s)
}

/// Normalizes a column pattern to `schema.table.column` form:
/// `col` → `*.col`; `table.col` → `*.table.col`; `*.col` stays.
fn full_pattern(p: &str) -> String {
    match p.matches('.').count() {
        0 => format!("*.{p}"),
        1 if !p.starts_with('*') => format!("*.{p}"),
        _ => p.to_string(),
    }
}

fn compile(ctx: &Ctx<'_>, i: usize, m: Spanned<RawMask>) -> Result<MaskRule, MaskError> {
    let line = ctx.line(m.span().start);
    let m = m.into_inner();
    let k = |f: &str| format!("mask[{i}].{f}");
    let id = m.id.get_ref().trim().to_string();
    if id.is_empty() || id.contains(char::is_whitespace) {
        return Err(ctx.err(
            ctx.line(m.id.span().start),
            &k("id"),
            "must be a non-empty word",
        ));
    }
    // airlock's own rule ids (e.g. `builtin.unknown-source`) must not be
    // mistaken for a configured rule, or the other way round.
    if id.starts_with("builtin.") {
        return Err(ctx.err(
            ctx.line(m.id.span().start),
            &k("id"),
            "ids starting with \"builtin.\" are reserved for airlock's own rules",
        ));
    }
    let strategy = Strategy::parse(
        m.strategy.get_ref(),
        m.keep_first.unwrap_or(0),
        m.keep_last
            .unwrap_or(if m.keep_first.is_some() { 0 } else { 4 }),
    )
    .ok_or_else(|| {
        ctx.err(
            ctx.line(m.strategy.span().start),
            &k("strategy"),
            &format!(
                "unknown strategy {:?}; expected one of redact, partial, hash, email, null, fake",
                m.strategy.get_ref()
            ),
        )
    })?;
    if (m.keep_first.is_some() || m.keep_last.is_some())
        && !matches!(strategy, Strategy::Partial { .. })
    {
        return Err(ctx.err(
            line,
            &k("keep_last"),
            "only applies to strategy \"partial\"",
        ));
    }
    let on_unsafe = match m
        .on_unsafe
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span()))
    {
        None | Some(("block", _)) => OnUnsafe::Block,
        Some(("null", _)) => OnUnsafe::Null,
        Some((other, span)) => {
            return Err(ctx.err(
                ctx.line(span.start),
                &k("on_unsafe"),
                &format!("unknown value {other:?}; expected block or null"),
            ))
        }
    };
    if m.columns.is_empty() {
        return Err(ctx.err(line, &k("columns"), "must list at least one column"));
    }
    let (mut cols, mut tables, mut names) = (
        GlobSetBuilder::new(),
        GlobSetBuilder::new(),
        GlobSetBuilder::new(),
    );
    let mut patterns = Vec::new();
    for c in &m.columns {
        let bad = |e: String| ctx.err(ctx.line(c.span().start), &k("columns"), &e);
        let pat = c.get_ref().trim().to_lowercase();
        if pat.is_empty() || pat.ends_with('.') || pat.starts_with('.') {
            return Err(bad(format!(
                "{pat:?} must be column, table.column or schema.table.column (globs allowed)"
            )));
        }
        let full = full_pattern(&pat);
        let (table, column) = full.rsplit_once('.').unwrap_or(("*", full.as_str()));
        cols.add(glob(&full).map_err(|e| bad(format!("bad pattern: {e}")))?);
        let table = if table.contains('.') || table == "*" {
            table.to_string()
        } else {
            format!("*.{table}")
        };
        tables.add(glob(&table).map_err(|e| bad(format!("bad pattern: {e}")))?);
        if table.chars().all(|ch| ch == '*' || ch == '.') {
            names.add(glob(column).map_err(|e| bad(format!("bad pattern: {e}")))?);
        }
        patterns.push(pat);
    }
    let build = |b: GlobSetBuilder| {
        b.build()
            .map_err(|e| ctx.err(line, &k("columns"), &e.to_string()))
    };
    Ok(MaskRule {
        id,
        description: m.description,
        file: ctx.file.to_path_buf(),
        patterns,
        columns: build(cols)?,
        tables: build(tables)?,
        names: build(names)?,
        strategy,
        on_unsafe,
        applies_to: Who::from_raw(m.applies_to),
        unmasked: Who::from_raw(m.unmasked),
    })
}
