//! Foreign keys that carry a write into other tables.
//!
//! `DELETE FROM customers` also deletes the orders whose key has `ON DELETE
//! CASCADE`, and nulls those with `ON DELETE SET NULL`; `TRUNCATE
//! customers CASCADE` empties every table that references it. A rule on
//! `orders` (`deny_tables`, `allow_tables`, an approval for writes) must
//! hold such a statement as it holds `DELETE FROM orders` (red-team
//! finding: `DELETE FROM customers WHERE id = 951` deleted an order
//! without the approval that `UPDATE orders` needs).
//!
//! Other links carry writes on the same way: a write to an updatable view
//! writes its base tables, and a write to a partitioned or inheritance
//! parent writes its children (and an UPDATE that moves a row to another
//! partition deletes it from the first), whose own keys carry it further.
//!
//! The text of a statement does not say where its writes go on to; the
//! database's catalog does. [`crate::foreign_keys`] loads a target's links
//! ([`crate::pg::foreign_keys`], [`crate::mysql::foreign_keys`]) into a
//! [`ForeignKeys`] shared by its sessions, which put it in
//! [`super::SessionContext::foreign_keys`]; the engine adds the tables
//! reached to the statement's writes ([`ForeignKeys::add_cascaded`])
//! before judging it. A `CREATE VIEW` over a table counts as writing what
//! a write to the table would reach: the view is a way to write it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use super::builtin::ids::{LINKS_UNREADABLE, OPAQUE_VIEW};
use super::facts::{Facts, Relation};

/// What a foreign key does to the referencing rows when the referenced
/// row is deleted or its key updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// NO ACTION or RESTRICT: the write fails instead.
    Refuse,
    /// The referencing rows are deleted (ON DELETE) or their key updated
    /// (ON UPDATE).
    Cascade,
    /// SET NULL or SET DEFAULT: the referencing rows are updated.
    Set,
}

impl Action {
    /// Postgres `pg_constraint.confdeltype` / `confupdtype`.
    pub fn from_pg(code: &str) -> Action {
        match code {
            "c" => Action::Cascade,
            "n" | "d" => Action::Set,
            _ => Action::Refuse,
        }
    }

    /// MySQL `REFERENTIAL_CONSTRAINTS.DELETE_RULE` / `UPDATE_RULE`.
    pub fn from_mysql(rule: &str) -> Action {
        match rule.to_ascii_uppercase().as_str() {
            "CASCADE" => Action::Cascade,
            "SET NULL" | "SET DEFAULT" => Action::Set,
            _ => Action::Refuse,
        }
    }
}

/// How a write to one relation reaches another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A foreign key of `to` referencing `from`.
    Key {
        on_delete: Action,
        on_update: Action,
    },
    /// `from` is a view over `to`.
    View,
    /// `to` is a partition of `from`, a partitioned table.
    Partition,
    /// `to` is an inheritance child of `from`.
    Child,
    /// `to` is the partitioned or inheritance parent of `from` (made by
    /// [`ForeignKeys::new`] for each of the two above): a write to a
    /// partition changes its parent's rows (re-audit finding: a rule on
    /// a partitioned table did not cover `DELETE FROM` its partition).
    Parent,
    /// A rule on `from` (other than a view's own) writes `to`: any
    /// change to `from` may insert, update or delete there.
    Rule,
}

/// One link, as either catalog query reads it: from `(schema, name)` to
/// `(schema, name)`.
#[derive(Debug, Clone)]
pub struct LinkRow {
    pub from: (String, String),
    pub to: (String, String),
    pub link: Link,
}

/// A link, seen from the relation it starts at.
#[derive(Debug, Clone)]
struct Reached {
    schema: String,
    table: String,
    link: Link,
}

/// How a table's rows are changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Change {
    Insert,
    Delete,
    Update,
    /// `TRUNCATE ... CASCADE`: every referencing table, whatever its key
    /// says, and every child.
    Truncate,
    /// A plain `TRUNCATE`: its children (a referenced table is not
    /// truncated without CASCADE).
    Empty,
    /// DDL on the table, which partitions and inheritance children take
    /// up too.
    Alter,
    /// Rows of a partition or child changed: its ancestors' rows, with
    /// nothing further (not their other children).
    Up,
}

/// Which kinds of change a statement makes to the tables it writes (see
/// [`Facts::row_changes`]), or whether it makes a view over those it
/// reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowChanges {
    /// INSERT (every form), COPY FROM, a MERGE that may insert.
    pub inserts: bool,
    /// DELETE, REPLACE, a MERGE that may delete.
    pub deletes: bool,
    /// UPDATE, an upsert's update, a MERGE that may update.
    pub updates: bool,
    /// Postgres `TRUNCATE ... CASCADE`.
    pub truncates_cascade: bool,
    /// A plain TRUNCATE.
    pub truncates: bool,
    /// ALTER TABLE and the like: the DDL reaches the tables' children.
    pub alters: bool,
    /// A rename of a table or view, or a new foreign key: what the rules
    /// name no longer matches the links airlock read, so the statement
    /// counts as every write the tables it names could reach (red-team
    /// finding: `ALTER TABLE customers RENAME TO c2; DELETE FROM c2`
    /// cascaded into orders unheld).
    pub relinks: bool,
    /// `CREATE [OR REPLACE] VIEW`, `ALTER VIEW ... AS`: writes through the
    /// view will reach whatever writes to the tables it reads reach.
    pub view_over: bool,
}

impl RowChanges {
    pub fn any(&self) -> bool {
        self.inserts
            || self.deletes
            || self.updates
            || self.truncates_cascade
            || self.truncates
            || self.alters
            || self.relinks
            || self.view_over
    }
}

/// A target's links, by the relation they start at (`schema.table`, lower
/// case).
#[derive(Debug)]
pub struct ForeignKeys {
    /// Unique per map loaded: decisions are cached and memoized under it.
    id: u64,
    /// The target's catalog generation read before the map was loaded.
    at: u64,
    /// When it was made.
    made: std::time::Instant,
    by_referenced: HashMap<String, Vec<Reached>>,
    /// Views whose base tables could not be read (a MySQL definition that
    /// the upstream user may not see, or that does not parse): a write
    /// through one is refused.
    opaque_views: HashSet<String>,
    /// The links could not be read again after the catalog changed: every
    /// write is refused until they are ([`Self::unreadable_copy`]).
    unreadable: bool,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl ForeignKeys {
    /// A map of `rows`, loaded at catalog generation `at`. Keys whose
    /// actions both refuse are kept: `TRUNCATE ... CASCADE` follows them.
    /// `opaque_views`: (schema, name) of views whose base tables are not
    /// known.
    pub fn new(
        at: u64,
        rows: impl IntoIterator<Item = LinkRow>,
        opaque_views: impl IntoIterator<Item = (String, String)>,
    ) -> ForeignKeys {
        let mut by_referenced: HashMap<String, Vec<Reached>> = HashMap::new();
        for row in rows {
            if matches!(row.link, Link::Partition | Link::Child) {
                by_referenced
                    .entry(key(&row.to.0, &row.to.1))
                    .or_default()
                    .push(Reached {
                        schema: row.from.0.to_lowercase(),
                        table: row.from.1.to_lowercase(),
                        link: Link::Parent,
                    });
            }
            by_referenced
                .entry(key(&row.from.0, &row.from.1))
                .or_default()
                .push(Reached {
                    schema: row.to.0.to_lowercase(),
                    table: row.to.1.to_lowercase(),
                    link: row.link,
                });
        }
        ForeignKeys {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            at,
            made: std::time::Instant::now(),
            by_referenced,
            opaque_views: opaque_views.into_iter().map(|(s, n)| key(&s, &n)).collect(),
            unreadable: false,
        }
    }

    /// The map of a target whose links have not been read yet: it refuses
    /// every write, and is stale at any catalog generation.
    pub fn unloaded() -> ForeignKeys {
        ForeignKeys {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            at: u64::MAX,
            made: std::time::Instant::now(),
            by_referenced: HashMap::new(),
            opaque_views: HashSet::new(),
            unreadable: true,
        }
    }

    /// An empty map that refuses every write, with an id of its own: for
    /// while the links could not be read again after the catalog changed
    /// (red-team finding: an agent that used up its upstream role's
    /// connections made the reload fail, and the old links let a write
    /// through a renamed table go unheld).
    pub fn unreadable_copy(&self) -> ForeignKeys {
        ForeignKeys {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            at: self.at,
            made: self.made,
            by_referenced: HashMap::new(),
            opaque_views: HashSet::new(),
            unreadable: true,
        }
    }

    /// Whether this map stands for links that could not be read.
    pub fn is_unreadable(&self) -> bool {
        self.unreadable
    }

    /// Identifies this map among every map loaded (never 0).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The catalog generation it was loaded at.
    pub fn loaded_at(&self) -> u64 {
        self.at
    }

    /// How long ago it was made.
    pub fn age(&self) -> std::time::Duration {
        self.made.elapsed()
    }

    /// When it was made (a copy keeps the original's).
    pub fn made(&self) -> std::time::Instant {
        self.made
    }

    /// Links in the map.
    pub fn len(&self) -> usize {
        self.by_referenced.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_referenced.is_empty() && self.opaque_views.is_empty() && !self.unreadable
    }

    /// The tables that the changes `facts` makes to the tables it writes
    /// carry on to, through any number of links, added to its writes; a
    /// write through a view whose tables are not known is a violation.
    pub fn add_cascaded(&self, facts: &mut Facts) {
        if self.is_empty() || (!facts.row_changes.any() && facts.renamed_schemas.is_empty()) {
            return;
        }
        let changes = facts.row_changes;
        if self.unreadable {
            facts.violations.push((
                LINKS_UNREADABLE,
                "airlock could not read the target's foreign keys (see its log), and cannot tell which tables this write reaches; run it again in about 10 s".to_owned(),
            ));
            return;
        }
        let mut reached = self.reached(&facts.writes, changes);
        if !facts.renamed_schemas.is_empty() {
            // Every relation of a renamed schema is renamed (re-audit
            // finding: `ALTER SCHEMA s RENAME TO x; DELETE FROM x.t`).
            let moved: BTreeSet<Relation> = self
                .by_referenced
                .keys()
                .filter_map(|k| k.split_once('.'))
                .filter(|(s, _)| {
                    facts
                        .renamed_schemas
                        .iter()
                        .any(|r| r.eq_ignore_ascii_case(s))
                })
                .map(|(s, t)| Relation {
                    schemas: vec![s.to_owned()],
                    name: t.to_owned(),
                })
                .collect();
            let relinks = RowChanges {
                relinks: true,
                ..RowChanges::default()
            };
            reached.extend(self.reached(&moved, relinks));
        }
        if changes.view_over {
            // What a write through the view may do to the tables it reads.
            let through = RowChanges {
                inserts: true,
                deletes: true,
                updates: true,
                ..RowChanges::default()
            };
            reached.extend(self.reached(&facts.reads, through));
        }
        reached.retain(|r| !facts.writes.contains(r));
        facts.reached.extend(reached.iter().cloned());
        facts.writes.extend(reached);
        // Checked on what the statement reaches too: a view over a view
        // whose tables are not known (review finding: only the tables
        // named were checked).
        if let Some(view) = facts
            .writes
            .iter()
            .flat_map(|r| r.candidates())
            .find(|c| self.opaque_views.contains(&c.to_lowercase()))
        {
            facts.violations.push((
                OPAQUE_VIEW,
                format!("{view} is a view whose tables airlock cannot see (its definition is hidden from airlock's upstream user or does not parse), so it cannot tell which tables a write through it reaches"),
            ));
        }
    }

    fn reached(&self, writes: &BTreeSet<Relation>, changes: RowChanges) -> Vec<Relation> {
        let relink = changes.relinks;
        let starts: Vec<Change> = [
            (changes.inserts || relink, Change::Insert),
            (changes.deletes || relink, Change::Delete),
            (changes.updates || relink, Change::Update),
            (changes.truncates_cascade || relink, Change::Truncate),
            (changes.truncates, Change::Empty),
            (changes.alters, Change::Alter),
        ]
        .into_iter()
        .filter_map(|(on, c)| on.then_some(c))
        .collect();
        let mut todo: Vec<(String, Change)> = Vec::new();
        for r in writes {
            for c in r.candidates() {
                let c = c.to_lowercase();
                todo.extend(starts.iter().map(|&change| (c.clone(), change)));
            }
        }
        let mut seen: HashSet<(String, Change)> = todo.iter().cloned().collect();
        let mut out = Vec::new();
        while let Some((table, change)) = todo.pop() {
            let Some(children) = self.by_referenced.get(&table) else {
                continue;
            };
            for child in children {
                let next: &[Change] = match (child.link, change) {
                    (Link::Parent, Change::Alter) => &[],
                    (Link::Parent, _) => &[Change::Up],
                    (_, Change::Up) => &[],
                    (Link::Key { .. }, Change::Truncate) => &[Change::Truncate],
                    (Link::Key { on_delete, .. }, Change::Delete) => {
                        follow(on_delete, Change::Delete)
                    }
                    (Link::Key { on_update, .. }, Change::Update) => {
                        follow(on_update, Change::Update)
                    }
                    // Inserts and DDL do not act on referencing rows; a
                    // plain TRUNCATE of a referenced table fails.
                    (Link::Key { .. }, _) => &[],
                    // A view cannot be truncated or altered as a table.
                    (Link::View, Change::Truncate | Change::Empty | Change::Alter) => &[],
                    (Link::View, c) => match c {
                        Change::Insert => &[Change::Insert],
                        Change::Delete => &[Change::Delete],
                        _ => &[Change::Update],
                    },
                    // An update may move a row to another partition: a
                    // delete from the one it was in, an insert into the
                    // other.
                    (Link::Partition, Change::Update) => {
                        &[Change::Update, Change::Delete, Change::Insert]
                    }
                    (Link::Partition, Change::Insert) => &[Change::Insert],
                    // Postgres sends no insert from an inheritance parent
                    // to its children.
                    (Link::Child, Change::Update) => &[Change::Update],
                    (Link::Child, Change::Insert) => &[],
                    (Link::Partition | Link::Child, Change::Delete) => &[Change::Delete],
                    (Link::Partition | Link::Child, Change::Truncate) => &[Change::Truncate],
                    (Link::Partition | Link::Child, Change::Empty) => &[Change::Empty],
                    (Link::Partition | Link::Child, Change::Alter) => &[Change::Alter],
                    // A rule is code: whatever it does to its tables.
                    (Link::Rule, Change::Alter | Change::Empty) => &[],
                    (Link::Rule, _) => &[Change::Insert, Change::Update, Change::Delete],
                };
                if next.is_empty() {
                    continue;
                }
                // A row set to NULL or its default is an update of the
                // referencing table, which its own keys may carry on.
                let name = key(&child.schema, &child.table);
                for &n in next {
                    if seen.insert((name.clone(), n)) {
                        todo.push((name.clone(), n));
                    }
                }
                out.push(Relation {
                    schemas: vec![child.schema.clone()],
                    name: child.table.clone(),
                });
            }
        }
        out
    }
}

/// The links from a view to the tables its definition reads (MySQL keeps
/// no list of them), or `None` when the definition is empty (hidden from
/// the user that read it) or does not parse. A long definition is parsed
/// on a thread with a large stack ([`crate::big_stack`]), as the engine
/// parses long statements.
pub fn view_links(
    dialect: super::Dialect,
    schema: &str,
    name: &str,
    definition: &str,
) -> Option<Vec<LinkRow>> {
    if definition.trim().is_empty() {
        return None;
    }
    if definition.len() > super::engine::INLINE_PARSE_BYTES {
        return crate::big_stack::run("airlock-view", || {
            view_links_inline(dialect, schema, name, definition)
        })
        .flatten();
    }
    view_links_inline(dialect, schema, name, definition)
}

fn view_links_inline(
    dialect: super::Dialect,
    schema: &str,
    name: &str,
    definition: &str,
) -> Option<Vec<LinkRow>> {
    let ctx = super::SessionContext {
        current_database: Some(schema.to_owned()),
        search_path: vec![schema.to_owned()],
        ..super::SessionContext::default()
    };
    let parsed = super::parse::parse(dialect, definition, &super::parse::Limits::default()).ok()?;
    let mut out = Vec::new();
    for p in &parsed {
        let facts = super::extract::extract_parsed(dialect, &ctx, p);
        for r in facts.reads {
            for s in &r.schemas {
                out.push(LinkRow {
                    from: (schema.to_owned(), name.to_owned()),
                    to: (s.clone(), r.name.clone()),
                    link: Link::View,
                });
            }
        }
    }
    Some(out)
}

/// The change a key's action makes to the referencing rows.
fn follow(action: Action, change: Change) -> &'static [Change] {
    match (action, change) {
        (Action::Refuse, _) => &[],
        (Action::Cascade, Change::Delete) => &[Change::Delete],
        (Action::Cascade | Action::Set, _) => &[Change::Update],
    }
}

fn key(schema: &str, table: &str) -> String {
    format!("{}.{}", schema.to_lowercase(), table.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(parent: &str, child: &str, del: Action, upd: Action) -> LinkRow {
        link(
            parent,
            child,
            Link::Key {
                on_delete: del,
                on_update: upd,
            },
        )
    }

    fn link(from: &str, to: &str, link: Link) -> LinkRow {
        LinkRow {
            from: ("public".into(), from.into()),
            to: ("public".into(), to.into()),
            link,
        }
    }

    fn reached(fk: &ForeignKeys, table: &str, changes: RowChanges) -> Vec<String> {
        let writes = [Relation {
            schemas: vec!["public".into()],
            name: table.into(),
        }]
        .into_iter()
        .collect();
        let mut out: Vec<String> = fk
            .reached(&writes, changes)
            .iter()
            .map(|r| r.display_name())
            .filter(|n| *n != format!("public.{table}"))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    const DELETES: RowChanges = RowChanges {
        deletes: true,
        ..NONE
    };
    const UPDATES: RowChanges = RowChanges {
        updates: true,
        ..NONE
    };
    const TRUNCATES: RowChanges = RowChanges {
        truncates_cascade: true,
        ..NONE
    };
    const NONE: RowChanges = RowChanges {
        inserts: false,
        deletes: false,
        updates: false,
        truncates_cascade: false,
        truncates: false,
        alters: false,
        relinks: false,
        view_over: false,
    };

    #[test]
    fn deletes_follow_on_delete_actions_through_every_level() {
        use Action::*;
        let fk = ForeignKeys::new(
            0,
            [
                row("customers", "orders", Cascade, Refuse),
                row("orders", "items", Cascade, Refuse),
                row("customers", "notes", Set, Refuse),
                row("customers", "invoices", Refuse, Cascade),
            ],
            [],
        );
        assert_eq!(
            reached(&fk, "customers", DELETES),
            ["public.items", "public.notes", "public.orders"]
        );
        // An update follows only ON UPDATE actions.
        assert_eq!(reached(&fk, "customers", UPDATES), ["public.invoices"]);
        // TRUNCATE ... CASCADE follows every key.
        assert_eq!(
            reached(&fk, "customers", TRUNCATES),
            [
                "public.invoices",
                "public.items",
                "public.notes",
                "public.orders"
            ]
        );
        assert!(reached(&fk, "items", DELETES).is_empty());
    }

    #[test]
    fn a_set_null_is_an_update_that_cascades_on() {
        use Action::*;
        let fk = ForeignKeys::new(
            0,
            [
                row("a", "b", Set, Refuse),
                // b's own key column is referenced by c, ON UPDATE CASCADE.
                row("b", "c", Refuse, Cascade),
                // A cycle ends.
                row("c", "a", Cascade, Cascade),
            ],
            [],
        );
        assert_eq!(reached(&fk, "a", DELETES), ["public.b", "public.c"]);
    }

    #[test]
    fn names_are_matched_without_case_and_ids_differ() {
        let a = ForeignKeys::new(
            3,
            [LinkRow {
                from: ("Public".into(), "Customers".into()),
                to: ("public".into(), "Orders".into()),
                link: Link::Key {
                    on_delete: Action::Cascade,
                    on_update: Action::Refuse,
                },
            }],
            [],
        );
        assert_eq!(reached(&a, "customers", DELETES), ["public.orders"]);
        let b = ForeignKeys::new(3, [], []);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.loaded_at(), 3);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn views_and_children_carry_writes_on() {
        use Action::*;
        let fk = ForeignKeys::new(
            0,
            [
                link("cv", "customers", Link::View),
                row("customers", "orders", Cascade, Refuse),
                link("accounts", "accounts_eu", Link::Partition),
                row("accounts_eu", "ledger", Cascade, Refuse),
            ],
            [],
        );
        assert_eq!(
            reached(&fk, "cv", DELETES),
            ["public.customers", "public.orders"]
        );
        // Only the view's own tables: the key acts on deletes.
        assert_eq!(reached(&fk, "cv", UPDATES), ["public.customers"]);
        assert_eq!(
            reached(&fk, "accounts", DELETES),
            ["public.accounts_eu", "public.ledger"]
        );
        // An update that moves a row out of a partition deletes it there.
        assert_eq!(
            reached(&fk, "accounts", UPDATES),
            ["public.accounts_eu", "public.ledger"]
        );
        assert_eq!(
            reached(&fk, "accounts", TRUNCATES),
            ["public.accounts_eu", "public.ledger"]
        );
    }

    #[test]
    fn a_view_over_a_table_counts_as_writing_what_the_table_reaches() {
        use Action::*;
        let fk = ForeignKeys::new(
            0,
            [row("customers", "orders", Cascade, Refuse)],
            [("public".to_owned(), "hidden".to_owned())],
        );
        let rel = |n: &str| Relation {
            schemas: vec!["public".into()],
            name: n.into(),
        };
        let mut facts = Facts::default();
        facts.writes.insert(rel("cv"));
        facts.reads.insert(rel("customers"));
        facts.row_changes.view_over = true;
        fk.add_cascaded(&mut facts);
        let writes: Vec<String> = facts.writes.iter().map(|r| r.display_name()).collect();
        assert_eq!(writes, ["public.cv", "public.orders"]);
        let reached: Vec<String> = facts.reached.iter().map(|r| r.display_name()).collect();
        assert_eq!(reached, ["public.orders"]);
        assert!(facts.violations.is_empty());
        // A write through a view whose tables are not known is refused,
        // also through a view over it.
        let mut facts = Facts::default();
        facts.writes.insert(rel("hidden"));
        facts.row_changes.deletes = true;
        fk.add_cascaded(&mut facts);
        assert_eq!(facts.violations.len(), 1);
        assert_eq!(facts.violations[0].0, OPAQUE_VIEW);
        let over = ForeignKeys::new(
            0,
            [link("v2", "hidden", Link::View)],
            [("public".to_owned(), "hidden".to_owned())],
        );
        let mut facts = Facts::default();
        facts.writes.insert(rel("v2"));
        facts.row_changes.inserts = true;
        over.add_cascaded(&mut facts);
        assert_eq!(facts.violations.len(), 1, "{:?}", facts.violations);
    }

    #[test]
    fn inserts_truncates_ddl_renames_and_rules_are_followed() {
        use Action::*;
        let fk = ForeignKeys::new(
            0,
            [
                link("v_orders", "orders", Link::View),
                link("accounts", "accounts_eu", Link::Partition),
                link("accounts_eu", "accounts_eu_a", Link::Partition),
                row("customers", "orders", Cascade, Refuse),
                link("stage", "vip", Link::Rule),
            ],
            [],
        );
        let with = |f: fn(&mut RowChanges)| {
            let mut c = NONE;
            f(&mut c);
            c
        };
        // An insert goes through a view and into partitions, not through
        // keys.
        let inserts = with(|c| c.inserts = true);
        assert_eq!(reached(&fk, "v_orders", inserts), ["public.orders"]);
        assert_eq!(
            reached(&fk, "accounts", inserts),
            ["public.accounts_eu", "public.accounts_eu_a"]
        );
        assert!(reached(&fk, "customers", inserts).is_empty());
        // A plain TRUNCATE empties children, not referencing tables.
        let truncates = with(|c| c.truncates = true);
        assert_eq!(
            reached(&fk, "accounts", truncates),
            ["public.accounts_eu", "public.accounts_eu_a"]
        );
        assert!(reached(&fk, "customers", truncates).is_empty());
        // DDL reaches children only; a rename reaches everything.
        let alters = with(|c| c.alters = true);
        assert_eq!(
            reached(&fk, "accounts", alters),
            ["public.accounts_eu", "public.accounts_eu_a"]
        );
        assert!(reached(&fk, "customers", alters).is_empty());
        let relinks = with(|c| c.relinks = true);
        assert_eq!(reached(&fk, "customers", relinks), ["public.orders"]);
        // A rule writes its tables whatever the change.
        assert_eq!(reached(&fk, "stage", DELETES), ["public.vip"]);
        assert_eq!(reached(&fk, "stage", inserts), ["public.vip"]);
    }

    #[test]
    fn a_write_to_a_partition_or_child_writes_its_ancestors_only() {
        let fk = ForeignKeys::new(
            0,
            [
                link("p", "p_a", Link::Partition),
                link("p", "p_b", Link::Partition),
                link("p_a", "p_a1", Link::Partition),
                link("base", "kid", Link::Child),
            ],
            [],
        );
        assert_eq!(reached(&fk, "p_a1", DELETES), ["public.p", "public.p_a"]);
        assert_eq!(reached(&fk, "kid", UPDATES), ["public.base"]);
        // An insert into an inheritance parent stays there.
        let inserts = RowChanges {
            inserts: true,
            ..NONE
        };
        assert!(reached(&fk, "base", inserts).is_empty());
        assert_eq!(
            reached(&fk, "p", inserts),
            ["public.p_a", "public.p_a1", "public.p_b"]
        );
    }

    #[test]
    fn a_renamed_schema_renames_every_table_in_it() {
        let fk = ForeignKeys::new(
            0,
            [row("par", "orders", Action::Cascade, Action::Refuse)],
            [],
        );
        let mut facts = Facts::default();
        facts.renamed_schemas.insert("public".into());
        fk.add_cascaded(&mut facts);
        let reached: Vec<String> = facts.reached.iter().map(|r| r.display_name()).collect();
        assert_eq!(reached, ["public.orders"]);
    }

    #[test]
    fn links_that_could_not_be_read_refuse_every_write() {
        let fk = ForeignKeys::new(0, [row("a", "b", Action::Cascade, Action::Refuse)], []);
        let u = fk.unreadable_copy();
        assert!(u.is_unreadable() && !fk.is_unreadable());
        assert_ne!(u.id(), fk.id());
        let mut write = Facts::default();
        write.writes.insert(Relation {
            schemas: vec!["public".into()],
            name: "x".into(),
        });
        write.row_changes.inserts = true;
        u.add_cascaded(&mut write);
        assert_eq!(write.violations.len(), 1);
        let mut read = Facts::default();
        u.add_cascaded(&mut read);
        assert!(read.violations.is_empty());
    }

    #[test]
    fn actions_read_from_either_catalog() {
        assert_eq!(Action::from_pg("c"), Action::Cascade);
        assert_eq!(Action::from_pg("n"), Action::Set);
        assert_eq!(Action::from_pg("d"), Action::Set);
        assert_eq!(Action::from_pg("a"), Action::Refuse);
        assert_eq!(Action::from_pg("r"), Action::Refuse);
        assert_eq!(Action::from_mysql("CASCADE"), Action::Cascade);
        assert_eq!(Action::from_mysql("SET NULL"), Action::Set);
        assert_eq!(Action::from_mysql("SET DEFAULT"), Action::Set);
        assert_eq!(Action::from_mysql("RESTRICT"), Action::Refuse);
        assert_eq!(Action::from_mysql("NO ACTION"), Action::Refuse);
    }
}
