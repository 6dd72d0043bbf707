//! airlock: a database wire-protocol firewall for AI agents.
//!
//! * [`admin`]: the admin HTTP listener: API, metrics, web console.
//! * [`approvals`]: statements held until a human approves them.
//! * [`big_stack`]: long SQL texts parsed on a big stack, off the runtime worker.
//! * [`config`]: the TOML configuration.
//! * [`fasthash`]: fast seeded hashing for hot-path caches and maps.
//! * [`metrics`]: counters for `/metrics`.
//! * [`pg`]: the Postgres proxy sessions.
//! * [`policy`]: statement judgement, shared by all protocols.
//! * [`proxy`]: state shared by the sessions of a running airlock.
//! * [`server`]: starting listeners and handling signals.
//! * [`testkit`]: throwaway database servers for tests, benches and the demo.
//! * [`timer_thread`]: every timer (timeouts, TTLs, polls), off the runtime, which has no time driver.
//! * [`wake_gate`]: futures polled only once they were woken (session control branches, relay pumps).

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod big_stack;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod fasthash;
pub mod foreign_keys;
pub mod hex;
pub mod identity;
pub mod listener;
pub mod log_every;
pub mod log_fields;
pub mod masking;
pub mod metrics;
pub mod mysql;
pub mod net;
pub mod pending_logins;
pub mod pg;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod secret;
pub mod server;
pub mod testkit;
pub mod timer_thread;
pub mod tls;
pub mod wake_gate;
