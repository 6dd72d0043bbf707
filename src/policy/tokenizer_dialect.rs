//! The dialects sqlparser's tokenizer runs with.
//!
//! Postgres: sqlparser's own. MySQL: sqlparser's, except that `/*! ... */`
//! stays a comment token. sqlparser would re-tokenize its content in
//! place, giving the tokens positions that do not match the text, and
//! [`super::lex_agreement`] needs every token's true position. The
//! content is unwrapped by `parse::expand_tokens` instead, and checked on
//! its own.
//!
//! [`MySqlTokens`] answers every question the tokenizer asks of a dialect
//! as [`MySqlDialect`] does (a unit test compares the two on a corpus), and
//! calls itself [`MySqlDialect`] for the tokenizer's `dialect_of!` checks.

use std::any::TypeId;

use sqlparser::dialect::{Dialect as SqlDialect, MySqlDialect, PostgreSqlDialect};

use super::Dialect;

/// The tokenizer's dialect for `d`.
pub(crate) fn tokenizer_dialect(d: Dialect) -> &'static dyn SqlDialect {
    static PG: PostgreSqlDialect = PostgreSqlDialect {};
    static MY: MySqlTokens = MySqlTokens;
    match d {
        Dialect::Postgres => &PG,
        Dialect::MySql => &MY,
    }
}

/// [`MySqlDialect`] without executable-comment expansion.
#[derive(Debug)]
pub(crate) struct MySqlTokens;

const MY: MySqlDialect = MySqlDialect {};

impl SqlDialect for MySqlTokens {
    fn dialect(&self) -> TypeId {
        TypeId::of::<MySqlDialect>()
    }
    fn supports_multiline_comment_hints(&self) -> bool {
        false
    }
    fn is_identifier_start(&self, ch: char) -> bool {
        MY.is_identifier_start(ch)
    }
    fn is_identifier_part(&self, ch: char) -> bool {
        MY.is_identifier_part(ch)
    }
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        MY.is_delimited_identifier_start(ch)
    }
    fn is_custom_operator_part(&self, ch: char) -> bool {
        MY.is_custom_operator_part(ch)
    }
    fn ignores_wildcard_escapes(&self) -> bool {
        MY.ignores_wildcard_escapes()
    }
    fn requires_single_line_comment_whitespace(&self) -> bool {
        MY.requires_single_line_comment_whitespace()
    }
    fn supports_dollar_as_money_prefix(&self) -> bool {
        MY.supports_dollar_as_money_prefix()
    }
    fn supports_dollar_placeholder(&self) -> bool {
        MY.supports_dollar_placeholder()
    }
    fn supports_geometric_types(&self) -> bool {
        MY.supports_geometric_types()
    }
    fn supports_nested_comments(&self) -> bool {
        MY.supports_nested_comments()
    }
    fn supports_numeric_literal_underscores(&self) -> bool {
        MY.supports_numeric_literal_underscores()
    }
    fn supports_numeric_prefix(&self) -> bool {
        MY.supports_numeric_prefix()
    }
    fn supports_pipe_operator(&self) -> bool {
        MY.supports_pipe_operator()
    }
    fn supports_quote_delimited_string(&self) -> bool {
        MY.supports_quote_delimited_string()
    }
    fn supports_string_escape_constant(&self) -> bool {
        MY.supports_string_escape_constant()
    }
    fn supports_string_literal_backslash_escape(&self) -> bool {
        MY.supports_string_literal_backslash_escape()
    }
    fn supports_triple_quoted_string(&self) -> bool {
        MY.supports_triple_quoted_string()
    }
    fn supports_unicode_string_literal(&self) -> bool {
        MY.supports_unicode_string_literal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::tokenizer::Tokenizer;

    /// Every MySQL text of the policy corpus without an executable comment
    /// tokenizes the same through both dialects.
    #[test]
    fn mysql_tokens_are_mysql_dialect_tokens() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");
        let mut texts = vec![
            "SELECT `a``b`, \"c\\\"d\", 'e\\'f', x'1F', 0x1F, b'01', N'n', @a, @@version # c\n"
                .to_owned(),
            "SELECT 1 -- c\n, 2 --x, $a, a$b, 1e5, .5, 1_000, {fn now()}, a->>'$.b' /* c */"
                .to_owned(),
        ];
        for entry in walk(std::path::Path::new(dir)) {
            if let Ok(text) = std::fs::read_to_string(&entry) {
                texts.extend(text.lines().map(str::to_owned));
            }
        }
        let mut compared = 0;
        for text in texts
            .iter()
            .filter(|t| !t.contains("/*!") && !t.contains("/*M!"))
        {
            let a = Tokenizer::new(&MY, text).tokenize_with_location();
            let b = Tokenizer::new(&MySqlTokens, text).tokenize_with_location();
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
                (a, b) => panic!("{text}: {a:?} vs {b:?}"),
            }
            compared += 1;
        }
        assert!(compared > 500, "only {compared} texts");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
