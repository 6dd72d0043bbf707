//! The MySQL/MariaDB proxy (in progress).

pub mod listener;
