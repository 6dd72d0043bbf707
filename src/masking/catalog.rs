//! The catalog lineage analysis asks for `*` expansion and view bodies.
//!
//! Sessions implement [`Catalog`] from the database (information_schema /
//! pg_get_viewdef); tests use [`MemoryCatalog`].

use std::collections::HashMap;

/// Column lists and view definitions, by lower-case schema and table name
/// (MySQL: database and table).
pub trait Catalog: Sync {
    /// The relation's columns in order, or `None` when it is unknown.
    fn columns(&self, schema: &str, table: &str) -> Option<Vec<String>>;
    /// The view's defining `SELECT`, when the relation is a view.
    fn view_sql(&self, schema: &str, table: &str) -> Option<String>;
    /// Changes whenever the catalog's answers may change (part of the plan
    /// cache key).
    fn version(&self) -> u64 {
        0
    }
}

/// A catalog that knows nothing: every relation is unknown.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCatalog;

impl Catalog for NoCatalog {
    fn columns(&self, _schema: &str, _table: &str) -> Option<Vec<String>> {
        None
    }

    fn view_sql(&self, _schema: &str, _table: &str) -> Option<String> {
        None
    }
}

/// An in-memory catalog.
#[derive(Debug, Default, Clone)]
pub struct MemoryCatalog {
    tables: HashMap<(String, String), (Vec<String>, Option<String>)>,
    pub version: u64,
}

impl MemoryCatalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a table.
    pub fn table(mut self, schema: &str, name: &str, columns: &[&str]) -> Self {
        self.tables.insert(
            (schema.to_lowercase(), name.to_lowercase()),
            (columns.iter().map(|c| c.to_lowercase()).collect(), None),
        );
        self
    }

    /// Adds a view with its columns and defining query.
    pub fn view(mut self, schema: &str, name: &str, columns: &[&str], sql: &str) -> Self {
        self.tables.insert(
            (schema.to_lowercase(), name.to_lowercase()),
            (
                columns.iter().map(|c| c.to_lowercase()).collect(),
                Some(sql.to_string()),
            ),
        );
        self
    }
}

impl Catalog for MemoryCatalog {
    fn columns(&self, schema: &str, table: &str) -> Option<Vec<String>> {
        self.tables
            .get(&(schema.to_string(), table.to_string()))
            .map(|t| t.0.clone())
    }

    fn view_sql(&self, schema: &str, table: &str) -> Option<String> {
        self.tables
            .get(&(schema.to_string(), table.to_string()))
            .and_then(|t| t.1.clone())
    }

    fn version(&self) -> u64 {
        self.version
    }
}
