//! Warnings `airlock check` prints about rules that load but cannot work
//! as written with a given config: approval rules without the admin
//! listener that approvals need, and policies or masks naming identities,
//! groups or targets the config does not define (a typo there makes a
//! rule silently apply to nobody); and, with or without a config,
//! policies that look read-only and are not ([`rule_warnings`]).

use std::collections::BTreeSet;

use crate::config::Config;
use crate::masking::rules::MaskingRules;
use crate::policy::facts::StatementClass;
use crate::policy::rules::RuleSet;

/// What a rule's `applies_to` (or a mask's `unmasked`) names.
struct Names<'a> {
    identities: &'a [String],
    groups: &'a [String],
    targets: &'a [String],
}

/// Every warning for `rules` and `masks` under `config`, one line each.
pub fn warnings(config: &Config, rules: &RuleSet, masks: &MaskingRules) -> Vec<String> {
    let mut out = Vec::new();
    if config.admin.is_none() {
        let held: Vec<&str> = rules
            .policies
            .iter()
            .filter(|p| !p.require_approval.is_empty())
            .map(|p| p.id.as_str())
            .collect();
        if !held.is_empty() {
            out.push(format!(
                "policy {} has require_approval rules, but there is no [admin] listener: their statements are refused, not held for a human (add [admin] listen = \"127.0.0.1:9187\")",
                held.join(", ")
            ));
        }
    }
    out.extend(rule_warnings(rules));
    let known = Known::of(config);
    for p in &rules.policies {
        let names = Names {
            identities: &p.identities,
            groups: &p.groups,
            targets: &p.targets,
        };
        known.check(&format!("policy {}", p.id), &names, &mut out);
    }
    for m in &masks.rules {
        for (what, who) in [("applies_to", &m.applies_to), ("unmasked", &m.unmasked)] {
            let names = Names {
                identities: &who.identities,
                groups: &who.groups,
                targets: &who.targets,
            };
            known.check(&format!("mask {} ({what})", m.id), &names, &mut out);
        }
    }
    out
}

/// Warnings about the rules alone: a policy that allows no statement that
/// writes (`write`, `ddl`, `dcl`, `other`) but is not `read_only`. A
/// `SELECT` can still write there, through a function that does
/// (`nextval`, a user function that modifies data): only `read_only`
/// makes the upstream session read-only and refuses writing functions
/// (red-team note: operators took such a policy for a read-only one).
pub fn rule_warnings(rules: &RuleSet) -> Vec<String> {
    let mut out = limit_waivers(rules);
    out.extend(read_only_warnings(rules));
    out
}

/// Policies that waive a built-in rule for statements airlock cannot
/// judge at all (`too-complex`, `too-large`): the waiver lets nothing
/// through (see [`super::parse::Blocked::unjudged`]); raising the limit
/// in `[settings]` does.
fn limit_waivers(rules: &RuleSet) -> Vec<String> {
    use super::builtin::ids::{TOO_COMPLEX, TOO_LARGE};
    rules
        .policies
        .iter()
        .flat_map(|p| {
            [TOO_COMPLEX, TOO_LARGE]
                .into_iter()
                .filter(|b| p.waives(b))
                .map(|b| {
                    format!(
                        "policy {} waives {b}, which lets nothing through: airlock cannot judge such statements; raise max_tokens, max_depth, max_statements or max_statement_bytes in [settings] instead",
                        p.id
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn read_only_warnings(rules: &RuleSet) -> Vec<String> {
    rules
        .policies
        .iter()
        .filter(|p| {
            !p.read_only
                && !p.allow_statements.iter().any(|c| {
                    matches!(
                        c,
                        StatementClass::Write
                            | StatementClass::Ddl
                            | StatementClass::Dcl
                            | StatementClass::Other
                    )
                })
        })
        .map(|p| {
            format!(
                "policy {} allows no statement that writes, but is not read_only: a SELECT can still write through functions (nextval, functions that modify data); add read_only = true to make its sessions read-only",
                p.id
            )
        })
        .collect()
}

/// The identities, groups and targets a config defines.
struct Known<'a> {
    identities: BTreeSet<&'a str>,
    groups: BTreeSet<&'a str>,
    targets: BTreeSet<&'a str>,
    /// JWT logins bring identities and groups of their own: names the
    /// config does not list may still log in.
    jwt: bool,
    /// A passthrough target lets any database user in, as an identity of
    /// its name: identities the config does not list may still log in.
    passthrough: bool,
}

impl<'a> Known<'a> {
    fn of(config: &'a Config) -> Self {
        let passthrough = config
            .targets
            .values()
            .filter(|t| t.credentials == crate::config::CredentialMode::Passthrough)
            .map(|t| &t.passthrough);
        // Groups given to relayed database users count as defined
        // (operator finding: a policy for a passthrough user's group was
        // called a typo at every start and reload).
        let relayed_groups = passthrough.clone().flat_map(|p| {
            p.default_groups
                .iter()
                .chain(p.users.values().flat_map(|u| u.groups.iter().flatten()))
        });
        Known {
            identities: config
                .identities
                .keys()
                .chain(passthrough.clone().flat_map(|p| p.users.keys()))
                .map(String::as_str)
                .collect(),
            groups: config
                .identities
                .values()
                .flat_map(|i| i.groups.iter())
                .chain(relayed_groups)
                .map(String::as_str)
                .collect(),
            targets: config.targets.keys().map(String::as_str).collect(),
            jwt: config.jwt.is_some(),
            passthrough: passthrough.count() > 0,
        }
    }

    fn check(&self, rule: &str, names: &Names<'_>, out: &mut Vec<String>) {
        let unknown = |list: &[String], known: &BTreeSet<&str>| -> Vec<String> {
            list.iter()
                .filter(|n| *n != "*" && !known.contains(n.as_str()))
                .cloned()
                .collect()
        };
        let mut report = |kind: &str, missing: Vec<String>, or: &str| {
            if !missing.is_empty() {
                out.push(format!(
                    "{rule} names {kind} {} that the config does not define (a typo?{or}): the rule does not apply to it",
                    missing.join(", ")
                ));
            }
        };
        if !self.jwt {
            // A passthrough target lets in database users of any name.
            let or = if self.passthrough {
                " or a database user of a passthrough target: list it under passthrough.users to say so"
            } else {
                ""
            };
            report("identity", unknown(names.identities, &self.identities), or);
            report("group", unknown(names.groups, &self.groups), "");
        }
        report("target", unknown(names.targets, &self.targets), "");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::rules::parse_rules;

    #[test]
    fn policies_that_look_read_only_and_are_not() {
        let rules = parse_rules(&[(
            Path::new("t.toml"),
            r#"
[[policy]]
id = "looks-read-only"
applies_to = { identities = ["a"] }
allow_statements = ["read", "session"]

[[policy]]
id = "read-only"
applies_to = { identities = ["b"] }
read_only = true

[[policy]]
id = "writer"
applies_to = { identities = ["c"] }
allow_statements = ["read", "write"]
"#,
        )])
        .expect("rules");
        let w = rule_warnings(&rules);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("policy looks-read-only "), "{w:?}");
    }

    #[test]
    fn waivers_of_the_limits_are_said_to_do_nothing() {
        let rules = parse_rules(&[(
            Path::new("t.toml"),
            r#"
[[policy]]
id = "waiver"
applies_to = { identities = ["a"] }
read_only = true
allow_builtin = ["builtin.too-complex", "builtin.opaque-code"]
"#,
        )])
        .expect("rules");
        let w = rule_warnings(&rules);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("waives builtin.too-complex, which lets nothing through"),
            "{w:?}"
        );
    }
}
