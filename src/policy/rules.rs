//! Rule files: TOML → [`RuleSet`]. See `rules/README.md` for the schema.
//!
//! Every error names the file, the line and the key.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::builtin::ids;
use super::facts::StatementClass;
use super::parse::Limits;
use super::Principal;

/// A rule-file error: `file:line: key: message` (the line left out when
/// unknown, the key when empty).
#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct RulesError {
    pub file: PathBuf,
    /// 1-based; 0 when unknown (e.g. an unreadable file).
    pub line: usize,
    /// Dotted key path, e.g. `policy[1].deny_tables`.
    pub key: String,
    pub message: String,
}

impl RulesError {
    fn render(&self) -> String {
        let mut out = self.file.display().to_string();
        if self.line > 0 {
            out.push_str(&format!(":{}", self.line));
        }
        if !self.key.is_empty() {
            out.push_str(&format!(": {}", self.key));
        }
        out.push_str(&format!(": {}", self.message));
        out
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    settings: Option<Spanned<RawSettings>>,
    #[serde(default)]
    policy: Vec<Spanned<RawPolicy>>,
    /// `[[mask]]` and `[masking]` belong to the masking rules
    /// (`crate::masking::rules`), which read the same files.
    #[serde(default, rename = "mask")]
    _mask: Option<toml::Value>,
    #[serde(default, rename = "masking")]
    _masking: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    max_statement_bytes: Option<usize>,
    max_tokens: Option<usize>,
    max_depth: Option<usize>,
    max_statements: Option<usize>,
    cache_entries: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAppliesTo {
    #[serde(default)]
    identities: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    targets: Vec<String>,
}

type Globs = Option<Vec<Spanned<String>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    id: Spanned<String>,
    description: Option<String>,
    #[serde(default)]
    applies_to: RawAppliesTo,
    enforce: Option<bool>,
    #[serde(default)]
    read_only: bool,
    statement_timeout: Option<Spanned<String>>,
    idle_in_transaction_timeout: Option<Spanned<String>>,
    max_rows: Option<u64>,
    allow_statements: Option<Vec<Spanned<String>>>,
    allow_tables: Globs,
    deny_tables: Globs,
    deny_columns: Globs,
    allow_functions: Globs,
    deny_functions: Globs,
    #[serde(default)]
    allow_builtin: Vec<Spanned<String>>,
    #[serde(default)]
    require_approval: Vec<Spanned<RawApproval>>,
    #[serde(default)]
    allow_startup_options: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    id: Spanned<String>,
    #[serde(default)]
    statements: Vec<Spanned<String>>,
    tables: Globs,
    message: Option<String>,
}

/// A compiled approval requirement.
#[derive(Debug, Clone)]
pub struct Approval {
    pub id: String,
    pub statements: Vec<StatementClass>,
    /// `None`: any table.
    pub tables: Option<GlobSet>,
    /// `tables` as written (lower-case), for [`may_cover_schema`].
    pub table_patterns: Vec<String>,
    pub message: String,
}

/// Denied column pattern split into its table and column parts.
#[derive(Debug, Clone)]
pub struct ColumnRule {
    pub pattern: String,
    pub table: GlobMatcher,
    pub full: GlobMatcher,
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub id: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub identities: Vec<String>,
    pub groups: Vec<String>,
    pub targets: Vec<String>,
    pub enforce: bool,
    pub read_only: bool,
    pub statement_timeout: Option<Duration>,
    /// How long the session may sit idle in an open transaction before
    /// the server ends it (see [`crate::policy::SessionSettings`]).
    pub idle_in_transaction_timeout: Option<Duration>,
    pub max_rows: Option<u64>,
    pub allow_statements: Vec<StatementClass>,
    pub allow_tables: Option<GlobSet>,
    pub deny_tables: GlobSet,
    /// `deny_tables` as written (lower-case), for [`may_cover_schema`].
    pub deny_table_patterns: Vec<String>,
    /// `allow_tables` as written (lower-case; empty without it), for
    /// [`may_cover_schema`].
    pub allow_table_patterns: Vec<String>,
    /// Table-name parts of `deny_tables`, for relations whose schema is unknown.
    pub deny_table_names: GlobSet,
    pub deny_columns: Vec<ColumnRule>,
    pub deny_column_set: GlobSet,
    pub allow_functions: Option<GlobSet>,
    pub deny_functions: GlobSet,
    pub allow_builtin: HashSet<String>,
    pub require_approval: Vec<Approval>,
    pub allow_startup_options: bool,
}

impl Policy {
    /// Does this policy apply to `who`?
    pub fn applies_to(&self, who: &Principal) -> bool {
        let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        let target_ok = self.targets.is_empty() || any(&self.targets, &who.target);
        let who_ok = (self.identities.is_empty() && self.groups.is_empty())
            || any(&self.identities, &who.identity)
            || who.groups.iter().any(|g| any(&self.groups, g));
        target_ok && who_ok
    }

    pub fn waives(&self, builtin: &str) -> bool {
        self.allow_builtin.contains(builtin)
    }
}

/// All policies, in file order (files sorted by name), and global limits.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub policies: Vec<Policy>,
    pub limits: Limits,
    /// Decision cache capacity (entries); 0 disables the cache.
    pub cache_entries: usize,
    /// sha256 of the rule files' contents (first 16 hex digits).
    pub version: String,
}

impl RuleSet {
    /// First policy (in file order) that applies to `who`.
    pub fn policy_for(&self, who: &Principal) -> Option<(usize, &Policy)> {
        self.policies
            .iter()
            .enumerate()
            .find(|(_, p)| p.applies_to(who))
    }
}

/// Whether a table or column pattern (`public.secrets`, `*.users.ssn`,
/// `tenant_*.t.c`; lower-case) may match a name in `schema` (`schema.` and
/// anything after it): for checks on a statement that renames a whole
/// schema, whose tables no one can list. Never `false` where such a name
/// could match (globs' `*` and `?` also match dots): the part before the
/// first dot is the schema part; it may match any schema if it holds glob
/// syntax, else only itself, and a pattern without a dot matches no
/// schema-qualified name unless it holds glob syntax. A schema whose own
/// name has a dot may be matched by anything, and so may `*` (every
/// schema: MySQL `GRANT ... ON *.*`).
pub fn may_cover_schema(pattern: &str, schema: &str) -> bool {
    const GLOB: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];
    if schema.contains('.') || schema == "*" {
        return true;
    }
    match pattern.split_once('.') {
        Some((head, _)) => head.contains(GLOB) || head == schema,
        None => pattern.contains(GLOB),
    }
}

/// Loads one rule file, or every `*.toml` in a directory (sorted by name).
pub fn load_rules(path: &Path) -> Result<RuleSet, RulesError> {
    let sources = super::rule_files::read(path).map_err(|(file, e)| RulesError {
        file,
        line: 0,
        key: String::new(),
        message: e.to_string(),
    })?;
    parse_rules(&super::rule_files::as_refs(&sources))
}

/// Parses rule files already in memory: `(name, text)` pairs in order.
pub fn parse_rules(files: &[(&Path, &str)]) -> Result<RuleSet, RulesError> {
    let mut set = RuleSet {
        cache_entries: 16_384,
        ..RuleSet::default()
    };
    let mut hasher = Sha256::new();
    let mut seen_ids: HashSet<String> = HashSet::new();
    let mut settings_file: Option<PathBuf> = None;
    for (file, text) in files {
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
        let ctx = Ctx { file, text };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let (line, key, message) = crate::config::toml_error_parts(text, &e);
            ctx.err(line, &key, &message)
        })?;
        if let Some(s) = raw.settings {
            if let Some(prev) = &settings_file {
                return Err(ctx.err(
                    ctx.line(s.span().start),
                    "settings",
                    &format!("already set in {}", prev.display()),
                ));
            }
            settings_file = Some(file.to_path_buf());
            let s = s.into_inner();
            let d = Limits::default();
            set.limits = Limits {
                max_statement_bytes: s.max_statement_bytes.unwrap_or(d.max_statement_bytes),
                max_tokens: s.max_tokens.unwrap_or(d.max_tokens),
                max_depth: s.max_depth.unwrap_or(d.max_depth).clamp(4, 512),
                max_statements: s.max_statements.unwrap_or(d.max_statements).max(1),
            };
            if let Some(c) = s.cache_entries {
                set.cache_entries = c;
            }
        }
        for (i, p) in raw.policy.into_iter().enumerate() {
            let policy = compile_policy(&ctx, i, p)?;
            if !seen_ids.insert(policy.id.clone()) {
                return Err(ctx.err(
                    0,
                    &format!("policy[{i}].id"),
                    &format!("duplicate policy id {:?}", policy.id),
                ));
            }
            set.policies.push(policy);
        }
    }
    let digest = hasher.finalize();
    set.version = crate::hex::encode(&digest[..8]);
    Ok(set)
}

/// The file being compiled, for errors that name file, line and key. Also
/// used by the masking rules, which read the same files.
pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a Path,
    pub(crate) text: &'a str,
}

impl Ctx<'_> {
    pub(crate) fn line(&self, offset: usize) -> usize {
        crate::config::line_of(self.text, offset.min(self.text.len()))
    }

    pub(crate) fn err(&self, line: usize, key: &str, message: &str) -> RulesError {
        RulesError {
            file: self.file.to_path_buf(),
            line,
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    fn globs(&self, key: &str, list: &[Spanned<String>]) -> Result<GlobSet, RulesError> {
        let mut b = GlobSetBuilder::new();
        for g in list {
            b.add(self.glob(key, g)?);
        }
        b.build().map_err(|e| self.err(0, key, &e.to_string()))
    }

    fn glob(&self, key: &str, g: &Spanned<String>) -> Result<Glob, RulesError> {
        Glob::new(&g.get_ref().to_lowercase())
            .map_err(|e| self.err(self.line(g.span().start), key, &format!("bad pattern: {e}")))
    }

    fn classes(
        &self,
        key: &str,
        list: &[Spanned<String>],
    ) -> Result<Vec<StatementClass>, RulesError> {
        list.iter()
            .map(|s| {
                StatementClass::parse(s.get_ref()).ok_or_else(|| {
                    self.err(
                        self.line(s.span().start),
                        key,
                        &format!(
                            "unknown statement class {:?}; expected one of read, write, ddl, dcl, session, transaction, other",
                            s.get_ref()
                        ),
                    )
                })
            })
            .collect()
    }
}

fn compile_policy(ctx: &Ctx<'_>, i: usize, p: Spanned<RawPolicy>) -> Result<Policy, RulesError> {
    let line = ctx.line(p.span().start);
    let p = p.into_inner();
    let k = |f: &str| format!("policy[{i}].{f}");
    let id = p.id.get_ref().trim().to_string();
    if id.is_empty() || id.contains(char::is_whitespace) {
        return Err(ctx.err(
            ctx.line(p.id.span().start),
            &k("id"),
            "must be a non-empty word",
        ));
    }
    let duration = |key: &str, value: &Option<Spanned<String>>| match value {
        None => Ok(None),
        Some(s) => humantime::parse_duration(s.get_ref())
            .map(Some)
            .map_err(|e| {
                ctx.err(
                    ctx.line(s.span().start),
                    &k(key),
                    &format!("bad duration: {e}"),
                )
            }),
    };
    let statement_timeout = duration("statement_timeout", &p.statement_timeout)?;
    let idle_in_transaction_timeout = match duration(
        "idle_in_transaction_timeout",
        &p.idle_in_transaction_timeout,
    )? {
        // The servers count it in milliseconds (Postgres) or whole
        // seconds (MariaDB), and take 0 for "no limit".
        Some(d) if d < Duration::from_secs(1) => {
            let at = p
                .idle_in_transaction_timeout
                .as_ref()
                .map_or(0, |s| s.span().start);
            return Err(ctx.err(
                ctx.line(at),
                &k("idle_in_transaction_timeout"),
                "must be at least 1s",
            ));
        }
        d => d,
    };
    let allow_statements = match &p.allow_statements {
        Some(list) => ctx.classes(&k("allow_statements"), list)?,
        None if p.read_only => vec![
            StatementClass::Read,
            StatementClass::Transaction,
            StatementClass::Session,
        ],
        None => vec![
            StatementClass::Read,
            StatementClass::Write,
            StatementClass::Transaction,
            StatementClass::Session,
        ],
    };
    let empty = Vec::new();
    let deny_tables_list = p.deny_tables.as_ref().unwrap_or(&empty);
    let deny_tables = ctx.globs(&k("deny_tables"), deny_tables_list)?;
    let mut names = GlobSetBuilder::new();
    for g in deny_tables_list {
        let table_part = g.get_ref().rsplit('.').next().unwrap_or("").to_lowercase();
        names.add(
            Glob::new(&table_part).map_err(|e| ctx.err(line, &k("deny_tables"), &e.to_string()))?,
        );
    }
    let deny_table_names = names
        .build()
        .map_err(|e| ctx.err(line, &k("deny_tables"), &e.to_string()))?;
    let allow_tables = match &p.allow_tables {
        Some(list) => Some(ctx.globs(&k("allow_tables"), list)?),
        None => None,
    };
    let mut deny_columns = Vec::new();
    let cols = p.deny_columns.as_ref().unwrap_or(&empty);
    for c in cols {
        let pat = c.get_ref().to_lowercase();
        let Some((table, _col)) = pat.rsplit_once('.') else {
            return Err(ctx.err(
                ctx.line(c.span().start),
                &k("deny_columns"),
                &format!("{pat:?} must be table.column or schema.table.column (globs allowed)"),
            ));
        };
        let table = if table.contains('.') || table.contains('*') {
            table.to_string()
        } else {
            format!("*.{table}")
        };
        let full = if pat.matches('.').count() == 1 && !pat.starts_with('*') {
            format!("*.{pat}")
        } else {
            pat.clone()
        };
        let mk = |s: &str| {
            Glob::new(s).map(|g| g.compile_matcher()).map_err(|e| {
                ctx.err(
                    ctx.line(c.span().start),
                    &k("deny_columns"),
                    &format!("bad pattern: {e}"),
                )
            })
        };
        deny_columns.push(ColumnRule {
            pattern: pat.clone(),
            table: mk(&table)?,
            full: mk(&full)?,
        });
    }
    let mut cs = GlobSetBuilder::new();
    for c in &deny_columns {
        cs.add(
            Glob::new(c.full.glob().glob())
                .map_err(|e| ctx.err(line, &k("deny_columns"), &e.to_string()))?,
        );
    }
    let deny_column_set = cs
        .build()
        .map_err(|e| ctx.err(line, &k("deny_columns"), &e.to_string()))?;
    let allow_functions = match &p.allow_functions {
        Some(list) => Some(ctx.globs(&k("allow_functions"), list)?),
        None => None,
    };
    let deny_functions = ctx.globs(
        &k("deny_functions"),
        p.deny_functions.as_ref().unwrap_or(&empty),
    )?;
    let mut allow_builtin = HashSet::new();
    for b in &p.allow_builtin {
        let name = b.get_ref().as_str();
        if !ids::ALL.contains(&name) {
            return Err(ctx.err(
                ctx.line(b.span().start),
                &k("allow_builtin"),
                &format!(
                    "unknown built-in rule {name:?}; known: {}",
                    ids::ALL.join(", ")
                ),
            ));
        }
        allow_builtin.insert(name.to_string());
    }
    let mut require_approval = Vec::new();
    for (j, a) in p.require_approval.into_iter().enumerate() {
        let a = a.into_inner();
        let key = k(&format!("require_approval[{j}]"));
        let aid = a.id.get_ref().trim().to_string();
        if aid.is_empty() {
            return Err(ctx.err(
                ctx.line(a.id.span().start),
                &format!("{key}.id"),
                "must not be empty",
            ));
        }
        require_approval.push(Approval {
            statements: ctx.classes(&format!("{key}.statements"), &a.statements)?,
            tables: match &a.tables {
                Some(t) => Some(ctx.globs(&format!("{key}.tables"), t)?),
                None => None,
            },
            table_patterns: lowered(a.tables.as_deref().unwrap_or_default()),
            message: a
                .message
                .unwrap_or_else(|| format!("this statement needs a human's approval ({aid})")),
            id: aid,
        });
    }
    Ok(Policy {
        id,
        description: p.description,
        file: ctx.file.to_path_buf(),
        identities: p.applies_to.identities,
        groups: p.applies_to.groups,
        targets: p.applies_to.targets,
        enforce: p.enforce.unwrap_or(true),
        read_only: p.read_only,
        statement_timeout,
        idle_in_transaction_timeout,
        max_rows: p.max_rows,
        allow_statements,
        allow_tables,
        deny_tables,
        deny_table_patterns: lowered(deny_tables_list),
        allow_table_patterns: p.allow_tables.as_deref().map(lowered).unwrap_or_default(),
        deny_table_names,
        deny_columns,
        deny_column_set,
        allow_functions,
        deny_functions,
        allow_builtin,
        require_approval,
        allow_startup_options: p.allow_startup_options,
    })
}

/// Patterns as written, lower-case.
fn lowered(list: &[Spanned<String>]) -> Vec<String> {
    list.iter().map(|g| g.get_ref().to_lowercase()).collect()
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.id, self.file.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RuleSet, RulesError> {
        parse_rules(&[(Path::new("rules/test.toml"), text)])
    }

    #[test]
    fn policy_rules_errors_name_file_line_key() {
        let e = load("[[policy]]\nid = \"a\"\ndeny_tabels = [\"x\"]\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(
            e.to_string().starts_with(
                "rules/test.toml:3: policy[0].deny_tabels: unknown field `deny_tabels`: did you mean `deny_tables`? Expected one of"
            ),
            "{e}"
        );

        let e = load("[[policy]]\nid = \"a\"\nallow_statements = [\"read\",\n \"writes\"]\n")
            .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (4, "policy[0].allow_statements"),
            "{e}"
        );

        let e = load("[[policy]]\nid = \"a\"\n\nstatement_timeout = \"5 parsecs\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (4, "policy[0].statement_timeout"),
            "{e}"
        );
        for bad in ["soon", "500ms", "0s"] {
            let e = load(&format!(
                "[[policy]]\nid = \"a\"\nidle_in_transaction_timeout = \"{bad}\"\n"
            ))
            .unwrap_err();
            assert_eq!(
                (e.line, e.key.as_str()),
                (3, "policy[0].idle_in_transaction_timeout"),
                "{e}"
            );
        }

        let e = load("[[policy]]\nid = \"a\"\nallow_builtin = [\"builtin.nope\"]\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (3, "policy[0].allow_builtin"),
            "{e}"
        );

        let e = load("[[policy]]\nid = \"a\"\nread_only = \"yes\"\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");

        let e = load("[[policy]]\nid = \"a\"\n[[policy]]\nid = \"b\"\ndeny_columns = [\"ssn\"]\n")
            .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (5, "policy[1].deny_columns"),
            "{e}"
        );
    }

    #[test]
    fn policy_may_cover_schema_is_never_false_where_a_name_could_match() {
        for (pattern, schema, want) in [
            ("public.secrets", "public", true),
            ("public.secrets", "pub2", false),
            ("public.customers.ssn", "public", true),
            ("audit.*", "audit", true),
            ("audit.*", "public", false),
            // Glob syntax in the schema part: any schema.
            ("*.users.password_hash", "anything", true),
            ("tenant_*.t", "other", true),
            ("p?blic.t", "x", true),
            ("{a,b}.t", "c", true),
            ("[ab].t", "c", true),
            // Without a dot, only glob syntax can match `schema.table`.
            ("secrets", "public", false),
            ("*secrets", "public", true),
            // A schema named with a dot: anything may match.
            ("public.secrets", "x.y", true),
        ] {
            assert_eq!(
                may_cover_schema(pattern, schema),
                want,
                "{pattern} {schema}"
            );
        }
    }

    #[test]
    fn policy_rules_defaults() {
        let r =
            load("[[policy]]\nid = \"a\"\nread_only = true\nstatement_timeout = \"5s\"\n").unwrap();
        let p = &r.policies[0];
        assert!(p.enforce && p.read_only);
        assert_eq!(p.statement_timeout, Some(Duration::from_secs(5)));
        assert_eq!(r.limits, Limits::default());
        assert_eq!(r.version.len(), 16);
    }
}
