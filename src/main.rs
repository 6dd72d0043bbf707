//! The `airlock` command line.
//!
//! * `airlock serve --config airlock.toml`: run the proxy.
//! * `airlock demo`: throwaway Postgres with sample PII data, airlock in front.
//! * `airlock passwd [--mysql]`: print a SCRAM verifier (or the MySQL
//!   `mysql_secret`: native hash and caching_sha2 verifier) for an
//!   identity's secret.
//! * `airlock check`: validate the config and rule files.
//! * `airlock explain`: show how a statement would be judged.
//! * `airlock approvals`, `approve ID [--for 10m]`, `deny ID --reason ...`:
//!   decide held statements through the admin API of a running airlock.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use airlock::config::Config;
use airlock::policy::engine::Engine;
use airlock::policy::rules::load_rules;
use airlock::policy::{Dialect, Principal};

#[derive(Parser)]
#[command(
    name = "airlock",
    version,
    about = "A database wire-protocol firewall for AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "airlock.toml", env = "AIRLOCK_CONFIG")]
        config: PathBuf,
    },
    /// Start a throwaway Postgres with sample data and airlock in front of it.
    Demo {
        /// Port for airlock's Postgres listener (0 picks a free one).
        #[arg(long, default_value_t = 6432)]
        port: u16,
        /// Start everything, print the connection details, then stop (for scripts).
        #[arg(long)]
        check: bool,
    },
    /// Validate a config file and the rules it names, or rule files alone.
    Check {
        /// Rule files or directories to check (default: the config's rules).
        paths: Vec<PathBuf>,
        #[arg(long, short, default_value = "airlock.toml", env = "AIRLOCK_CONFIG")]
        config: PathBuf,
    },
    /// Show how a statement is judged: facts, decision and deciding rule.
    Explain {
        /// The agent identity (groups and model come from the config).
        #[arg(long)]
        identity: String,
        /// The target (database) the agent would use (default: the
        /// identity's only target, when it has one).
        #[arg(long)]
        target: Option<String>,
        /// SQL dialect (default: the target's protocol, else postgres).
        #[arg(long, value_enum)]
        dialect: Option<DialectArg>,
        /// Rule file or directory (default: the config's rules).
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long, short, default_value = "airlock.toml", env = "AIRLOCK_CONFIG")]
        config: PathBuf,
        /// Exit with status 2 when the statement would not run as sent
        /// (blocked, or held for approval), for scripts and CI; 0 when it
        /// would, 1 on errors.
        #[arg(long)]
        exit_code: bool,
        /// The SQL to judge.
        sql: String,
    },
    /// List audit records: what agents ran, and what was refused and why.
    Log(LogArgs),
    /// Print one session's statements and decisions in order.
    Replay {
        /// The session's number, as `airlock log` shows it (`s42` or `42`).
        #[arg(value_parser = parse_session)]
        session: u64,
        #[command(flatten)]
        store: AuditStore,
    },
    /// Audit log maintenance.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// List the statements waiting for human approval (running airlock).
    Approvals {
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Approve a held statement; with --for, the same statement from the
    /// same identity passes without asking for that long.
    Approve {
        /// The request id, as `airlock approvals` lists it.
        id: u64,
        /// An approval window, e.g. "10m".
        #[arg(long = "for", value_name = "DURATION")]
        window: Option<String>,
        /// Who approves (default: $USER, else "cli").
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Deny a held statement; the agent gets the reason.
    Deny {
        /// The request id, as `airlock approvals` lists it.
        id: u64,
        /// Why; the agent gets it in its error.
        #[arg(long)]
        reason: String,
        /// Who denies (default: $USER, else "cli").
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print a SCRAM-SHA-256 verifier for an identity's `secret` key.
    Passwd {
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        stdin: bool,
        /// Print the MySQL verifiers (`identities.*.mysql_secret`: the
        /// mysql_native_password hash and the caching_sha2_password
        /// verifier) instead of the SCRAM verifier.
        #[arg(long)]
        mysql: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if !matches!(cli.command, Command::Serve { .. } | Command::Demo { .. }) {
        end_quietly_on_broken_pipe();
    }
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Demo { port, check } => {
            runtime().and_then(|rt| rt.block_on(airlock::demo::run(port, check)))
        }
        Command::Passwd { stdin, mysql } => passwd(stdin, mysql),
        Command::Check { paths, config } => check(&config, &paths),
        Command::Log(args) => log(args),
        Command::Approvals { json, admin } => admin
            .resolve()
            .and_then(|admin| airlock::admin::cli::list(&admin, json)),
        Command::Approve {
            id,
            window,
            by,
            admin,
        } => admin.resolve().and_then(|admin| {
            airlock::admin::cli::approve(&admin, id, window.as_deref(), &reviewer(by))
        }),
        Command::Deny {
            id,
            reason,
            by,
            admin,
        } => admin
            .resolve()
            .and_then(|admin| airlock::admin::cli::deny(&admin, id, &reason, &reviewer(by))),
        Command::Replay { session, store } => store
            .path()
            .and_then(|p| airlock::audit::cli_replay(&p, session)),
        Command::Audit {
            command: AuditCommand::Verify { store },
        } => store.path().and_then(|p| airlock::audit::cli_verify(&p)),
        Command::Audit {
            command: AuditCommand::Prune { older_than, store },
        } => store
            .path()
            .and_then(|p| airlock::audit::cli_prune(&p, older_than)),
        Command::Explain {
            identity,
            target,
            dialect,
            rules,
            config,
            exit_code,
            sql,
        } => match explain(
            &config,
            rules,
            &identity,
            target,
            dialect.map(Dialect::from),
            &sql,
        ) {
            Ok(false) if exit_code => return ExitCode::from(2),
            other => other.map(|_| ()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("airlock: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args)]
struct LogArgs {
    /// Only what was refused: statements blocked, held for approval or
    /// would-block, logins refused, and failed logins.
    #[arg(long)]
    blocked: bool,
    #[arg(long)]
    identity: Option<String>,
    /// The person the agent acts for (an identity's `user`).
    #[arg(long)]
    user: Option<String>,
    /// Configured or declared model.
    #[arg(long)]
    model: Option<String>,
    /// Only records this recent, e.g. "1h", "30m", "2d".
    #[arg(long)]
    since: Option<String>,
    /// One session, as the table shows it (`s42` or `42`).
    #[arg(long, value_parser = parse_session)]
    session: Option<u64>,
    /// One rule (`demo-agent.deny-columns`), or every rule of a policy
    /// (`demo-agent`).
    #[arg(long)]
    rule: Option<String>,
    /// The most recent N records (the table: 1000 unless given).
    #[arg(long)]
    limit: Option<usize>,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: AuditStore,
}

fn log(a: LogArgs) -> anyhow::Result<()> {
    let since = match &a.since {
        Some(s) => {
            let d =
                humantime::parse_duration(s).map_err(|e| anyhow::anyhow!("--since {s:?}: {e}"))?;
            Some(airlock::audit::now_ms() - d.as_millis() as i64)
        }
        None => None,
    };
    // A table is for a person at a terminal: the most recent records,
    // not the whole log, unless asked. JSON lines are for programs.
    let limit = match (a.limit, a.json) {
        (None, false) => Some(TABLE_LIMIT),
        (limit, _) => limit,
    };
    let filter = airlock::audit::Filter {
        blocked: a.blocked,
        identity: a.identity,
        user: a.user,
        model: a.model,
        since,
        session: a.session,
        rule: a.rule,
        limit,
    };
    let shown = airlock::audit::cli_log(&a.store.path()?, filter, a.json)?;
    if shown == 0 && !a.json {
        // Said on stderr, so that a filter that matches nothing is not
        // mistaken for a log that is empty or a command that failed.
        eprintln!("(no records match)");
    }
    if a.limit.is_none() && !a.json && shown == TABLE_LIMIT {
        eprintln!("(the most recent {TABLE_LIMIT} records; --limit N for more, --json for all)");
    }
    Ok(())
}

/// Records `airlock log` prints as a table when no `--limit` is given.
const TABLE_LIMIT: usize = 1000;

/// A session number as the audit table shows it (`s42`) or bare (`42`).
fn parse_session(s: &str) -> Result<u64, String> {
    s.strip_prefix('s')
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("{s:?}: expected a session number, e.g. s42 or 42"))
}

/// A duration as the config writes them ("90d", "12h", "30m").
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (write e.g. \"90d\" or \"12h\")"))
}

/// Where a running airlock's admin API is; the token comes from
/// AIRLOCK_ADMIN_TOKEN (never a flag: flags show in `ps`).
#[derive(clap::Args)]
struct AdminArgs {
    /// The admin listener's URL. Default: the `[admin] listen` address of
    /// the config (--config), else http://127.0.0.1:9187. A token, when
    /// the listener has one, is read from AIRLOCK_ADMIN_TOKEN.
    #[arg(long = "admin", value_name = "URL", env = "AIRLOCK_ADMIN_URL")]
    url: Option<String>,
    /// The config whose admin listener to use when --admin is not given.
    #[arg(long, short, default_value = "airlock.toml", env = "AIRLOCK_CONFIG")]
    config: PathBuf,
}

impl AdminArgs {
    /// The API's address and token: `--admin`, else the config's
    /// `[admin] listen` (read without its secrets), else the default.
    fn resolve(self) -> anyhow::Result<airlock::admin::cli::Admin> {
        let url = match self.url {
            Some(url) => url,
            None if self.config.exists() => match Config::admin_listen(&self.config)? {
                // Port 0: a free port chosen when airlock started (the
                // demo's config), which only airlock's own output names.
                Some(addr) if addr.port() == 0 => anyhow::bail!(
                    "{}: [admin] listen is {addr}, a port chosen when airlock started; pass --admin with the URL airlock printed",
                    self.config.display()
                ),
                Some(addr) => format!("http://{addr}"),
                None => anyhow::bail!(
                    "{}: no [admin] listener, so nobody can approve there; pass --admin URL for another airlock",
                    self.config.display()
                ),
            },
            None => "http://127.0.0.1:9187".to_owned(),
        };
        Ok(airlock::admin::cli::Admin {
            url,
            token: std::env::var("AIRLOCK_ADMIN_TOKEN").ok(),
        })
    }
}

/// The reviewer's name: `--by`, else the login name.
fn reviewer(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into())
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain: detects edited, inserted or deleted records.
    Verify {
        #[command(flatten)]
        store: AuditStore,
    },
    /// Remove records older than a duration (as `[audit] retention` does
    /// every hour), leaving a record that says so; safe beside a running
    /// airlock.
    Prune {
        /// Keep this much history, e.g. "90d" or "12h".
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: std::time::Duration,
        #[command(flatten)]
        store: AuditStore,
    },
}

/// Where the audit store is: `--db`, else the config's `[audit] path`.
#[derive(clap::Args)]
struct AuditStore {
    /// The audit SQLite file.
    #[arg(long)]
    db: Option<PathBuf>,
    #[arg(long, short, default_value = "airlock.toml", env = "AIRLOCK_CONFIG")]
    config: PathBuf,
}

impl AuditStore {
    fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(db) = &self.db {
            return Ok(db.clone());
        }
        // Only the audit path: reading the log needs no secret the config
        // names (the admin token, upstream passwords).
        Config::audit_path(&self.config)?.ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no audit store: pass --db or configure [audit] path",
                self.config.display()
            )
        })
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DialectArg {
    Postgres,
    Mysql,
}

impl From<DialectArg> for Dialect {
    fn from(d: DialectArg) -> Dialect {
        match d {
            DialectArg::Postgres => Dialect::Postgres,
            DialectArg::Mysql => Dialect::MySql,
        }
    }
}

fn check(config: &Path, paths: &[PathBuf]) -> anyhow::Result<()> {
    if paths.is_empty() {
        let c = Config::load_without_secrets(config)?;
        for unread in &c.unread_secrets {
            println!("note: {unread} (`airlock serve` needs it; checking the rules does not)");
        }
        match &c.policy.rules {
            Some(rules) => {
                let path = rules.get_ref();
                // "ok" only once the rules it names load too.
                let (set, masks) = load_all_rules(path)?;
                println!("{}: ok", config.display());
                println!("{}: {}", path.display(), rules_summary(&set, &masks));
                for w in airlock::policy::lint::warnings(&c, &set, &masks) {
                    println!("warning: {w}");
                }
            }
            None => {
                println!("{}: ok", config.display());
                println!("no [policy] rules configured: every statement would be allowed");
            }
        }
        return Ok(());
    }
    let mut failed = false;
    for p in paths {
        match check_rules(p) {
            Ok(summary) => println!("{}: {summary}", p.display()),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    anyhow::ensure!(!failed, "rule files have errors");
    Ok(())
}

/// Loads a rule file (or directory) as `serve` does, guardrails and
/// masking both: "ok (N policies, M masks)", or the first error.
fn check_rules(path: &Path) -> anyhow::Result<String> {
    let (set, masks) = load_all_rules(path)?;
    let mut out = rules_summary(&set, &masks);
    for w in airlock::policy::lint::rule_warnings(&set) {
        out.push_str(&format!("\nwarning: {w}"));
    }
    Ok(out)
}

/// The guardrails and masking rules of a rule file (or directory).
fn load_all_rules(
    path: &Path,
) -> anyhow::Result<(
    airlock::policy::rules::RuleSet,
    airlock::masking::rules::MaskingRules,
)> {
    let set = load_rules(path)?;
    let masks = airlock::masking::rules::load_masking_path(path)?;
    Ok((set, masks))
}

/// "ok (N policies, M masks)".
fn rules_summary(
    set: &airlock::policy::rules::RuleSet,
    masks: &airlock::masking::rules::MaskingRules,
) -> String {
    let count = |n: usize, one: &str, many: &str| match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    };
    format!(
        "ok ({}, {})",
        count(set.policies.len(), "policy", "policies"),
        count(masks.rules.len(), "mask", "masks")
    )
}

fn explain(
    config_path: &Path,
    rules: Option<PathBuf>,
    identity: &str,
    target: Option<String>,
    dialect: Option<Dialect>,
    sql: &str,
) -> anyhow::Result<bool> {
    let config = if config_path.exists() {
        Some(Config::load_without_secrets(config_path)?)
    } else {
        None
    };
    let rules = match rules {
        Some(r) => r,
        None => config
            .as_ref()
            .and_then(|c| c.policy.rules.as_ref().map(|r| r.get_ref().clone()))
            .ok_or_else(|| {
                anyhow::anyhow!("no rules: pass --rules or a config with [policy] rules")
            })?,
    };
    let engine = Engine::new(load_rules(&rules)?);
    let target = match target {
        Some(t) => t,
        None => default_target(config.as_ref(), identity)?,
    };
    // A MySQL session starts in its target's database: unqualified names
    // resolve there.
    let database = config
        .as_ref()
        .and_then(|c| c.targets.get(&target))
        .filter(|t| t.protocol == airlock::config::Protocol::Mysql)
        .map(|t| t.database.as_str());
    let dialect = dialect.unwrap_or_else(|| {
        let protocol = config
            .as_ref()
            .and_then(|c| c.targets.get(&target))
            .map(|t| t.protocol);
        match protocol {
            Some(airlock::config::Protocol::Mysql) => Dialect::MySql,
            _ => Dialect::Postgres,
        }
    });
    // On a passthrough target the identity is a database user, described
    // by targets.<name>.passthrough rather than [identities].
    let passthrough = config.as_ref().and_then(|c| {
        c.targets
            .get(&target)
            .filter(|t| t.credentials == airlock::config::CredentialMode::Passthrough)
    });
    let principal = match passthrough {
        Some(t) => {
            let (user, model, groups) = t.passthrough.describe(identity);
            Principal {
                identity: identity.to_owned(),
                user,
                model,
                groups,
                target,
            }
        }
        None => {
            let known = config.as_ref().and_then(|c| c.identities.get(identity));
            Principal {
                identity: identity.to_owned(),
                user: known.and_then(|i| i.user.clone()),
                model: known.and_then(|i| i.model.clone()),
                groups: known.map(|i| i.groups.clone()).unwrap_or_default(),
                target,
            }
        }
    };
    // A name the config does not list is judged all the same, which a typo
    // would hide (operator finding): said first.
    if let Some(c) = &config {
        let listed = c.identities.contains_key(identity)
            || passthrough.is_some_and(|t| t.passthrough.users.contains_key(identity));
        if !listed {
            match passthrough {
                Some(_) => println!(
                    "note: {identity} is not an identity of the config: judged as a database user of passthrough target {}, with its default groups",
                    principal.target
                ),
                None => println!(
                    "note: {identity} is not an identity of the config (a typo?): judged with no groups"
                ),
            }
        }
    }
    println!(
        "identity: {identity}  user: {}  model: {}  groups: [{}]  target: {}",
        principal.user.as_deref().unwrap_or("-"),
        principal.model.as_deref().unwrap_or("-"),
        principal.groups.join(", "),
        if principal.target.is_empty() {
            "-"
        } else {
            &principal.target
        }
    );
    let (text, allowed) =
        airlock::policy::explain::explain_and_judge(&engine, &principal, dialect, sql, database);
    print!("{text}");
    let masking = airlock::masking::load_masking_path(&rules)?;
    if !masking.rules.is_empty() {
        let limits = engine.rules().limits;
        let masker = airlock::masking::Masker::new(masking, None, limits);
        println!("masking (without a live catalog: `*` of unknown tables is not expanded):");
        let ctx = airlock::policy::SessionContext {
            search_path: vec!["$user".into(), "public".into()],
            ..Default::default()
        };
        let plans = masker.plan(&principal, dialect, sql, &ctx, &airlock::masking::NoCatalog);
        for (i, plan) in plans.iter().enumerate() {
            println!("  statement {}: {}", i + 1, describe_plan(plan));
        }
    }
    Ok(allowed)
}

/// The target `explain` judges for when `--target` is not given: the
/// identity's only target (for a database user on a passthrough target,
/// the only passthrough target). None without a config; an error when
/// there is more than one to choose from, since policies often apply per
/// target and a guess could show the wrong decision.
fn default_target(config: Option<&Config>, identity: &str) -> anyhow::Result<String> {
    let Some(config) = config else {
        return Ok(String::new());
    };
    let candidates: Vec<&String> = match config.identities.get(identity) {
        Some(known) => known.targets.get_ref().iter().collect(),
        None => config
            .targets
            .iter()
            .filter(|(_, t)| t.credentials == airlock::config::CredentialMode::Passthrough)
            .map(|(name, _)| name)
            .collect(),
    };
    match candidates.as_slice() {
        [] => Ok(String::new()),
        [only] => Ok((*only).clone()),
        many => anyhow::bail!(
            "identity {identity:?} may use targets {}: pass --target to choose one",
            many.iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn describe_plan(plan: &airlock::masking::StatementPlan) -> String {
    use airlock::masking::{ColumnMask, StatementPlan};
    match plan {
        StatementPlan::NoResult => "no result set".into(),
        StatementPlan::Ddl => "no result set; DDL: only transaction and session statements may follow it until its transaction ends".into(),
        StatementPlan::Opaque => "rows of unknown shape: columns are matched by name".into(),
        StatementPlan::Block { rule, message, .. } => format!("refused by {rule}: {message}"),
        StatementPlan::Columns(cols) | StatementPlan::OpenColumns(cols) => cols
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                ColumnMask::Clear => format!("#{} clear", i + 1),
                ColumnMask::Detect => format!("#{} detectors", i + 1),
                ColumnMask::Mask { rule, strategy } => {
                    format!("#{} masked by {rule} ({strategy:?})", i + 1)
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        // One event, one line: what clients sent is escaped.
        .fmt_fields(airlock::log_fields::EscapedFields)
        .init();
}

/// A command that prints ends quietly when its reader goes away
/// (`airlock log | head`), as other command-line tools do, rather than
/// panic on the broken pipe: SIGPIPE's default action. Not for `serve`
/// and `demo`, whose sockets need it ignored (Rust's default).
fn end_quietly_on_broken_pipe() {
    // SAFETY: called once at start, before any other thread exists;
    // setting a signal's disposition to its default has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The async runtime: one worker thread per CPU airlock may run on. With a
/// single CPU (a small VM, or `taskset`), a current-thread runtime: the
/// work-stealing scheduler has nothing to steal there and only adds cost to
/// every wake-up.
///
/// I/O only, without tokio's time driver: that driver reads the clock and
/// walks its wheel at every park, about 550 instructions per round trip.
/// Every timer runs on [`airlock::timer_thread`], which is started here
/// first; without it airlock does not start.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    airlock::timer_thread::start()
        .map_err(|e| anyhow::anyhow!("{e}: airlock's timeouts could not run"))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    Ok(builder.enable_io().build()?)
}

fn serve(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    runtime()?.block_on(airlock::server::run_until_signal(config))
}

fn passwd(from_stdin: bool, mysql: bool) -> anyhow::Result<()> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        // rpassword reads the terminal, not stdin: without one (a pipe,
        // a script), say how to pass the secret instead.
        let prompt = |p: &str| {
            rpassword::prompt_password(p).map_err(|e| {
                anyhow::anyhow!(
                    "cannot prompt for the secret on a terminal ({e}); pipe it in with --stdin, e.g. `printf %s \"$SECRET\" | airlock passwd --stdin`"
                )
            })
        };
        let first = prompt("Secret: ")?;
        let again = prompt("Again: ")?;
        anyhow::ensure!(first == again, "the two entries differ");
        first
    };
    anyhow::ensure!(!password.is_empty(), "empty secret");
    if mysql {
        println!(
            "{}",
            airlock_protocol::mysql::auth::secret_string(password.as_bytes())
        );
    } else {
        println!("{}", airlock_protocol::pg::scram::make_verifier(&password));
    }
    Ok(())
}
