//! Upstream credentials (in progress).
