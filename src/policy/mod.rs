//! Policy: SQL text in, decision out. Shared by every protocol.
//!
//! Sessions call [`Gate::judge`] for every statement before it is forwarded:
//! simple Query text, extended-protocol Parse text, FunctionCall messages
//! (which carry no SQL), and on the MySQL side COM_QUERY / COM_STMT_PREPARE.
//! This is the single point where statements are judged.
//!
//! The pipeline behind the gate is SQL text → AST → facts → decision; see
//! the `engine` module. This file holds only the protocol-neutral interface
//! that sessions program against.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

/// SQL dialect of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    #[default]
    Postgres,
    MySql,
}

/// Where a statement came from on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Simple query protocol / COM_QUERY (may hold several statements).
    Query,
    /// Extended protocol Parse / COM_STMT_PREPARE (one statement).
    Parse,
    /// Postgres FunctionCall message: a function OID, no SQL.
    FunctionCall,
}

/// Per-session facts the engine needs to resolve names and prepared
/// statements. The session keeps it up to date from [`Effects`].
#[derive(Debug, Clone, Default)]
pub struct SessionContext {
    /// Postgres search_path, in order (default `["public"]`; `"$user"` and
    /// `pg_catalog` handling is the engine's business).
    pub search_path: Vec<String>,
    /// MySQL current database (COM_INIT_DB / USE).
    pub current_database: Option<String>,
    /// Names of SQL-level prepared statements (`PREPARE name ...`) that
    /// airlock allowed in this session. `EXECUTE` of any other name is
    /// blocked.
    pub prepared: HashSet<String>,
    /// The target's foreign keys, when the policy has rules on tables:
    /// the tables a write cascades to count as written
    /// ([`foreign_keys::ForeignKeys::add_cascaded`]).
    pub foreign_keys: Option<std::sync::Arc<foreign_keys::ForeignKeys>>,
}

impl SessionContext {
    /// The [`foreign_keys::ForeignKeys::id`] of the map in force; 0 for
    /// none. Cached and memoized decisions are keyed by it.
    pub fn foreign_keys_id(&self) -> u64 {
        self.foreign_keys.as_ref().map_or(0, |f| f.id())
    }

    /// Puts `map` in force; whether it replaced another (decisions judged
    /// under that one no longer apply).
    pub fn set_foreign_keys(&mut self, map: std::sync::Arc<foreign_keys::ForeignKeys>) -> bool {
        if self
            .foreign_keys
            .as_ref()
            .is_some_and(|m| std::sync::Arc::ptr_eq(m, &map))
        {
            return false;
        }
        self.foreign_keys = Some(map);
        true
    }
}

/// What is being judged.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub dialect: Dialect,
    pub source: Source,
    /// The SQL as sent; empty for FunctionCall. Not necessarily UTF-8.
    pub sql: &'a [u8],
    pub session: &'a SessionContext,
}

/// Who is asking.
#[derive(Debug, Clone, Default)]
pub struct Principal {
    /// The agent identity (its login name).
    pub identity: String,
    /// The person the agent acts for.
    pub user: Option<String>,
    /// Configured model.
    pub model: Option<String>,
    pub groups: Vec<String>,
    /// The upstream target name.
    pub target: String,
}

/// The verdict for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Block {
        rule: String,
        message: String,
    },
    /// Held for a human. Until approvals exist, sessions treat it as a block
    /// with a distinct message.
    RequireApproval {
        rule: String,
        message: String,
    },
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow => f.write_str("allow"),
            Decision::Block { rule, message } => write!(f, "blocked by rule {rule}: {message}"),
            Decision::RequireApproval { rule, message } => {
                write!(f, "requires approval by rule {rule}: {message}")
            }
        }
    }
}

/// Changes to the [`SessionContext`] that an allowed statement makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// `PREPARE name ...` allowed: add these names (applied last).
    pub prepared: Vec<String>,
    /// `DEALLOCATE name`: remove these names (applied after
    /// `deallocate_all`, before `prepared`).
    pub deallocated: Vec<String>,
    /// `DEALLOCATE ALL` / `DISCARD ALL` (applied first).
    pub deallocate_all: bool,
    /// `SET search_path = ...`: the new path.
    pub search_path: Option<Vec<String>>,
    /// MySQL `USE db`.
    pub current_database: Option<String>,
    /// `DECLARE name CURSOR`: cursors the statement opens, with whether
    /// each is held across transactions (see [`crate::pg::cursors`]).
    pub declared: Vec<(String, bool)>,
    /// `CLOSE name`: portals or cursors the statement closes.
    pub closed: Vec<String>,
    /// `CLOSE ALL`, or `ROLLBACK TO SAVEPOINT` (which closes the portals
    /// opened since the savepoint: airlock cannot tell which, so all).
    pub close_all: bool,
}

/// The full answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// What the session must do.
    pub decision: Decision,
    /// In observe mode (`enforce = false`), what would have happened; the
    /// decision is then `Allow`.
    pub would: Option<Decision>,
    /// Applied by the session only when the statement is forwarded.
    pub effects: Effects,
}

impl Judgement {
    pub fn allow() -> Self {
        Judgement {
            decision: Decision::Allow,
            would: None,
            effects: Effects::default(),
        }
    }

    /// The judgement as a session applies it. In observe mode (`enforce =
    /// false`), for a session that masks (`masking`): a built-in rule the
    /// statement breaks refuses it after all. Masking
    /// depends on them to see what a statement reads (functions that run
    /// SQL given as text, opaque code, file access, the lexer settings,
    /// search_path, statements it cannot parse ...); waived, a masked
    /// column comes back in clear (red-team finding:
    /// `query_to_xml('select email from customers', ...)`). Only
    /// `builtin.unbounded-write`, which guards writes, stays observed.
    pub fn enforcing_builtins(mut self, masking: bool) -> Self {
        if !masking {
            return self;
        }
        if let Some(Decision::Block { rule, .. }) = &self.would {
            if rule.starts_with("builtin.") && rule != builtin::ids::UNBOUNDED_WRITE {
                if let Some(would) = self.would.take() {
                    self.decision = would;
                    self.effects = Effects::default();
                }
            }
        }
        self
    }

    /// Whether a session may replay this judgement for a repeat of its
    /// statement ([`memo`]): allowed, with no observe-mode report and no
    /// change to the session.
    pub fn replayable(&self) -> bool {
        self.decision == Decision::Allow
            && self.would.is_none()
            && self.effects == Effects::default()
    }
}

/// Session-wide settings a policy asks for, applied at connect time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSettings {
    /// Make the upstream session read-only and keep it so.
    pub read_only: bool,
    /// Applied upstream as statement_timeout (Postgres) / max_statement_time.
    pub statement_timeout: Option<Duration>,
    /// Applied upstream as idle_in_transaction_session_timeout (Postgres)
    /// / idle_transaction_timeout (MariaDB): a session left idle in an
    /// open transaction that long is ended by the server, and with it the
    /// locks it holds and any DDL of it that masking waits for.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// Rows returned per statement before airlock ends the result with an error.
    pub max_rows: Option<u64>,
    /// The policy denies columns: errors that quote data values lose
    /// them (see [`crate::masking::error_values`]).
    pub withhold_error_values: bool,
}

/// How far a judgement may serve later requests (see
/// [`Gate::judge_reusable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Judge every request afresh.
    Never,
    /// The same text, byte for byte.
    Exact,
    /// Any text of the same [`shape`]: the judgement never looked at a
    /// numeric literal's value.
    Shape,
}

/// Judges statements. Implementations must be cheap to call per statement.
pub trait Gate: Send + Sync {
    fn judge(&self, who: &Principal, request: &Request<'_>) -> Judgement;

    /// [`Gate::judge`] with the statement's [`shape::Shape`] already worked
    /// out, for a caller that needs the shape too (masking's plan cache), so
    /// that it is computed once per statement.
    fn judge_shaped(
        &self,
        who: &Principal,
        request: &Request<'_>,
        _shape: &shape::Shape,
    ) -> Judgement {
        self.judge(who, request)
    }

    /// [`Gate::judge_shaped`], also saying how far the judgement may be
    /// reused: for later requests of the same principal, from the same
    /// [`Source`], in the same session context, while this gate is in
    /// force. A session keeps its last few such judgements (see [`memo`])
    /// and skips the gate when a statement repeats one. The default
    /// promises nothing.
    fn judge_reusable(
        &self,
        who: &Principal,
        request: &Request<'_>,
        shape: &shape::Shape,
    ) -> (Judgement, Reuse) {
        (self.judge_shaped(who, request, shape), Reuse::Never)
    }

    /// The longest text a judgement reused by shape ([`Reuse::Shape`]) may
    /// serve: a longer one must be judged on its own (it may be over the
    /// size limit, which a shape match would skip).
    fn max_shared_bytes(&self) -> usize {
        0
    }

    /// Settings for a new session of `who`.
    fn session_settings(&self, _who: &Principal) -> SessionSettings {
        SessionSettings::default()
    }

    /// Whether sessions must refuse Bind/Execute of prepared statements and
    /// portals that did not come from a statement this gate allowed. Only a
    /// gate that allows everything can do without.
    fn vets_prepared(&self) -> bool {
        true
    }

    /// Whether the policy for `who` has rules on tables that a write
    /// carried on by a foreign key must be judged by (`deny_tables`,
    /// `allow_tables`, approvals naming tables): its sessions then load
    /// the target's foreign keys ([`SessionContext::foreign_keys`]).
    fn judges_tables(&self, _who: &Principal) -> bool {
        false
    }

    /// Vets Postgres startup parameters (e.g. `options=-c role=admin`).
    fn judge_startup(&self, _who: &Principal, _params: &[(String, String)]) -> Decision {
        Decision::Allow
    }
}

/// The gate when no rules are configured: lets everything through.
#[derive(Debug, Default)]
pub struct AllowAll;

impl Gate for AllowAll {
    fn judge(&self, _who: &Principal, _request: &Request<'_>) -> Judgement {
        Judgement::allow()
    }

    fn vets_prepared(&self) -> bool {
        false
    }
}

pub mod builtin;
pub mod cache;
pub mod classify;
pub mod engine;
pub mod explain;
pub mod extract;
pub mod facts;
mod fetch_forms;
pub mod foreign_keys;
pub mod lex_agreement;
pub mod lint;
mod maintenance_forms;
pub mod memo;
pub mod ownership;
pub mod parse;
mod plain_scan;
pub mod rule_files;
pub mod rules;
pub mod server_lexer;
pub mod shape;
pub mod startup_options;
mod tokenizer_dialect;

pub use engine::Engine;
pub use explain::explain;
pub use rules::{load_rules, RuleSet, RulesError};

#[cfg(test)]
mod tests;
