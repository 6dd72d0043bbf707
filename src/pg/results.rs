//! Following the server's replies to know which result a DataRow belongs to.
//!
//! Masking decides per statement which output columns to rewrite, but
//! DataRows carry no statement id: airlock has to line the server's replies
//! up with the client's requests. The client side records what each request
//! will produce ([`Expect`]); the server side consumes the replies in order:
//!
//! | request | replies |
//! |---|---|
//! | Query | per statement: [RowDescription, DataRow*] CommandComplete, or EmptyQueryResponse, or CopyIn/Out...; an ErrorResponse ends it; then ReadyForQuery |
//! | Parse / Bind / Close | ParseComplete / BindComplete / CloseComplete |
//! | Describe S | ParameterDescription, then RowDescription or NoData |
//! | Describe P | RowDescription or NoData |
//! | Execute | DataRow*, then CommandComplete, PortalSuspended or EmptyQueryResponse |
//! | Sync | ReadyForQuery |
//!
//! After an ErrorResponse in the extended protocol the server skips to Sync,
//! so the expectations before the Sync are dropped, including those the
//! client sends after the error reached it and before its Sync (a client
//! may read the error after a Flush and only then send the rest of the
//! batch: node-postgres's cursors, JDBC's batches). While an Execute copies
//! in (CopyInResponse), the server ignores Sync until the client's CopyDone
//! or CopyFail ([`Expect::CopyEnd`]): those Syncs get no ReadyForQuery. Notices, notifications
//! and ParameterStatus can arrive anywhere and are not requests' replies.
//!
//! Two followers use the tracker: masking (which needs the plan of the
//! result now streaming, [`Tracker::active`]) and the audit log (which needs
//! to know when each execution ends, with its rows: [`Finished`], returned
//! by [`Tracker::on_message`]). A [`Tracker::counting`] tracker skips the
//! masking work. DataRows after the first of a result take a fast path: an
//! integer increment, no lock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::named::Named;

/// A statement's result plan (what to do with each output column), opaque here.
pub type Plan<P> = Option<Arc<P>>;

/// The plans of a simple Query's statements, in order. Shared, not copied:
/// a session that sends the same query again (see `policy::memo`) hands
/// over the same plans without an allocation.
pub type Plans<P> = Arc<[Plan<P>]>;

/// What one client request will produce.
#[derive(Debug)]
pub enum Expect<P> {
    /// A simple Query: one plan per statement, in order.
    Simple {
        plans: Plans<P>,
    },
    /// Parse, Bind or Close: one completion message.
    Completion,
    /// Parse or Bind of a followed statement: one completion message, and
    /// [`Finished::Step`] with the plan if it fails instead.
    Step {
        plan: Plan<P>,
    },
    /// Describe of a statement: remember its RowDescription under this
    /// name, for Executes of portals bound from Parse `parse`.
    DescribeStatement {
        name: Vec<u8>,
        parse: u64,
    },
    /// Describe of a portal: remember its RowDescription for Executes of
    /// the portal made by Bind `bind`, and as the description of statement
    /// `statement` as made by Parse `parse` (0: not known), whose every
    /// portal returns the same columns: a driver that described one
    /// portal of a statement executes later ones without a Describe
    /// (pgjdbc, once it prepares a statement on the server).
    DescribePortal {
        bind: u64,
        parse: u64,
        statement: Option<Arc<[u8]>>,
    },
    /// Execute of a portal bound from `statement`, with Bind's result
    /// formats and the Parse and Bind it came from.
    Execute {
        plan: Plan<P>,
        statement: Arc<[u8]>,
        formats: Arc<Vec<i16>>,
        origin: Origin,
    },
    Sync,
    FunctionCall,
    /// The client sent CopyDone or CopyFail: the end of any Syncs the
    /// server ignores during an extended-protocol COPY FROM STDIN. No reply.
    CopyEnd,
    /// The client sent CopyData (one marker per run of them): where an
    /// error of a COPY FROM STDIN may have come from. No reply.
    CopyData,
}

/// The Parse and Bind an Execute's portal came from, as ids the client
/// side's book hands out (0: not known), to find the RowDescription of a
/// Describe of that very statement or portal. A name is not enough: a
/// statement parsed again under the same name (the unnamed one, or after
/// a Close) or a portal bound again returns other columns than the ones
/// an earlier Describe of that name described.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Origin {
    pub parse: u64,
    pub bind: u64,
}

/// Most portal RowDescriptions a tracker keeps (the latest ones): drivers
/// describe the portal they execute next.
const PORTALS_DESCRIBED: usize = 8;

/// The queue the client side fills and the server side drains.
pub struct Expectations<P> {
    queue: Mutex<VecDeque<Expect<P>>>,
}

impl<P> Default for Expectations<P> {
    fn default() -> Self {
        Expectations {
            queue: Mutex::new(VecDeque::new()),
        }
    }
}

impl<P> Expectations<P> {
    pub fn push(&self, e: Expect<P>) {
        self.lock().push_back(e);
    }

    /// How many replies are awaited.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes everything still expected (the session is ending).
    pub fn drain(&self) -> Vec<Expect<P>> {
        self.lock().drain(..).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Expect<P>>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the server's reply stream stands: the result being streamed now.
pub struct Tracker<P> {
    /// Index of the statement within the current simple Query.
    simple_index: usize,
    /// The simple Query's statement failed: its later statements do not run.
    simple_failed: bool,
    /// The plan and formats of the result now streaming, if it needs work.
    pub active: Option<Active<P>>,
    /// RowDescriptions of described statements, by name, with the Parse
    /// they describe.
    described: Named<(u64, Arc<Vec<u8>>)>,
    /// RowDescriptions of described portals, by the Bind that made them
    /// (the latest [`PORTALS_DESCRIBED`]).
    portals_described: VecDeque<(u64, Arc<Vec<u8>>)>,
    /// Follow plans ([`Tracker::active`], RowDescriptions) for masking;
    /// off in a [`Tracker::counting`] tracker.
    plans: bool,
    /// DataRows of the result now streaming.
    rows: u64,
    /// The last message was a DataRow that took the full path: the next
    /// DataRows of the same result need nothing but counting.
    in_rows: bool,
    /// An Execute went into copy-in mode: Syncs up to the next
    /// [`Expect::CopyEnd`] are ignored by the server.
    copy_in: bool,
    /// COPY FROM STDIN statements of the current simple Query that went
    /// into copy-in mode (see [`Tracker::simple_query_done`]).
    simple_copies: u32,
    /// The last simple-Query RowDescription and its formats: a statement
    /// sent again gets the same description, which is then shared rather
    /// than copied.
    last_description: Option<Description>,
    /// Requests answered so far (Query, Sync, FunctionCall: their
    /// ReadyForQuery went by, or the server ignored the Sync).
    requests_done: u64,
    /// An extended-protocol error came before the client's Sync was
    /// queued: the server skips whatever comes before that Sync, so the
    /// expectations queued until then get no reply (dropped at its
    /// ReadyForQuery).
    skip_to_sync: bool,
}

/// A RowDescription body and its result formats.
type Description = (Arc<Vec<u8>>, Arc<Vec<i16>>);

/// An execution (or a step of one) that ended, as [`Tracker::on_message`]
/// reports it.
#[derive(Debug)]
pub enum Finished<P> {
    /// One statement of a simple Query ended (CommandComplete,
    /// EmptyQueryResponse or ErrorResponse).
    Statement(Ending),
    /// A simple Query ended (its ReadyForQuery): the plans it was sent with.
    Query { plans: Plans<P> },
    /// An Execute's result ended (CommandComplete, EmptyQueryResponse,
    /// PortalSuspended), or the Execute failed.
    Execute { plan: Plan<P>, ending: Ending },
    /// A followed Parse or Bind ([`Expect::Step`]) failed.
    Step { plan: Plan<P>, ending: Ending },
}

/// How a result ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ending {
    /// Rows returned or affected: the count in the command tag when it has
    /// one (INSERT, UPDATE, DELETE, MERGE, SELECT, COPY, FETCH, MOVE), else
    /// the DataRows that went by. (A tracker that follows plans, whose
    /// caller wants no counts, always reports the DataRows.)
    pub rows: u64,
    /// The SQLSTATE of the error that ended it.
    pub error: Option<[u8; 5]>,
}

/// The result being streamed.
pub struct Active<P> {
    pub plan: Arc<P>,
    /// RowDescription body, when known.
    pub row_description: Option<Arc<Vec<u8>>>,
    /// Result format codes: from Bind (extended) or RowDescription (simple).
    pub formats: Arc<Vec<i16>>,
}

/// Something in the reply stream did not match the requests.
#[derive(Debug, thiserror::Error)]
#[error("airlock lost track of the reply stream at message '{0}'")]
pub struct OutOfStep(pub char);

impl<P> Default for Tracker<P> {
    fn default() -> Self {
        Tracker {
            simple_index: 0,
            simple_failed: false,
            active: None,
            described: Named::default(),
            portals_described: VecDeque::new(),
            plans: true,
            rows: 0,
            in_rows: false,
            copy_in: false,
            simple_copies: 0,
            last_description: None,
            requests_done: 0,
            skip_to_sync: false,
        }
    }
}

impl<P> Tracker<P> {
    /// A simple Query's RowDescription `body`, and its formats: shared with
    /// the last one when they are the same bytes.
    fn description(&mut self, body: &[u8]) -> Description {
        if let Some((rd, formats)) = &self.last_description {
            if rd.as_slice() == body {
                return (Arc::clone(rd), Arc::clone(formats));
            }
        }
        let rd = Arc::new(body.to_vec());
        let formats = Arc::new(row_description_formats(body));
        self.last_description = Some((Arc::clone(&rd), Arc::clone(&formats)));
        (rd, formats)
    }

    /// A tracker that follows executions only ([`Finished`]), not the plans
    /// of results: no RowDescription is copied, [`Tracker::active`] stays
    /// `None`. Only this tracker reads the row counts of command tags; the
    /// plan-following one reports the DataRows it saw.
    pub fn counting() -> Self {
        Tracker {
            plans: false,
            ..Tracker::default()
        }
    }

    /// Advances on one server message (tag and body; the body may be
    /// empty for a DataRow or CopyData that was streamed through). Returns
    /// what the message ended, if anything.
    pub fn on_message(
        &mut self,
        queue: &Expectations<P>,
        tag: u8,
        body: &[u8],
    ) -> Result<Option<Finished<P>>, OutOfStep> {
        if tag == b'D' {
            self.rows += 1;
            // The queue's front cannot change while a result streams (the
            // client side only appends): the first row did the work.
            if self.in_rows {
                return Ok(None);
            }
            self.in_rows = true;
        } else {
            self.in_rows = false;
        }
        let mut q = queue.lock();
        self.settle_copy(&mut q);
        let out_of_step = || OutOfStep(char::from(tag));
        let mut finished = None;
        match tag {
            // CopyInResponse of an Execute: Syncs are ignored until CopyEnd.
            b'G' if matches!(q.front(), Some(Expect::Execute { .. })) => self.copy_in = true,
            b'G' if matches!(q.front(), Some(Expect::Simple { .. })) => self.simple_copies += 1,
            // Asynchronous messages, and rows of the active result.
            b'N' | b'A' | b'S' | b'D' | b'd' | b'c' | b'G' | b'H' | b'W' => {}
            b'1' | b'2' | b'3' => match q.pop_front() {
                Some(Expect::Completion | Expect::Step { .. }) => {}
                _ => return Err(out_of_step()),
            },
            b't' if !matches!(q.front(), Some(Expect::DescribeStatement { .. })) => {
                return Err(out_of_step());
            }
            b'T' => match q.front() {
                Some(Expect::Simple { .. }) if !self.plans => {}
                Some(Expect::Simple { plans }) => {
                    // A result for a statement past those airlock judged:
                    // the server split the query otherwise than airlock's
                    // parser did, and nothing of it is relayed (red-team
                    // finding: its rows went out unmasked).
                    let Some(plan) = plans.get(self.simple_index) else {
                        return Err(out_of_step());
                    };
                    let plan = plan.clone();
                    self.active = match plan {
                        Some(plan) => {
                            let (row_description, formats) = self.description(body);
                            Some(Active {
                                plan,
                                row_description: Some(row_description),
                                formats,
                            })
                        }
                        None => None,
                    };
                }
                Some(Expect::DescribeStatement { .. }) => {
                    if let Some(Expect::DescribeStatement { name, parse }) = q.pop_front() {
                        if self.plans {
                            self.described
                                .insert(&name, (parse, Arc::new(body.to_vec())));
                        }
                    }
                }
                Some(Expect::DescribePortal { .. }) => {
                    if let Some(Expect::DescribePortal {
                        bind,
                        parse,
                        statement,
                    }) = q.pop_front()
                    {
                        if self.plans && bind != 0 {
                            // Drivers describe the same rows again and
                            // again: share the last copy when it is that.
                            let description = match self.portals_described.back() {
                                Some((_, d)) if d.as_slice() == body => Arc::clone(d),
                                _ => Arc::new(body.to_vec()),
                            };
                            if let Some(name) = statement.filter(|_| parse != 0) {
                                let known = self.described.get(&name).is_some_and(|(p, d)| {
                                    *p == parse && Arc::ptr_eq(d, &description)
                                });
                                if !known {
                                    self.described
                                        .insert(&name, (parse, Arc::clone(&description)));
                                }
                            }
                            if self.portals_described.len() >= PORTALS_DESCRIBED {
                                self.portals_described.pop_front();
                            }
                            self.portals_described.push_back((bind, description));
                        }
                    }
                }
                _ => return Err(out_of_step()),
            },
            b'n' => match q.pop_front() {
                Some(Expect::DescribeStatement { name, .. }) => {
                    self.described.remove(&name);
                }
                Some(Expect::DescribePortal { .. }) => {}
                _ => return Err(out_of_step()),
            },
            // End of one statement's result.
            b'C' | b'I' | b's' => {
                self.active = None;
                let ending = Ending {
                    rows: match tag {
                        b'C' if !self.plans => tag_rows(body).unwrap_or(self.rows),
                        _ => self.rows,
                    },
                    error: None,
                };
                self.rows = 0;
                match q.front() {
                    Some(Expect::Simple { .. }) => {
                        self.simple_index += 1;
                        finished = Some(Finished::Statement(ending));
                    }
                    Some(Expect::Execute { .. }) => {
                        if let Some(Expect::Execute { plan, .. }) = q.pop_front() {
                            finished = Some(Finished::Execute { plan, ending });
                        }
                        // (Syncs ignored during its copy-in are settled below.)
                    }
                    _ => return Err(out_of_step()),
                }
            }
            b'E' => {
                self.active = None;
                let ending = Ending {
                    rows: self.rows,
                    error: error_code(body),
                };
                self.rows = 0;
                match q.front() {
                    Some(Expect::Simple { .. }) => {
                        self.simple_failed = true;
                        finished = Some(Finished::Statement(ending));
                    }
                    Some(Expect::FunctionCall) => {}
                    // Extended protocol: the server skips to Sync.
                    _ => {
                        let failed_copy = self.copy_in;
                        if failed_copy {
                            let by_copy_fail = error_field(body, b'M')
                                .is_some_and(|m| m.starts_with(COPY_FAIL_MESSAGE));
                            Self::copy_failed(&q, ending.error, by_copy_fail)
                                .map_err(|()| out_of_step())?;
                        }
                        finished = match q.front() {
                            Some(Expect::Execute { .. } | Expect::Step { .. }) => {
                                match q.pop_front() {
                                    Some(Expect::Execute { plan, .. }) => {
                                        Some(Finished::Execute { plan, ending })
                                    }
                                    Some(Expect::Step { plan }) => {
                                        Some(Finished::Step { plan, ending })
                                    }
                                    _ => None,
                                }
                            }
                            _ => None,
                        };
                        // Syncs read in copy-in mode before the error are
                        // settled as ignored; the copy is over either way.
                        self.settle_copy(&mut q);
                        if failed_copy {
                            self.copy_in = false;
                        }
                        Self::drop_skipped(&mut q).map_err(|()| out_of_step())?;
                        self.skip_to_sync = q.is_empty();
                    }
                }
            }
            b'V' => {}
            b'Z' => {
                self.active = None;
                self.simple_index = 0;
                self.simple_failed = false;
                self.rows = 0;
                if self.skip_to_sync {
                    // What the client sent after the error, up to its Sync.
                    Self::drop_skipped(&mut q).map_err(|()| out_of_step())?;
                    self.skip_to_sync = false;
                }
                match q.pop_front() {
                    Some(Expect::Simple { plans }) => {
                        if self.simple_copies != 0 {
                            self.simple_query_done(&q).map_err(|()| out_of_step())?;
                        }
                        finished = Some(Finished::Query { plans });
                    }
                    Some(Expect::Sync | Expect::FunctionCall) => {}
                    _ => return Err(out_of_step()),
                }
                self.requests_done += 1;
            }
            _ => {}
        }
        self.settle_copy(&mut q);
        // An Execute now at the front streams its rows next (there is no
        // RowDescription in the extended protocol's Execute reply).
        if self.plans && self.active.is_none() {
            if let Some(Expect::Execute {
                plan: Some(plan),
                statement,
                formats,
                origin,
            }) = q.front()
            {
                self.active = Some(Active {
                    plan: Arc::clone(plan),
                    row_description: self.description_of(statement, *origin),
                    formats: Arc::clone(formats),
                });
            }
        }
        Ok(finished)
    }
}

impl<P> Tracker<P> {
    /// The RowDescription of what an Execute of a portal from `origin`
    /// (bound from statement `statement`) returns: a Describe of that
    /// portal, or of that statement since that Parse. `None` when the
    /// client described neither.
    fn description_of(&self, statement: &[u8], origin: Origin) -> Option<Arc<Vec<u8>>> {
        if origin.bind != 0 {
            // The portal described last, as drivers do, else an earlier one.
            let found = match self.portals_described.back() {
                Some((b, d)) if *b == origin.bind => Some(d),
                _ => self
                    .portals_described
                    .iter()
                    .find(|(b, _)| *b == origin.bind)
                    .map(|(_, d)| d),
            };
            if let Some(d) = found {
                return Some(Arc::clone(d));
            }
        }
        match self.described.get(statement) {
            Some((parse, d)) if *parse == origin.parse && origin.parse != 0 => Some(Arc::clone(d)),
            _ => None,
        }
    }

    /// Drops the expectations the server skips after an extended-protocol
    /// error, up to the next Sync. A Query or FunctionCall among them is a
    /// request the client side counted (the fence, the pending count, the
    /// requests the skip reports are numbered by) and the server never
    /// answers: airlock's books would stay one request behind for good,
    /// crediting later errors to the wrong batch (review finding: a
    /// masked column's rows then went out under a clear plan). No driver
    /// sends one there, so the reply stream is declared out of step and
    /// the session ends (fail closed).
    fn drop_skipped(q: &mut VecDeque<Expect<P>>) -> Result<(), ()> {
        while let Some(e) = q.front() {
            match e {
                Expect::Sync => break,
                Expect::Simple { .. } | Expect::FunctionCall => return Err(()),
                _ => {
                    q.pop_front();
                }
            }
        }
        Ok(())
    }

    /// Drops what gets no reply at the front of the queue: CopyEnd and
    /// CopyData markers, and the Syncs the server ignored in copy-in mode.
    fn settle_copy(&mut self, q: &mut VecDeque<Expect<P>>) {
        loop {
            match q.front() {
                Some(Expect::CopyEnd) => self.copy_in = false,
                Some(Expect::CopyData) => {}
                Some(Expect::Sync) if self.copy_in => self.requests_done += 1,
                _ => return,
            }
            q.pop_front();
        }
    }

    /// An error (`code`) during an Execute's COPY FROM STDIN (`q` starts
    /// with that Execute). The error ends copy-in mode: the server skips to
    /// the next Sync it reads and answers it. Syncs the client sent before
    /// anything that can fail a copy (CopyData, or any other request,
    /// which the server refuses in copy-in mode) were read in copy-in mode
    /// and ignored (tokio-postgres and libpq send Bind, Execute, Sync and
    /// only then the data). A Sync sent after such a message was read
    /// either in copy-in mode or after the error, depending on which one
    /// failed, which airlock cannot know; and a cancel or statement timeout
    /// (57014) can end the copy before any message is read. Then the
    /// replies to later requests could be lined up with the wrong plans,
    /// so the reply stream is declared out of step before any of them goes
    /// by and the session ends (fail closed).
    ///
    /// A 57014 that the client's own CopyFail caused (`by_copy_fail`: the
    /// server's wording of it) is not a cancel: the server read everything
    /// up to that CopyFail in copy-in mode, so each Sync before it was
    /// ignored (libpq and tokio-postgres abort a copy so; the session ended
    /// before, a compatibility finding).
    fn copy_failed(
        q: &VecDeque<Expect<P>>,
        code: Option<[u8; 5]>,
        by_copy_fail: bool,
    ) -> Result<(), ()> {
        if by_copy_fail && q.iter().skip(1).any(|e| matches!(e, Expect::CopyEnd)) {
            return Ok(());
        }
        let cancelled = code == Some(*b"57014");
        let mut may_fail = false;
        for e in q.iter().skip(1) {
            match e {
                Expect::CopyEnd => break,
                Expect::Sync if may_fail || cancelled => return Err(()),
                Expect::Sync => {}
                _ => may_fail = true,
            }
        }
        Ok(())
    }

    /// A simple Query ended (its ReadyForQuery; `q` holds what was sent
    /// after it). During its COPY FROM STDIN the server ignores a Sync and
    /// drops or fails on other requests, and whether one sent then is
    /// answered depends on when the server left copy-in mode (an error
    /// ends it early). No client sends one there: one that did would leave
    /// the replies to later requests lined up with the wrong plans, so the
    /// reply stream is declared out of step and the session ends (fail
    /// closed).
    fn simple_query_done(&mut self, q: &VecDeque<Expect<P>>) -> Result<(), ()> {
        let mut copies = std::mem::take(&mut self.simple_copies);
        for e in q {
            if copies == 0 {
                break;
            }
            // Only the end of each copy may come in between: the server
            // drops anything else it reads in copy-in mode, or fails on it.
            match e {
                Expect::CopyEnd => copies -= 1,
                Expect::CopyData => {}
                _ => return Err(()),
            }
        }
        Ok(())
    }

    /// How many requests that the server answers with ReadyForQuery (Query,
    /// Sync, FunctionCall) have been answered, counting the Syncs it
    /// ignored during COPY FROM STDIN (see [`super::ddl_fence`]).
    pub fn requests_done(&self) -> u64 {
        self.requests_done
    }
}

/// The row count of a CommandComplete tag (`INSERT 0 5`, `UPDATE 3`,
/// `SELECT 10`, `COPY 7`, ...), for the commands that report one.
pub fn tag_rows(body: &[u8]) -> Option<u64> {
    let tag = body.strip_suffix(&[0]).unwrap_or(body);
    // Tags are a few bytes long: plain scans beat a split iterator.
    let first_space = tag.iter().position(|&b| b == b' ')?;
    if !matches!(
        &tag[..first_space],
        b"INSERT" | b"UPDATE" | b"DELETE" | b"MERGE" | b"SELECT" | b"COPY" | b"FETCH" | b"MOVE"
    ) {
        return None;
    }
    let last_space = tag.iter().rposition(|&b| b == b' ')?;
    let count = &tag[last_space + 1..];
    if count.is_empty() {
        return None;
    }
    count.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The SQLSTATE (field `C`) of an ErrorResponse body.
pub fn error_code(body: &[u8]) -> Option<[u8; 5]> {
    error_field(body, b'C')?.try_into().ok()
}

/// Field `kind` of an ErrorResponse or NoticeResponse body.
fn error_field(body: &[u8], kind: u8) -> Option<&[u8]> {
    let mut rest = body;
    while let Some((&k, after)) = rest.split_first() {
        if k == 0 {
            return None;
        }
        let nul = memchr::memchr(0, after)?;
        if k == kind {
            return Some(&after[..nul]);
        }
        rest = &after[nul + 1..];
    }
    None
}

/// How Postgres words the error (57014) that a client's CopyFail causes,
/// followed by the client's own text (`lc_messages` other than English
/// words it otherwise, and it then counts as a possible cancel).
const COPY_FAIL_MESSAGE: &[u8] = b"COPY from stdin failed: ";

/// The format code of each field of a RowDescription body.
pub fn row_description_formats(body: &[u8]) -> Vec<i16> {
    fields(body).map(|f| f.format).collect()
}

/// One RowDescription field.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub format: i16,
}

/// The fields of a RowDescription body (stops at malformed input).
pub fn fields(body: &[u8]) -> impl Iterator<Item = Field<'_>> {
    let n = body
        .get(..2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]).max(0))
        .unwrap_or(0);
    let mut pos = 2usize;
    (0..n).map_while(move |_| {
        let rest = body.get(pos..)?;
        let nul = memchr::memchr(0, rest)?;
        let name = &rest[..nul];
        let f = rest.get(nul + 1..nul + 19)?;
        pos += nul + 19;
        Some(Field {
            name,
            table_oid: u32::from_be_bytes([f[0], f[1], f[2], f[3]]),
            attnum: i16::from_be_bytes([f[4], f[5]]),
            type_oid: u32::from_be_bytes([f[6], f[7], f[8], f[9]]),
            format: i16::from_be_bytes([f[16], f[17]]),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_counts_and_error_codes() {
        assert_eq!(tag_rows(b"INSERT 0 5\0"), Some(5));
        assert_eq!(tag_rows(b"SELECT 10\0"), Some(10));
        assert_eq!(tag_rows(b"COPY 7\0"), Some(7));
        assert_eq!(tag_rows(b"CREATE TABLE\0"), None);
        assert_eq!(tag_rows(b"SHOW\0"), None);
        assert_eq!(tag_rows(b"SELECT 1x\0"), None);
        assert_eq!(tag_rows(b"SELECT \0"), None);
        assert_eq!(tag_rows(b"SELECT 99999999999999999999999\0"), None);
        assert_eq!(tag_rows(b"SELECT\0"), None);
        assert_eq!(tag_rows(b"UPDATE 3"), Some(3));
        assert_eq!(tag_rows(b"FETCH 0\0"), Some(0));
        assert_eq!(tag_rows(b"MERGE 2\0"), Some(2));
        assert_eq!(tag_rows(b"MOVE 3\0"), Some(3));
        assert_eq!(tag_rows(b"DELETE 4\0"), Some(4));
        assert_eq!(tag_rows(b"SELEC 1\0"), None);
        assert_eq!(tag_rows(b"DISCARD 5\0"), None);
        assert_eq!(tag_rows(b" 5\0"), None);
        assert_eq!(tag_rows(b"SELECT 18446744073709551615\0"), Some(u64::MAX));
        assert_eq!(
            error_code(b"SERROR\0C22012\0Mdivision by zero\0\0"),
            Some(*b"22012")
        );
        assert_eq!(error_code(b"SERROR\0\0"), None);
    }

    #[test]
    fn syncs_ignored_during_copy_in_get_no_reply() {
        let q: Expectations<()> = Expectations::default();
        let mut t: Tracker<()> = Tracker::counting();
        q.push(Expect::Execute {
            plan: Some(Arc::new(())),
            statement: Arc::from(&b""[..]),
            formats: Arc::new(Vec::new()),
            origin: Origin::default(),
        });
        q.push(Expect::Sync);
        q.push(Expect::CopyEnd);
        q.push(Expect::Sync);
        assert!(t.on_message(&q, b'G', b"").unwrap().is_none());
        let done = t.on_message(&q, b'C', b"COPY 3\0").unwrap();
        assert!(matches!(done, Some(Finished::Execute { ending, .. }) if ending.rows == 3));
        assert!(t.on_message(&q, b'Z', b"I").unwrap().is_none());
        assert!(q.lock().is_empty());
        assert_eq!(t.requests_done(), 2, "the ignored Sync counts as done");
    }

    /// The client reads an error after a Flush, then sends the rest of its
    /// batch: the server skips all of it up to the Sync (node-postgres's
    /// cursors, JDBC's batches; the session ended as out of step before).
    #[test]
    fn what_follows_an_error_before_its_sync_gets_no_reply() {
        let q: Expectations<()> = Expectations::default();
        let mut t: Tracker<()> = Tracker::default();
        let execute = || Expect::Execute {
            plan: Some(Arc::new(())),
            statement: Arc::from(&b""[..]),
            formats: Arc::new(Vec::new()),
            origin: Origin::default(),
        };
        q.push(Expect::Completion);
        q.push(Expect::Completion);
        q.push(Expect::DescribePortal {
            bind: 0,
            parse: 0,
            statement: None,
        });
        t.on_message(&q, b'1', b"").unwrap();
        t.on_message(&q, b'E', b"SERROR\0C22012\0\0").unwrap();
        assert!(q.lock().is_empty());
        q.push(execute());
        q.push(Expect::Completion);
        q.push(Expect::Sync);
        t.on_message(&q, b'N', b"").unwrap();
        assert!(t.on_message(&q, b'Z', b"I").unwrap().is_none());
        assert!(q.lock().is_empty());
        // The next batch is followed as usual.
        q.push(Expect::Completion);
        q.push(execute());
        q.push(Expect::Sync);
        t.on_message(&q, b'2', b"").unwrap();
        assert!(t.active.is_some());
        t.on_message(&q, b'D', b"").unwrap();
        let done = t.on_message(&q, b'C', b"SELECT 1\0").unwrap();
        assert!(matches!(done, Some(Finished::Execute { ending, .. }) if ending.rows == 1));
        t.on_message(&q, b'Z', b"I").unwrap();
        assert!(q.lock().is_empty());
    }

    /// A Query or FunctionCall in the stretch the server skips is a request
    /// it never answers: the session ends rather than count it out of step
    /// (review finding), whether it was queued before the error came back
    /// or after.
    #[test]
    fn a_query_in_the_skipped_stretch_is_out_of_step() {
        for after in [false, true] {
            for request in [
                Expect::Simple {
                    plans: Arc::from(Vec::new()),
                },
                Expect::FunctionCall,
            ] {
                let q: Expectations<()> = Expectations::default();
                let mut t: Tracker<()> = Tracker::default();
                q.push(Expect::Completion);
                let mut request = Some(request);
                if !after {
                    q.push(request.take().unwrap_or(Expect::Sync));
                    q.push(Expect::Sync);
                }
                let at_error = t.on_message(&q, b'E', b"SERROR\0C22012\0\0");
                let result = match request.take() {
                    None => at_error.map(|_| ()),
                    Some(r) => {
                        at_error.unwrap();
                        q.push(r);
                        q.push(Expect::Sync);
                        t.on_message(&q, b'Z', b"I").map(|_| ())
                    }
                };
                assert!(result.is_err(), "queued after the error: {after}");
            }
        }
    }

    /// An Execute's COPY FROM STDIN that fails (with a bad row, 22P02),
    /// and what the client had sent when the error came back.
    fn failed_copy_with(sent: Vec<Expect<()>>) -> Result<Tracker<()>, OutOfStep> {
        failed_copy_as(sent, b"SERROR\0C22P02\0\0")
    }

    fn failed_copy_as(sent: Vec<Expect<()>>, error: &[u8]) -> Result<Tracker<()>, OutOfStep> {
        let q: Expectations<()> = Expectations::default();
        let mut t: Tracker<()> = Tracker::counting();
        q.push(Expect::Execute {
            plan: Some(Arc::new(())),
            statement: Arc::from(&b""[..]),
            formats: Arc::new(Vec::new()),
            origin: Origin::default(),
        });
        t.on_message(&q, b'G', b"")?;
        for e in sent {
            q.push(e);
        }
        t.on_message(&q, b'E', error)?;
        // What the client sends after the error: the server answers it.
        q.push(Expect::Sync);
        t.on_message(&q, b'Z', b"E")?;
        assert!(q.lock().is_empty());
        Ok(t)
    }

    #[test]
    fn an_error_ends_an_executes_copy_in() {
        // Nothing sent during the copy: the Sync after the error is
        // answered (it used to be taken for one the server ignored, which
        // lined every later reply up with the next request's plan).
        let t = failed_copy_with(vec![]).expect("in step");
        assert_eq!(t.requests_done(), 1);
        // CopyData and CopyDone sent before the error came back: the
        // server drops them while skipping to the Sync.
        let t = failed_copy_with(vec![Expect::CopyData, Expect::CopyEnd]).expect("in step");
        assert_eq!(t.requests_done(), 1);
        // A Sync sent before any data was read in copy-in mode and ignored
        // (tokio-postgres and libpq send Bind, Execute, Sync, then data).
        let t = failed_copy_with(vec![Expect::Sync, Expect::CopyData]).expect("in step");
        assert_eq!(t.requests_done(), 2, "the ignored Sync counts as done");
        // A Sync sent after data may have been ignored or answered:
        // airlock cannot tell, so the session ends before later replies.
        assert!(failed_copy_with(vec![Expect::CopyData, Expect::Sync]).is_err());
        assert!(failed_copy_with(vec![Expect::CopyData, Expect::Sync, Expect::CopyEnd]).is_err());
        // Likewise after another request, which fails the copy too.
        assert!(failed_copy_with(vec![Expect::Completion, Expect::Sync]).is_err());
        // A cancel or timeout may end the copy before any Sync is read.
        let cancel = b"SERROR\0C57014\0Mcanceling statement due to user request\0\0";
        assert!(failed_copy_as(vec![Expect::Sync], cancel).is_err());
        assert!(failed_copy_as(vec![Expect::CopyData], cancel).is_ok());
        // A 57014 the client's own CopyFail caused is not a cancel: every
        // Sync before the CopyFail was read in copy-in mode (libpq's and
        // tokio-postgres's abort of a copy). Without the CopyFail sent, or
        // in other words, it still counts as a possible cancel.
        let by_copy_fail = b"SERROR\0C57014\0MCOPY from stdin failed: aborted\0\0";
        let sent = || {
            vec![
                Expect::Sync,
                Expect::CopyData,
                Expect::Sync,
                Expect::CopyEnd,
            ]
        };
        let t = failed_copy_as(sent(), by_copy_fail).expect("in step");
        assert_eq!(
            t.requests_done(),
            3,
            "two ignored Syncs and the answered one"
        );
        assert!(failed_copy_as(vec![Expect::Sync, Expect::CopyData], by_copy_fail).is_err());
        assert!(failed_copy_as(sent(), cancel).is_err());
    }

    /// A RowDescription for a statement past those judged in a simple
    /// Query (the server split the text otherwise than airlock did) ends
    /// the session instead of passing rows unplanned, and so unmasked.
    #[test]
    fn a_result_past_the_judged_statements_ends_the_session() {
        let q: Expectations<()> = Expectations::default();
        let mut t: Tracker<()> = Tracker::default();
        q.push(Expect::Simple {
            plans: Arc::from(vec![None]),
        });
        let rd = b"\0\x01a\0\0\0\0\0\0\x01\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0";
        assert!(t.on_message(&q, b'T', rd).is_ok());
        assert!(t.on_message(&q, b'C', b"SELECT 1\0").is_ok());
        assert!(t.on_message(&q, b'T', rd).is_err());
    }

    /// A simple Query's COPY FROM STDIN, and what the client sent during it.
    fn simple_copy_with(during: Vec<Expect<()>>) -> Result<(), OutOfStep> {
        let q: Expectations<()> = Expectations::default();
        let mut t: Tracker<()> = Tracker::counting();
        q.push(Expect::Simple {
            plans: Arc::from(vec![None]),
        });
        for e in during {
            q.push(e);
        }
        q.push(Expect::CopyEnd);
        q.push(Expect::Simple {
            plans: Arc::from(vec![None]),
        });
        t.on_message(&q, b'G', b"")?;
        t.on_message(&q, b'C', b"COPY 0\0")?;
        t.on_message(&q, b'Z', b"I")?;
        Ok(())
    }

    #[test]
    fn requests_sent_during_a_simple_querys_copy_in_end_the_session() {
        // Nothing in between: fine, and the next Query is next in line.
        assert!(simple_copy_with(Vec::new()).is_ok());
        // The server ignores this Sync (or answers it, after an error):
        // either way the replies would be matched to the wrong requests.
        assert!(simple_copy_with(vec![Expect::Sync]).is_err());
        assert!(simple_copy_with(vec![Expect::Simple {
            plans: Arc::from(vec![None]),
        }])
        .is_err());
        assert!(simple_copy_with(vec![Expect::Completion, Expect::Sync]).is_err());
    }
}
