//! Lineage and planner tests.
