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
//! so the expectations before the Sync are dropped. Notices, notifications
//! and ParameterStatus can arrive anywhere and are not requests' replies.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A statement's result plan (what to do with each output column), opaque here.
pub type Plan<P> = Option<Arc<P>>;

/// What one client request will produce.
#[derive(Debug)]
pub enum Expect<P> {
    /// A simple Query: one plan per statement, in order.
    Simple {
        plans: Vec<Plan<P>>,
    },
    /// Parse, Bind or Close: one completion message.
    Completion,
    /// Describe of a statement: remember its RowDescription under this name.
    DescribeStatement {
        name: Vec<u8>,
    },
    DescribePortal,
    /// Execute of a portal bound from `statement`, with Bind's result formats.
    Execute {
        plan: Plan<P>,
        statement: Vec<u8>,
        formats: Arc<Vec<i16>>,
    },
    Sync,
    FunctionCall,
}

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
    /// RowDescriptions of described statements, by name.
    described: HashMap<Vec<u8>, Arc<Vec<u8>>>,
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
            described: HashMap::new(),
        }
    }
}

impl<P> Tracker<P> {
    /// Advances on one server message (tag and body).
    pub fn on_message(
        &mut self,
        queue: &Expectations<P>,
        tag: u8,
        body: &[u8],
    ) -> Result<(), OutOfStep> {
        let mut q = queue.lock();
        let out_of_step = || OutOfStep(char::from(tag));
        match tag {
            // Asynchronous messages, and rows of the active result.
            b'N' | b'A' | b'S' | b'D' | b'd' | b'c' | b'G' | b'H' | b'W' => {}
            b'1' | b'2' | b'3' => match q.pop_front() {
                Some(Expect::Completion) => {}
                _ => return Err(out_of_step()),
            },
            b't' if !matches!(q.front(), Some(Expect::DescribeStatement { .. })) => {
                return Err(out_of_step());
            }
            b'T' => match q.front() {
                Some(Expect::Simple { plans }) => {
                    self.active =
                        plans
                            .get(self.simple_index)
                            .cloned()
                            .flatten()
                            .map(|plan| Active {
                                plan,
                                row_description: Some(Arc::new(body.to_vec())),
                                formats: Arc::new(row_description_formats(body)),
                            });
                }
                Some(Expect::DescribeStatement { .. }) => {
                    if let Some(Expect::DescribeStatement { name }) = q.pop_front() {
                        self.described.insert(name, Arc::new(body.to_vec()));
                    }
                }
                Some(Expect::DescribePortal) => {
                    q.pop_front();
                }
                _ => return Err(out_of_step()),
            },
            b'n' => match q.pop_front() {
                Some(Expect::DescribeStatement { name }) => {
                    self.described.remove(&name);
                }
                Some(Expect::DescribePortal) => {}
                _ => return Err(out_of_step()),
            },
            // End of one statement's result.
            b'C' | b'I' | b's' => {
                self.active = None;
                match q.front() {
                    Some(Expect::Simple { .. }) => self.simple_index += 1,
                    Some(Expect::Execute { .. }) => {
                        q.pop_front();
                    }
                    _ => return Err(out_of_step()),
                }
            }
            b'E' => {
                self.active = None;
                match q.front() {
                    Some(Expect::Simple { .. }) => self.simple_failed = true,
                    Some(Expect::FunctionCall) => {}
                    // Extended protocol: the server skips to Sync.
                    _ => {
                        while matches!(q.front(), Some(e) if !matches!(e, Expect::Sync)) {
                            q.pop_front();
                        }
                    }
                }
            }
            b'V' => {}
            b'Z' => {
                self.active = None;
                self.simple_index = 0;
                self.simple_failed = false;
                match q.pop_front() {
                    Some(Expect::Simple { .. } | Expect::Sync | Expect::FunctionCall) => {}
                    _ => return Err(out_of_step()),
                }
            }
            _ => {}
        }
        // An Execute now at the front streams its rows next (there is no
        // RowDescription in the extended protocol's Execute reply).
        if self.active.is_none() {
            if let Some(Expect::Execute {
                plan: Some(plan),
                statement,
                formats,
            }) = q.front()
            {
                self.active = Some(Active {
                    plan: Arc::clone(plan),
                    row_description: self.described.get(statement).cloned(),
                    formats: Arc::clone(formats),
                });
            }
        }
        Ok(())
    }
}

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
