//! Postgres `FETCH` and `MOVE` in every form the server accepts, brought
//! to the one form sqlparser reads.
//!
//! sqlparser 0.63 reads `FETCH direction {FROM | IN} name` only, with a
//! direction that it requires and that needs a count after FORWARD and
//! BACKWARD, and it has no `MOVE`. Postgres also takes `FETCH c`, `FETCH
//! ALL c`, `FETCH FORWARD FROM c`, and `MOVE` in all the same forms (which
//! drivers send: asyncpg's `Cursor.forward(n)` is `MOVE FORWARD n name`).
//! Refusing them as unparseable broke those clients.
//!
//! What a FETCH or MOVE does to its cursor does not matter to policy or
//! masking, only which cursor it names: a statement that is `FETCH` or
//! `MOVE`, then only direction words, counts and FROM/IN, then one name,
//! is judged as `FETCH NEXT FROM name`. Only the text that is judged
//! changes; the client's bytes go to the server as they came. The server
//! takes nothing but integer counts in those places, so nothing that runs
//! code can hide there; any other shape is left to sqlparser (and refused
//! if it does not parse).

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace, Word};

/// The canonical tokens of a Postgres FETCH or MOVE statement, or `None`
/// when `segment` is not one in a form this knows.
pub(super) fn canonical_fetch(segment: &[TokenWithSpan]) -> Option<Vec<TokenWithSpan>> {
    let mut significant = segment
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)));
    let first = significant.next()?;
    let Token::Word(w) = &first.token else {
        return None;
    };
    let is_fetch = w.keyword == Keyword::FETCH;
    if w.quote_style.is_some() || !(is_fetch || w.value.eq_ignore_ascii_case("move")) {
        return None;
    }
    let rest: Vec<&TokenWithSpan> = significant.collect();
    let (name, between) = rest.split_last()?;
    if !matches!(&name.token, Token::Word(_)) || !between.iter().all(|t| direction_part(&t.token)) {
        return None;
    }
    let word = |value: &str, keyword| TokenWithSpan {
        token: Token::Word(Word {
            value: value.into(),
            quote_style: None,
            keyword,
        }),
        span: first.span,
    };
    let space = TokenWithSpan {
        token: Token::Whitespace(Whitespace::Space),
        span: first.span,
    };
    Some(vec![
        word("FETCH", Keyword::FETCH),
        space.clone(),
        word("NEXT", Keyword::NEXT),
        space.clone(),
        word("FROM", Keyword::FROM),
        space,
        (*name).clone(),
    ])
}

/// A token that may stand between FETCH/MOVE and the cursor name.
fn direction_part(token: &Token) -> bool {
    match token {
        Token::Number(..) | Token::Minus | Token::Plus => true,
        Token::Word(w) => {
            w.quote_style.is_none()
                && matches!(
                    w.keyword,
                    Keyword::NEXT
                        | Keyword::PRIOR
                        | Keyword::FIRST
                        | Keyword::LAST
                        | Keyword::ABSOLUTE
                        | Keyword::RELATIVE
                        | Keyword::ALL
                        | Keyword::FORWARD
                        | Keyword::BACKWARD
                        | Keyword::FROM
                        | Keyword::IN
                )
        }
        _ => false,
    }
}
