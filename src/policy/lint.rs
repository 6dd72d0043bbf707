//! Warnings `airlock check` prints about rules that load but cannot work
//! as written with a given config: approval rules without the admin
//! listener that approvals need, and policies or masks naming identities,
//! groups or targets the config does not define (a typo there makes a
//! rule silently apply to nobody).

use std::collections::BTreeSet;

use crate::config::Config;
use crate::masking::rules::MaskingRules;
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

/// The identities, groups and targets a config defines.
struct Known<'a> {
    identities: BTreeSet<&'a str>,
    groups: BTreeSet<&'a str>,
    targets: BTreeSet<&'a str>,
    /// JWT logins bring identities and groups of their own: names the
    /// config does not list may still log in.
    jwt: bool,
}

impl<'a> Known<'a> {
    fn of(config: &'a Config) -> Self {
        Known {
            identities: config.identities.keys().map(String::as_str).collect(),
            groups: config
                .identities
                .values()
                .flat_map(|i| i.groups.iter().map(String::as_str))
                .collect(),
            targets: config.targets.keys().map(String::as_str).collect(),
            jwt: config.jwt.is_some(),
        }
    }

    fn check(&self, rule: &str, names: &Names<'_>, out: &mut Vec<String>) {
        let unknown = |list: &[String], known: &BTreeSet<&str>| -> Vec<String> {
            list.iter()
                .filter(|n| *n != "*" && !known.contains(n.as_str()))
                .cloned()
                .collect()
        };
        let mut report = |kind: &str, missing: Vec<String>| {
            if !missing.is_empty() {
                out.push(format!(
                    "{rule} names {kind} {} that the config does not define (a typo?): the rule does not apply to it",
                    missing.join(", ")
                ));
            }
        };
        if !self.jwt {
            report("identity", unknown(names.identities, &self.identities));
            report("group", unknown(names.groups, &self.groups));
        }
        report("target", unknown(names.targets, &self.targets));
    }
}
