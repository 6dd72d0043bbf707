//! SQL text → statements, defensively.
//!
//! Tokenizes once with sqlparser's tokenizer, then works on tokens:
//! unwraps MariaDB `/*M! ... */` executable comments (MySQL `/*! ... */`
//! ones are already unwrapped by the tokenizer), decodes Postgres
//! `U&"..."` identifiers, splits at `;`, enforces size/token/nesting caps,
//! recognizes statements sqlparser cannot parse but that we must name
//! (`DO`, `ALTER SYSTEM`, `TABLE t`, MySQL file access, Postgres `FETCH`
//! and `MOVE` forms: see [`super::fetch_forms`]; Postgres `VACUUM` and
//! `ANALYZE`: see [`super::maintenance_forms`]), and parses each
//! statement with a recursion limit. Anything that does not parse cleanly
//! is a [`Blocked`] with a built-in rule id.

use sqlparser::ast::{Analyze, Statement, VacuumStatement};
use sqlparser::dialect::{Dialect as SqlDialect, MySqlDialect, PostgreSqlDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace, Word};

use super::builtin::ids;
use super::lex_agreement;
pub use super::maintenance_forms::{MaintainedTable, Maintenance};
use super::tokenizer_dialect::tokenizer_dialect;
use super::Dialect;

/// Caps applied before and during parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request text in bytes.
    pub max_statement_bytes: usize,
    /// Most tokens in one statement (bounds flat expressions like `1+1+...`).
    pub max_tokens: usize,
    /// Deepest bracket nesting, and sqlparser's recursion limit.
    pub max_depth: usize,
    /// Most statements in one request (a simple Query or COM_QUERY):
    /// each one's judgement, plans and reply tracking take memory until
    /// the request ends (DoS finding: 100,000 `select 1;` in 900 KB took
    /// 1.4 GB).
    pub max_statements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_statement_bytes: 1024 * 1024,
            max_tokens: 20_000,
            max_depth: 64,
            max_statements: 1000,
        }
    }
}

/// A request refused before any policy is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub rule: &'static str,
    pub message: String,
    /// When a policy waives `rule`, the statement is still refused, as
    /// one airlock cannot judge, for this reason: a MySQL `LOAD DATA
    /// INFILE` that does not parse (waiving file access must not let its
    /// table go unjudged), a request over the limits, a refusal among
    /// other statements (review finding: with opaque code waived,
    /// `CREATE FUNCTION ...; INSERT INTO secret ...` ran unjudged whole).
    pub unjudged: Option<&'static str>,
}

impl Blocked {
    pub(crate) fn new(rule: &'static str, message: impl Into<String>) -> Self {
        Blocked {
            rule,
            message: message.into(),
            unjudged: None,
        }
    }

    /// This refusal, kept when its rule is waived (see `unjudged`).
    pub(crate) fn unjudged(self, why: &'static str) -> Self {
        Blocked {
            unjudged: Some(why),
            ..self
        }
    }
}

/// One parsed statement.
#[derive(Debug)]
pub struct Parsed {
    pub statement: Statement,
    /// What a Postgres VACUUM or ANALYZE names, which sqlparser's own
    /// statements for them cannot hold (see [`super::maintenance_forms`]);
    /// `statement` is then a bare `VACUUM` or `ANALYZE`.
    pub maintenance: Option<Maintenance>,
    /// Built-in rules the text breaks, found before it was parsed; judged
    /// with the statement's facts, so that a policy that waives them
    /// still judges the tables it names.
    pub violations: Vec<(&'static str, String)>,
}

pub(crate) fn sql_dialect(d: Dialect) -> &'static dyn SqlDialect {
    static PG: PostgreSqlDialect = PostgreSqlDialect {};
    static MY: MySqlDialect = MySqlDialect {};
    match d {
        Dialect::Postgres => &PG,
        Dialect::MySql => &MY,
    }
}

/// Bytes → checked UTF-8 text.
pub fn check_text<'a>(sql: &'a [u8], limits: &Limits) -> Result<&'a str, Blocked> {
    if sql.len() > limits.max_statement_bytes {
        return Err(Blocked::new(
            ids::TOO_LARGE,
            format!(
                "statement text is {} bytes; the limit is {} bytes",
                sql.len(),
                limits.max_statement_bytes
            ),
        )
        .unjudged(
            "airlock cannot judge a statement past its limits: raise them in [settings] instead",
        ));
    }
    let text = std::str::from_utf8(sql)
        .map_err(|_| Blocked::new(ids::NON_UTF8, "statement text is not valid UTF-8"))?;
    if text.contains('\0') {
        return Err(Blocked::new(
            ids::UNPARSEABLE,
            "statement text contains a NUL byte",
        ));
    }
    Ok(text)
}

/// Parses every statement in `text`. An empty list means the text held
/// only whitespace, comments and semicolons.
pub fn parse(dialect: Dialect, text: &str, limits: &Limits) -> Result<Vec<Parsed>, Blocked> {
    let d = sql_dialect(dialect);
    let tokens = Tokenizer::new(tokenizer_dialect(dialect), text)
        .tokenize_with_location()
        .map_err(|e| Blocked::new(ids::UNPARSEABLE, format!("could not tokenize: {e}")))?;
    match dialect {
        Dialect::Postgres => refuse_postgres_misreads(&tokens)?,
        Dialect::MySql => refuse_mysql_misreads(&tokens)?,
    }
    lex_agreement::check(dialect, text, &tokens)?;
    let tokens = expand_tokens(dialect, tokens, 0)?;
    let segments: Vec<&[TokenWithSpan]> = tokens
        .split(|t| t.token == Token::SemiColon)
        .filter(|segment| {
            !segment
                .iter()
                .all(|t| matches!(t.token, Token::Whitespace(_)))
        })
        .collect();
    if segments.len() > limits.max_statements {
        return Err(Blocked::new(
            ids::TOO_COMPLEX,
            format!(
                "the request holds more than {} statements (settings.max_statements); send fewer at a time",
                limits.max_statements
            ),
        )
        .unjudged("airlock does not judge so many statements at once"));
    }
    let many = segments.len() > 1;
    let mut out = Vec::with_capacity(segments.len());
    for segment in segments {
        match parse_segment(dialect, d, segment, limits) {
            Ok(p) => out.push(p),
            Err(b) if many && b.unjudged.is_none() => {
                return Err(b.unjudged(
                    "the request holds other statements, which airlock must judge: send this one on its own",
                ))
            }
            Err(b) => return Err(b),
        }
    }
    Ok(out)
}

/// Tokens sqlparser's Postgres tokenizer reads otherwise than Postgres, so
/// that the two disagree on where a string or a comment starts and part
/// of the text runs unjudged (red-team findings):
///
/// - string constants separated only by whitespace that holds a newline
///   are one constant to Postgres (`'a'` newline `'b'` is `'ab'`), which
///   carries an `E'...'` constant's backslash escapes into the parts after
///   it; sqlparser reads separate constants, the next one without escapes
///   (`E''`, a newline, then `'\''; SELECT ssn ... --'` ran a second
///   statement airlock took for a string). Two string constants with only
///   whitespace or comments between them are refused: without a newline
///   Postgres refuses them too;
/// - `--` and `/*` always start a comment to Postgres, which ends an
///   operator before them; sqlparser takes them into the operator
///   (`#/*`, `-/*`, `<>/*`, `?-` then `-`), and a quote in what Postgres
///   skips as a comment opened a string over the code it ran;
/// - a dollar-quote tag Postgres accepts and sqlparser does not (`$€$`,
///   any byte above 0x7f that is not a letter to Rust): sqlparser read a
///   `$` placeholder and went on as code inside Postgres's string;
///   tags are limited to ASCII letters, digits and `_`, not starting
///   with a digit, and a `$` placeholder must be `$` and digits;
/// - `b'...'` and `x'...'` holding other than binary or hex digits
///   (sqlparser reads backslash escapes and doubled quotes in them,
///   Postgres neither).
fn refuse_postgres_misreads(tokens: &[TokenWithSpan]) -> Result<(), Blocked> {
    let misread = |what: &str| {
        Err(Blocked::new(
            ids::UNPARSEABLE,
            format!("{what} is read differently by Postgres and airlock; write it otherwise"),
        ))
    };
    let mut after_string = false;
    for t in tokens {
        if matches!(t.token, Token::Whitespace(_)) {
            continue;
        }
        let string = is_string_constant(&t.token);
        if string && after_string {
            return misread("a string constant continued across lines (write one constant)");
        }
        after_string = string;
        if let Some(what) = bad_bit_or_hex(&t.token) {
            return misread(what);
        }
        match &t.token {
            Token::Placeholder(p)
                if p.starts_with('$')
                    && !(p.len() > 1 && p[1..].bytes().all(|b| b.is_ascii_digit())) =>
            {
                return misread("a `$` that is not a parameter or a dollar quote");
            }
            Token::DollarQuotedString(d) => {
                let tag_ok = d.tag.as_deref().is_none_or(|tag| {
                    tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        && !tag.starts_with(|c: char| c.is_ascii_digit())
                });
                if !tag_ok {
                    return misread("a dollar-quote tag other than ASCII letters, digits and `_`");
                }
            }
            _ => {}
        }
    }
    let code = code_between_literals(tokens);
    if code.contains("--") || code.contains("/*") {
        return misread("an operator running into `--` or `/*`");
    }
    Ok(())
}

/// Tokens sqlparser's MySQL tokenizer reads otherwise than MariaDB and
/// MySQL do, so that the two disagree on where a string, a quoted name or
/// a comment starts and part of the text runs unjudged (red-team
/// findings):
///
/// - `b"..."`: a byte string without backslash escapes to sqlparser; the
///   server has no such literal and reads the name `b` and a string in
///   which `\"` does not end it;
/// - `@` or `@@` followed by a quote, `#`, `-` or any other character that
///   cannot continue a name: sqlparser glues it to the variable's name
///   (`` @@`version `` is one word, and the closing backtick then opens a
///   quoted name to the next backtick), the server reads a quoted variable
///   name or an operator;
/// - `/*` and `#`, or `--` and a space, where sqlparser's tokens run into
///   them: they start a comment to the server (sqlparser reads `|/` and
///   `||/` as Postgres's root operators, so `|/* ' */` opened a string
///   over the code the server ran);
/// - string kinds MySQL does not have at all (raw, triple-quoted,
///   dollar-quoted, `E''`, `U&''`).
///
/// `b'...'` and `x'...'` must hold only binary or hex digits, as the
/// server requires.
fn refuse_mysql_misreads(tokens: &[TokenWithSpan]) -> Result<(), Blocked> {
    let misread = |what: &str| {
        Err(Blocked::new(
            ids::UNPARSEABLE,
            format!("{what} is read differently by MySQL and airlock; write it otherwise"),
        ))
    };
    for t in tokens {
        if let Some(what) = bad_bit_or_hex(&t.token) {
            return misread(what);
        }
        match &t.token {
            Token::Word(w) if w.quote_style.is_none() && w.value.starts_with('@') => {
                let name = w.value.trim_start_matches('@');
                if !name
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii())
                {
                    return misread("a variable name followed by a quote or an operator");
                }
            }
            Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::HexStringLiteral(_) => {}
            other if is_string_constant(other) => {
                return misread(
                    "a string literal of a kind MySQL does not have (such as b\"...\")",
                );
            }
            _ => {}
        }
    }
    let mut code = code_between_literals(tokens);
    code.push(' ');
    if code.contains("/*")
        || code.contains('#')
        || code.match_indices("--").any(|(i, _)| {
            code[i + 2..].starts_with(|c: char| c.is_ascii_whitespace() || c.is_ascii_control())
        })
    {
        return misread("an operator running into a comment");
    }
    Ok(())
}

/// The code between strings, quoted names and comments, as sqlparser split
/// it: adjacent tokens run together, anything else is one space. A comment
/// opener in it is one the server sees and sqlparser did not.
fn code_between_literals(tokens: &[TokenWithSpan]) -> String {
    use std::fmt::Write;
    let mut code = String::new();
    for t in tokens {
        match &t.token {
            Token::Word(w) if w.quote_style.is_some() => code.push(' '),
            Token::Whitespace(_) => code.push(' '),
            other if is_string_constant(other) => code.push(' '),
            other => {
                let _ = write!(code, "{other}");
            }
        }
    }
    code
}

/// What is wrong with a `b'...'` or `x'...'` constant that holds other
/// than binary or hex digits: sqlparser's reading of such a constant (its
/// escapes, its doubled quotes) is not the server's, which refuses it.
fn bad_bit_or_hex(t: &Token) -> Option<&'static str> {
    match t {
        Token::SingleQuotedByteStringLiteral(v) if !v.chars().all(|c| c == '0' || c == '1') => {
            Some("a b'...' constant with other than 0 and 1 in it")
        }
        Token::HexStringLiteral(v) if !v.chars().all(|c| c.is_ascii_hexdigit()) => {
            Some("an x'...' constant with other than hex digits in it")
        }
        _ => None,
    }
}

/// Whether `t` is a quoted string constant of any kind.
pub(crate) fn is_string_constant(t: &Token) -> bool {
    matches!(
        t,
        Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
}

/// Unwraps executable comments and merges `U&"..."` identifiers.
fn expand_tokens(
    dialect: Dialect,
    tokens: Vec<TokenWithSpan>,
    depth: usize,
) -> Result<Vec<TokenWithSpan>, Blocked> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let tok = &tokens[i];
        match &tok.token {
            Token::Whitespace(Whitespace::MultiLineComment(body)) if dialect == Dialect::MySql => {
                if let Some(code) = executable_comment(body) {
                    if depth > 2 {
                        return Err(Blocked::new(
                            ids::UNPARSEABLE,
                            "executable comments nested too deeply",
                        )
                        .unjudged("airlock cannot judge what they run"));
                    }
                    let inner = Tokenizer::new(tokenizer_dialect(dialect), code)
                        .tokenize_with_location()
                        .map_err(|e| {
                            Blocked::new(ids::UNPARSEABLE, format!("could not tokenize: {e}"))
                        })?;
                    // The code the server runs from the comment is read
                    // under the same checks as the text around it.
                    refuse_mysql_misreads(&inner)?;
                    lex_agreement::check(dialect, code, &inner)?;
                    out.push(space(tok));
                    out.extend(expand_tokens(dialect, inner, depth + 1)?);
                    out.push(space(tok));
                } else {
                    out.push(space(tok));
                }
            }
            // sqlparser's MySQL dialect takes `--` and any Unicode space
            // for a comment; MySQL and MariaDB need an ASCII space or
            // control character there and read `--\u{a0}x` as code (minus,
            // minus, a name starting with U+00A0), so the rest of the
            // line would run unjudged.
            Token::Whitespace(Whitespace::SingleLineComment { prefix, comment })
                if dialect == Dialect::MySql
                    && prefix == "--"
                    && comment.chars().next().is_some_and(|c| !c.is_ascii()) =>
            {
                return Err(Blocked::new(
                    ids::UNPARSEABLE,
                    "`--` followed by a non-ASCII space is not a comment to MySQL or MariaDB; \
                     use an ASCII space after `--`",
                ));
            }
            Token::Whitespace(Whitespace::MultiLineComment(_))
            | Token::Whitespace(Whitespace::SingleLineComment { .. }) => out.push(space(tok)),
            Token::Word(w)
                if dialect == Dialect::Postgres
                    && w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("u")
                    && matches!(tokens.get(i + 1).map(|t| &t.token), Some(Token::Ampersand))
                    && matches!(
                        tokens.get(i + 2).map(|t| &t.token),
                        Some(Token::Word(Word {
                            quote_style: Some('"'),
                            ..
                        }))
                    ) =>
            {
                let Some(Token::Word(raw)) = tokens.get(i + 2).map(|t| &t.token) else {
                    return Err(Blocked::new(ids::UNPARSEABLE, "bad U& identifier"));
                };
                // Optional `UESCAPE 'c'` (whitespace allowed in between).
                let mut escape = '\\';
                let mut next = i + 3;
                let mut j = next;
                while matches!(tokens.get(j).map(|t| &t.token), Some(Token::Whitespace(_))) {
                    j += 1;
                }
                if let Some(Token::Word(u)) = tokens.get(j).map(|t| &t.token) {
                    if u.keyword == Keyword::UESCAPE {
                        let mut k = j + 1;
                        while matches!(tokens.get(k).map(|t| &t.token), Some(Token::Whitespace(_)))
                        {
                            k += 1;
                        }
                        match tokens.get(k).map(|t| &t.token) {
                            Some(Token::SingleQuotedString(s)) if s.chars().count() == 1 => {
                                escape = s.chars().next().unwrap_or('\\');
                                next = k + 1;
                            }
                            _ => {
                                return Err(Blocked::new(
                                    ids::UNPARSEABLE,
                                    "UESCAPE needs a one-character string",
                                ))
                            }
                        }
                    }
                }
                let value = decode_unicode_escapes(&raw.value, escape).ok_or_else(|| {
                    Blocked::new(ids::UNPARSEABLE, "invalid Unicode escape in U& identifier")
                })?;
                out.push(TokenWithSpan {
                    token: Token::Word(Word {
                        value,
                        quote_style: Some('"'),
                        keyword: Keyword::NoKeyword,
                    }),
                    span: tok.span,
                });
                i = next;
                continue;
            }
            _ => out.push(tok.clone()),
        }
        i += 1;
    }
    Ok(out)
}

fn space(tok: &TokenWithSpan) -> TokenWithSpan {
    TokenWithSpan {
        token: Token::Whitespace(Whitespace::Space),
        span: tok.span,
    }
}

/// MariaDB `/*M!NNNNNN code */` and MySQL `/*!NNNNN code */` → `code`
/// (the tokenizer leaves both as comments: see
/// [`super::tokenizer_dialect`]).
/// Only an upper-case `M`: MariaDB reads `/*m! ... */` as a plain comment,
/// and code airlock judged but the server never runs would hide what it
/// does run.
fn executable_comment(body: &str) -> Option<&str> {
    let rest = body.strip_prefix("M!").or_else(|| body.strip_prefix('!'))?;
    Some(rest.trim_start_matches(|c: char| c.is_ascii_digit()))
}

/// Decodes Postgres `U&` escapes: `\XXXX`, `\+XXXXXX`, and `\\`.
pub fn decode_unicode_escapes(s: &str, escape: char) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != escape {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&escape) {
            chars.next();
            out.push(escape);
            continue;
        }
        let n = if chars.peek() == Some(&'+') {
            chars.next();
            6
        } else {
            4
        };
        let mut code = 0u32;
        for _ in 0..n {
            code = code * 16 + chars.next()?.to_digit(16)?;
        }
        out.push(char::from_u32(code)?);
    }
    Some(out)
}

fn words(segment: &[TokenWithSpan]) -> impl Iterator<Item = &Token> {
    segment
        .iter()
        .map(|t| &t.token)
        .filter(|t| !matches!(t, Token::Whitespace(_)))
}

/// Postgres takes any boolean spelling for COPY's `FREEZE` and `HEADER`
/// options (`on`, `off`, `yes`, `no`, `1`, `0`; `HEADER` also `match`),
/// sqlparser only `TRUE` and `FALSE`: `pgbench -i` sends `WITH (freeze
/// on)`. The value changes nothing airlock judges, so the copy that is
/// parsed spells it as sqlparser does; the bytes forwarded stay the
/// client's. Only a value that stands alone between the option's name
/// and the next `,` or `)`, after the statement's own `TO` or `FROM` (not
/// in a `COPY (SELECT …)` query, where `header no` may be a column and its
/// alias: red-team finding), is respelled.
fn copy_booleans(toks: &mut [TokenWithSpan]) {
    let significant: Vec<usize> = toks
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_)))
        .map(|(i, _)| i)
        .collect();
    // Where the options may start: past the first `TO` or `FROM` outside
    // any parentheses.
    let mut depth = 0usize;
    let mut options_from = None;
    for (k, &i) in significant.iter().enumerate() {
        match &toks[i].token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w)
                if depth == 0
                    && w.quote_style.is_none()
                    && matches!(w.keyword, Keyword::TO | Keyword::FROM) =>
            {
                options_from = Some(k);
                break;
            }
            _ => {}
        }
    }
    let Some(options_from) = options_from else {
        return;
    };
    for w in significant[options_from..].windows(4) {
        let [open, name, at, close] = [w[0], w[1], w[2], w[3]];
        let option = matches!(&toks[name].token, Token::Word(n)
            if n.quote_style.is_none() && matches!(n.keyword, Keyword::FREEZE | Keyword::HEADER));
        if !option
            || !matches!(toks[open].token, Token::LParen | Token::Comma)
            || !matches!(toks[close].token, Token::RParen | Token::Comma)
        {
            continue;
        }
        let truth = match &toks[at].token {
            Token::Word(v) if v.quote_style.is_none() => {
                match v.value.to_ascii_lowercase().as_str() {
                    "on" | "yes" | "match" => Some(true),
                    "off" | "no" => Some(false),
                    _ => None,
                }
            }
            Token::Number(n, _) if n == "1" => Some(true),
            Token::Number(n, _) if n == "0" => Some(false),
            _ => None,
        };
        if let Some(truth) = truth {
            let (value, keyword) = if truth {
                ("TRUE", Keyword::TRUE)
            } else {
                ("FALSE", Keyword::FALSE)
            };
            toks[at].token = Token::Word(Word {
                value: value.to_owned(),
                quote_style: None,
                keyword,
            });
        }
    }
}

/// The statement a Postgres VACUUM or ANALYZE is judged as, its tables
/// aside: it names its class and kind.
fn bare_maintenance(vacuum: bool) -> Statement {
    if vacuum {
        Statement::Vacuum(VacuumStatement {
            full: false,
            sort_only: false,
            delete_only: false,
            reindex: false,
            recluster: false,
            table_name: None,
            threshold: None,
            boost: false,
        })
    } else {
        Statement::Analyze(Analyze {
            table_name: None,
            partitions: None,
            for_columns: false,
            columns: Vec::new(),
            cache_metadata: false,
            noscan: false,
            compute_statistics: false,
            has_table_keyword: false,
        })
    }
}

fn is_kw(t: Option<&Token>, kw: Keyword) -> bool {
    matches!(t, Some(Token::Word(w)) if w.keyword == kw && w.quote_style.is_none())
}

fn parse_segment(
    dialect: Dialect,
    d: &dyn SqlDialect,
    segment: &[TokenWithSpan],
    limits: &Limits,
) -> Result<Parsed, Blocked> {
    let significant = words(segment).count();
    if significant > limits.max_tokens {
        return Err(Blocked::new(
            ids::TOO_COMPLEX,
            format!(
                "statement has {significant} tokens; the limit is {}",
                limits.max_tokens
            ),
        )
        .unjudged(
            "airlock cannot judge a statement past its limits: raise them in [settings] instead",
        ));
    }
    // Postgres cuts every identifier to 63 bytes: two names that differ
    // only after that are one name to the server and two to airlock,
    // which then resolves a qualifier to the wrong table (review finding:
    // `SELECT A.* FROM customers AS B WHERE EXISTS (SELECT 1 FROM orders
    // AS A)` with A and B equal in their first 63 bytes read customers).
    if dialect == Dialect::Postgres {
        if let Some(w) = words(segment).find_map(|t| match t {
            Token::Word(w) if w.value.len() > airlock_protocol::pg::frontend::NAME_KEY_LEN => {
                Some(w)
            }
            _ => None,
        }) {
            return Err(Blocked::new(
                ids::UNPARSEABLE,
                format!(
                    "identifier {}… is longer than {} bytes, which Postgres would cut; use a shorter name",
                    w.value.chars().take(20).collect::<String>(),
                    airlock_protocol::pg::frontend::NAME_KEY_LEN
                ),
            ));
        }
    }
    let mut depth = 0usize;
    let mut max_depth = 0usize;
    for t in words(segment) {
        match t {
            Token::LParen | Token::LBracket | Token::LBrace => {
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            Token::RParen | Token::RBracket | Token::RBrace => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if max_depth > limits.max_depth {
        return Err(Blocked::new(
            ids::TOO_COMPLEX,
            format!(
                "statement nests {max_depth} levels deep; the limit is {}",
                limits.max_depth
            ),
        )
        .unjudged(
            "airlock cannot judge a statement past its limits: raise them in [settings] instead",
        ));
    }

    let mut it = words(segment);
    let first = it.next();
    let second = it.next();
    // (rule, message, why it stays refused when the rule is waived but
    // the statement does not parse)
    let mut judged_anyway: Vec<(&'static str, &'static str, &'static str)> = Vec::new();
    if is_kw(first, Keyword::DO) {
        // MySQL's DO evaluates expressions and discards them: no code
        // block, but nothing airlock judges either (ground-truth red team:
        // the Postgres message puzzled).
        return Err(Blocked::new(
            ids::OPAQUE_CODE,
            match dialect {
                Dialect::MySql => {
                    "DO is not judged by airlock (it evaluates expressions out of sight); use SELECT"
                }
                Dialect::Postgres => "DO blocks run procedural code that airlock cannot inspect",
            },
        ));
    }
    if is_kw(first, Keyword::CREATE)
        && words(segment).take(6).any(|t| {
            is_kw(Some(t), Keyword::FUNCTION)
                || is_kw(Some(t), Keyword::PROCEDURE)
                || is_kw(Some(t), Keyword::TRIGGER)
        })
    {
        let message = "functions, procedures and triggers hold code airlock cannot inspect";
        // A trigger is made on a table, which the policy judges even when
        // it waives opaque code (a trigger on a table that needs approval
        // for writes is a way to write it unheld): it must parse.
        if !words(segment)
            .take(6)
            .any(|t| is_kw(Some(t), Keyword::TRIGGER))
        {
            return Err(Blocked::new(ids::OPAQUE_CODE, message));
        }
        judged_anyway.push((
            ids::OPAQUE_CODE,
            message,
            "airlock could not parse the trigger to judge the table it is made on",
        ));
    }
    if is_kw(first, Keyword::ALTER) && is_kw(second, Keyword::SYSTEM) {
        return Err(Blocked::new(
            ids::ADMIN,
            "ALTER SYSTEM changes the server configuration",
        ));
    }
    if dialect == Dialect::MySql
        && (is_kw(first, Keyword::PREPARE)
            || (is_kw(first, Keyword::EXECUTE) && is_kw(second, Keyword::IMMEDIATE)))
    {
        // The statement they run is a string (or a variable) that only
        // the server reads; connectors prepare through the protocol. As
        // unparseable (not opaque-code, which a policy may waive to allow
        // CREATE FUNCTION): nothing may let such a string through.
        return Err(Blocked::new(
            ids::UNPARSEABLE,
            "MySQL PREPARE ... FROM and EXECUTE IMMEDIATE run a statement given as a string, which airlock cannot judge; prepare through the protocol (COM_STMT_PREPARE), as connectors do",
        ));
    }
    // Judged with the rest of the statement, which must then parse (see
    // `Parsed::violations`): a waiver of file access must not skip the
    // tables it reads or writes (review finding: `LOAD DATA ... INTO
    // TABLE` of a denied table was allowed once file access was waived).
    let file_access = dialect == Dialect::MySql
        && words(segment).any(|t| {
            matches!(t, Token::Word(w) if w.quote_style.is_none()
                && ["outfile", "dumpfile", "infile"]
                    .iter()
                    .any(|k| w.value.eq_ignore_ascii_case(k)))
        });
    if file_access {
        judged_anyway.push((
            ids::FILE_ACCESS,
            "reading or writing server files is not allowed",
            "airlock could not parse the statement to judge the tables it names",
        ));
    }

    if dialect == Dialect::Postgres {
        if let Some(m) = super::maintenance_forms::maintenance(segment) {
            let m =
                m.map_err(|why| Blocked::new(ids::UNPARSEABLE, format!("could not parse {why}")))?;
            return Ok(Parsed {
                statement: bare_maintenance(m.vacuum),
                maintenance: Some(m),
                violations: Vec::new(),
            });
        }
    }

    let mut toks: Vec<TokenWithSpan> = Vec::with_capacity(segment.len() + 4);
    let fetch = match dialect {
        Dialect::Postgres => super::fetch_forms::canonical_fetch(segment),
        Dialect::MySql => None,
    };
    if let Some(fetch) = fetch {
        // `FETCH ALL c`, `MOVE FORWARD 5 IN c`, ...: `FETCH NEXT FROM c`.
        toks = fetch;
    } else if is_kw(first, Keyword::TABLE) {
        // `TABLE t ...` is `SELECT * FROM t ...`.
        let mut replaced = false;
        for t in segment {
            if !replaced && is_kw(Some(&t.token), Keyword::TABLE) {
                replaced = true;
                for kw in [
                    ("SELECT", Keyword::SELECT),
                    ("*", Keyword::NoKeyword),
                    ("FROM", Keyword::FROM),
                ] {
                    let token = if kw.0 == "*" {
                        Token::Mul
                    } else {
                        Token::Word(Word {
                            value: kw.0.to_string(),
                            quote_style: None,
                            keyword: kw.1,
                        })
                    };
                    toks.push(TokenWithSpan {
                        token,
                        span: t.span,
                    });
                    toks.push(space(t));
                }
            } else {
                toks.push(t.clone());
            }
        }
    } else {
        toks.extend(segment.iter().cloned());
    }
    if dialect == Dialect::Postgres && is_kw(first, Keyword::COPY) {
        copy_booleans(&mut toks);
    }

    // Built-in rules broken above that a policy may waive, while the
    // statement is still judged: it must parse, and they go with its
    // facts (see `Parsed::violations`).
    match (parse_tokens(d, toks, limits), judged_anyway.first()) {
        (Ok(statement), _) => Ok(Parsed {
            statement,
            maintenance: None,
            violations: judged_anyway
                .iter()
                .map(|(rule, message, _)| (*rule, (*message).to_owned()))
                .collect(),
        }),
        (Err(_), Some((rule, message, why))) => Err(Blocked::new(rule, *message).unjudged(why)),
        (Err(e), None) => Err(e),
    }
}

/// One statement of `toks`, which must hold nothing after it.
fn parse_tokens(
    d: &dyn SqlDialect,
    toks: Vec<TokenWithSpan>,
    limits: &Limits,
) -> Result<Statement, Blocked> {
    let mut parser = Parser::new(d)
        .with_recursion_limit(limits.max_depth.max(8) * 2)
        .with_tokens_with_locations(toks);
    let statement = parser
        .parse_statement()
        .map_err(|e| Blocked::new(ids::UNPARSEABLE, format!("could not parse: {e}")))?;
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(Blocked::new(
            ids::UNPARSEABLE,
            format!(
                "could not parse: unexpected {} after the statement",
                rest.token
            ),
        ));
    }
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(d: Dialect, s: &str) -> Result<Vec<String>, &'static str> {
        parse(d, s, &Limits::default())
            .map(|v| v.into_iter().map(|p| p.statement.to_string()).collect())
            .map_err(|b| b.rule)
    }

    #[test]
    fn copy_boolean_options_in_any_spelling() {
        for (spelt, as_parsed) in [
            (
                "copy t from stdin with (freeze on)",
                "copy t from stdin with (freeze true)",
            ),
            (
                "COPY t FROM STDIN WITH (FORMAT csv, HEADER match, FREEZE 0)",
                "COPY t FROM STDIN WITH (FORMAT csv, HEADER true, FREEZE false)",
            ),
            (
                "copy t to stdout (header yes , freeze off)",
                "copy t to stdout (header true, freeze false)",
            ),
            (
                "copy t from stdin (freeze 1)",
                "copy t from stdin (freeze true)",
            ),
            (
                "copy t from stdin (freeze no)",
                "copy t from stdin (freeze false)",
            ),
        ] {
            assert_eq!(p(Dialect::Postgres, spelt), p(Dialect::Postgres, as_parsed));
            assert!(p(Dialect::Postgres, spelt).is_ok(), "{spelt}");
        }
        // Only a value standing alone in an option is respelled, and only
        // in the options: a query's `header no` (column and alias) stays.
        assert!(p(Dialect::Postgres, "copy t from stdin (freeze on on)").is_err());
        assert_eq!(
            p(
                Dialect::Postgres,
                "copy (select 1, header no) to stdout (header on)"
            ),
            p(
                Dialect::Postgres,
                "copy (select 1, header AS no) to stdout (header true)"
            )
        );
        assert!(p(Dialect::Postgres, "select 1 from t where (freeze on)").is_err());
    }

    #[test]
    fn string_constants_continued_across_lines_are_refused() {
        // Postgres joins the parts and reads the second with the first's
        // escapes: `'\''` is a quote and the end of the string, and what
        // follows runs.
        for sql in [
            "SELECT E''\n'\\''; SELECT ssn FROM customers --'",
            "SELECT E''\n'\\'' , replace(email, chr(64), chr(35)) FROM customers --'",
            "SELECT 'a'\n'b'",
            "SELECT 'a' -- c\n'b'",
            "SELECT E'x' /* c */ 'y'",
            "SELECT 'a' 'b'",
            "SELECT $$a$$\n'b'",
        ] {
            assert_eq!(p(Dialect::Postgres, sql), Err(ids::UNPARSEABLE), "{sql}");
        }
        // One constant, and constants apart.
        for sql in [
            "SELECT E'a\\'b'",
            "SELECT 'a', 'b'",
            "SELECT 'a' || 'b'",
            "SELECT x FROM t WHERE a LIKE 'a!%' ESCAPE '!'",
        ] {
            assert!(p(Dialect::Postgres, sql).is_ok(), "{sql}");
        }
        // MySQL joins adjacent constants with the same escapes throughout.
        assert!(p(Dialect::MySql, "SELECT 'a' 'b'").is_ok());
    }

    #[test]
    fn postgres_tokens_the_server_reads_otherwise_are_refused() {
        for sql in [
            "select $\u{20ac}$ --$\u{20ac}$, ssn from customers",
            "select $\u{20ac}$ --$\u{20ac}$; delete from payments returning *",
            "select $x\u{20ac}$ --$x\u{20ac}$, amount from payments",
            "select $\u{a0}$ --$\u{a0}$, ssn from customers",
            "select 2 #/*'*/ 3, ssn from customers --'",
            "select 1 -/*'*/ 1, ssn from customers --'",
            "select 1 <>/*'*/ 2; select * from payments --'",
            "select 2 #--'\n 3, ssn from customers --'",
            "select '{}'::jsonb ?--'\n chr(97), ssn from customers --'",
            "select 1 ||/*'*/ 2",
            "select $1$x$1$",
            "select X'\\'",
            "select B'0''1'",
            "select X'a''b'",
        ] {
            assert_eq!(p(Dialect::Postgres, sql), Err(ids::UNPARSEABLE), "{sql}");
        }
        for sql in [
            "select $1, $2::int, $10",
            "select $$a -- b /* c$$, $tag$x$tag$, $_t1$y$_t1$",
            "select 1 - -1, 2 - - 3, 4 -- comment\n",
            "select 1 /* c */ + 2, a->>'k', b #>> '{a}', c @> d, e <-> f",
            "select '--', '/*', \"a--b\", E'--'",
            "select B'0101', X'1F', x''",
            "select 1--1\n",
        ] {
            assert!(
                p(Dialect::Postgres, sql).is_ok(),
                "{sql}: {:?}",
                p(Dialect::Postgres, sql)
            );
        }
    }

    #[test]
    fn mysql_tokens_the_server_reads_otherwise_are_refused() {
        for sql in [
            r#"SELECT b"\" AS a, " , (SELECT group_concat(ssn) FROM customers) AS s FROM (SELECT 1 AS b) t #" FROM (SELECT 1 AS b) t"#,
            r#"SELECT B"x""#,
            "SELECT @@`version`, (SELECT group_concat(ssn) FROM customers) AS s #`",
            "SELECT @@`version`; DELETE FROM orders; SELECT 1 #`",
            "SELECT @@'v', 1 #'",
            "SELECT @@\"v\", 1 #\"",
            "SELECT @-- x\n1",
            "SELECT b'012'",
            "SELECT x'0g'",
            "SHOW TRIGGERS FROM shop WHERE 1 |/* ' */ 0; SELECT password FROM shop.users; -- '",
            "SHOW TRIGGERS FROM shop WHERE 1 ||/* ' */ 0; SELECT * FROM shop.payments; -- '",
            "SELECT 1 |/* ' */ 0, password FROM users -- '",
            "SELECT 1 /*! , b\"\\\" x\" */",
        ] {
            assert_eq!(p(Dialect::MySql, sql), Err(ids::UNPARSEABLE), "{sql}");
        }
        for sql in [
            "SELECT @@version, @@session.sql_mode, @@global.max_connections",
            "SELECT @a, @a_1, @$x",
            "SET @x = 1",
            "SELECT b'0101', x'1F', X'', N'x', _utf8mb4'y', \"dq\"",
            "GRANT SELECT ON app.* TO 'u'@'%'",
            "SELECT 1--1, 2 - -2, a || b, c | d",
            "SELECT 1 /* c */ + 2 # c\n, 3 -- c\n",
        ] {
            assert!(
                p(Dialect::MySql, sql).is_ok(),
                "{sql}: {:?}",
                p(Dialect::MySql, sql)
            );
        }
    }

    #[test]
    fn policy_parse_basics() {
        assert_eq!(
            p(Dialect::Postgres, "select 1; ;select 2"),
            Ok(vec!["SELECT 1".into(), "SELECT 2".into()])
        );
        assert_eq!(p(Dialect::Postgres, " -- x\n ; /* y */"), Ok(vec![]));
        assert_eq!(
            p(Dialect::Postgres, r#"select * from U&"\0070ayments""#),
            Ok(vec![r#"SELECT * FROM "payments""#.into()])
        );
        assert_eq!(
            p(
                Dialect::Postgres,
                r#"select * from U&"!0070ay" UESCAPE '!'"#
            ),
            Ok(vec![r#"SELECT * FROM "pay""#.into()])
        );
        assert_eq!(
            p(Dialect::Postgres, "TABLE t ORDER BY 1"),
            Ok(vec!["SELECT * FROM t ORDER BY 1".into()])
        );
        for fetch in [
            "FETCH ALL c",
            "fetch c",
            "FETCH FORWARD FROM c",
            "MOVE FORWARD 5 c",
            "move absolute -1 in c",
            "FETCH BACKWARD ALL /* x */ FROM c",
            "FETCH NEXT FROM c",
        ] {
            assert_eq!(
                p(Dialect::Postgres, fetch),
                Ok(vec!["FETCH NEXT FROM c".into()]),
                "{fetch}"
            );
        }
        assert_eq!(
            p(Dialect::Postgres, "MOVE \"Cur\""),
            Ok(vec!["FETCH NEXT FROM \"Cur\"".into()])
        );
        for other in ["FETCH (SELECT 1) FROM c", "MOVE c d", "FETCH", "\"move\" c"] {
            assert_eq!(
                p(Dialect::Postgres, other),
                Err(ids::UNPARSEABLE),
                "{other}"
            );
        }
        assert_eq!(
            p(Dialect::Postgres, "DO $$ begin end $$"),
            Err(ids::OPAQUE_CODE)
        );
        assert_eq!(
            p(Dialect::Postgres, "select 1 END delete from t"),
            Err(ids::UNPARSEABLE)
        );
        assert_eq!(
            p(Dialect::MySql, "select 1 /*M!100000 , sleep(1) */"),
            Ok(vec!["SELECT 1, sleep(1)".into()])
        );
        assert_eq!(
            p(Dialect::MySql, "select 1 /*!50000 , sleep(1) */"),
            Ok(vec!["SELECT 1, sleep(1)".into()])
        );
    }

    #[test]
    fn policy_parse_caps() {
        let deep = format!("select {}1{}", "(".repeat(200), ")".repeat(200));
        assert_eq!(p(Dialect::Postgres, &deep), Err(ids::TOO_COMPLEX));
        let long = format!("select 1{}", "+1".repeat(30_000));
        assert_eq!(p(Dialect::Postgres, &long), Err(ids::TOO_COMPLEX));
    }
}
