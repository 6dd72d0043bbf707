//! airlock's integration tests, as one test binary (one link instead of
//! one per file, which keeps the debug build small): each module runs the
//! proxy in-process against throwaway PostgreSQL/MariaDB servers that the
//! test kit starts on loopback, and drives it with real clients.
//!
//! Run one area with a filter, e.g. `./scripts/test pg_guardrails::`.

// #[tokio::test] runtimes have tokio's timer; airlock's own runtime does
// not (src/timer_thread.rs), which is what clippy.toml guards.
#![allow(clippy::disallowed_methods)]

mod common;

mod admin_api;
mod approvals;
mod audit_retention;
mod audit_store;
mod cli;
mod config_examples;
mod foreign_key_cascades;
mod hot_reload;
mod janitor_restart;
mod login_limits;
mod masking_unit;
mod mysql_audit;
mod mysql_catalog_changes;
mod mysql_catalog_red_team;
mod mysql_clients;
mod mysql_credentials;
mod mysql_drivers;
mod mysql_guardrails;
mod mysql_masking;
mod mysql_proxy;
mod pg_audit;
mod pg_auth;
mod pg_catalog_changes;
mod pg_client;
mod pg_credentials;
mod pg_ddl_race;
mod pg_ddl_rewrites;
mod pg_drivers;
mod pg_guardrails;
mod pg_jwt;
mod pg_lifecycle;
mod pg_masking;
mod pg_own_ddl;
mod pg_passthrough;
mod pg_red_team;
mod pg_red_team_errors;
mod pg_red_team_lineage;
mod pg_red_team_names;
mod pg_tools;
mod pg_transcripts;
mod policy_corpus;
mod red_team_guardrails;
mod serve_binary;
mod session_limits;
mod testkit_smoke;
mod web_console;
