//! Postgres startup `options` parsing (`-c name=value`, `--name=value`,
//! backslash-escaped spaces), as the backend's `pg_split_opts` and
//! `process_postgres_switches` read them.

/// One `name=value` setting from an options string. Names are lower-case
/// with `-` turned into `_`, as Postgres does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupOption {
    pub name: String,
    pub value: String,
}

/// Splits an options string into words: whitespace separates, a backslash
/// escapes the next character.
pub fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        // C `isspace`, as Postgres's `pg_split_opts` splits: Rust's ASCII
        // whitespace lacks the vertical tab.
        if c.is_ascii_whitespace() || c == '\x0b' {
            if in_word {
                out.push(std::mem::take(&mut cur));
                in_word = false;
            }
            continue;
        }
        in_word = true;
        if c == '\\' {
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else {
            cur.push(c);
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// Parses an options string. Switches other than `-c`/`--` are returned
/// with the switch as name (e.g. `-d` → name `-d`), so callers can refuse
/// them too.
pub fn parse_options(s: &str) -> Vec<StartupOption> {
    let words = split_words(s);
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let setting = if let Some(rest) = w.strip_prefix("--") {
            Some(rest.to_string())
        } else if w == "-c" {
            i += 1;
            Some(words.get(i).cloned().unwrap_or_default())
        } else {
            w.strip_prefix("-c").map(str::to_string)
        };
        match setting {
            Some(s) => {
                let (n, v) = s.split_once('=').unwrap_or((s.as_str(), ""));
                out.push(StartupOption {
                    name: n.trim().to_lowercase().replace('-', "_"),
                    value: v.to_string(),
                });
            }
            None => out.push(StartupOption {
                name: w.clone(),
                value: String::new(),
            }),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_startup_options() {
        let o = parse_options(r"-c role=admin --search-path=a\ b  -cstatement_timeout=0 -d 5");
        let names: Vec<&str> = o.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            ["role", "search_path", "statement_timeout", "-d", "5"]
        );
        assert_eq!(o[1].value, "a b");
        assert_eq!(split_words(r"a\\b  c"), ["a\\b", "c"]);
    }
}
