//! Following a server reply packet by packet, to know where it ends (the
//! protocol has no end marker common to all replies) and to pick out what
//! airlock tracks (prepared statement ids).
//!
//! airlock never negotiates `CLIENT_DEPRECATE_EOF`, so column definitions
//! are always followed by an EOF packet and result sets end with EOF (or
//! ERR). `SERVER_MORE_RESULTS_EXISTS` in a final OK/EOF means another result
//! follows (multi-statements, CALL).

use airlock_protocol::mysql::frame;
use airlock_protocol::mysql::packets::{self, is_eof, status_flags};
use airlock_protocol::mysql::status;
use airlock_protocol::mysql::wire::Reader;

/// The shape of reply a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// One packet (OK, ERR, EOF or a string).
    Single,
    /// COM_QUERY: result sets (text rows), OK or ERR, maybe several.
    Query,
    /// COM_STMT_EXECUTE: as Query with binary rows; a cursor stops after
    /// the column definitions.
    Execute,
    /// COM_STMT_FETCH: rows, then EOF.
    Fetch,
    /// COM_STMT_PREPARE: PREPARE_OK with parameter and column definitions.
    Prepare,
    /// COM_FIELD_LIST: column definitions, then EOF.
    FieldList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    First,
    Columns(u64),
    ColumnsEof,
    Rows,
    PrepParams(u16, u16),
    PrepParamsEof(u16),
    PrepCols(u16),
    PrepColsEof,
    Done,
}

/// What the last packet was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More packets follow.
    More,
    /// A result set's column count: a new result set starts.
    ColumnCount,
    /// A column definition (of a result set or a COM_STMT_PREPARE_OK's
    /// columns; not parameters, not COM_FIELD_LIST).
    Column,
    /// A result set row (text or binary).
    Row,
    /// The reply is complete.
    Done,
    /// The server asks for a local file (never forwarded).
    LocalInfile,
}

#[derive(Debug)]
pub struct Tracker {
    expect: Expect,
    state: State,
    /// The statement id from a successful COM_STMT_PREPARE.
    pub prepared: Option<u32>,
    /// Whether the reply (or its last result) was an ERR.
    pub error: bool,
    /// Rows returned plus rows affected (OK packets), for the audit log.
    pub rows: u64,
    /// A COM_STMT_EXECUTE reply that opened a cursor (its rows come with
    /// COM_STMT_FETCH).
    pub cursor: bool,
}

impl Tracker {
    pub fn new(expect: Expect) -> Self {
        let state = match expect {
            Expect::Fetch => State::Rows,
            _ => State::First,
        };
        Tracker {
            expect,
            state,
            prepared: None,
            error: false,
            rows: 0,
            cursor: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Walks the rows at the start of `buf` while the reply is in a result
    /// set's rows, as [`Self::feed`] would (each one a [`Step::Row`]):
    /// the bytes walked and the last row's sequence id, `None` when none
    /// was. Stops before anything that is not a complete, plain row of one
    /// physical packet of at most `max` bytes (EOF, ERR, anything starting
    /// like them, an empty packet, a 16 MiB packet, an incomplete one):
    /// that goes through [`Self::feed`].
    pub fn pass_rows(&mut self, buf: &[u8], max: usize) -> Option<(usize, u8)> {
        if self.state != State::Rows {
            return None;
        }
        let mut at = 0;
        let mut seq = None;
        while let Some(h) = buf.get(at..at + 4) {
            let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
            if len >= frame::MAX_PAYLOAD || len > max {
                break;
            }
            let end = at + 4 + len;
            match buf.get(at + 4) {
                Some(&first)
                    if end <= buf.len() && first != packets::ERR && first != packets::EOF => {}
                _ => break,
            }
            self.rows += 1;
            seq = Some(h[3]);
            at = end;
        }
        seq.map(|s| (at, s))
    }

    /// Feeds the next logical packet's payload.
    pub fn feed(&mut self, p: &[u8]) -> Result<Step, String> {
        let first = *p.first().ok_or("empty packet in a reply")?;
        let more = |p: &[u8]| status_flags(p).is_some_and(|s| s & status::MORE_RESULTS_EXISTS != 0);
        let (next, step) = match (self.state, self.expect) {
            (State::Done, _) => return Err("packet after the end of a reply".into()),
            (_, Expect::Single) => (State::Done, Step::Done),
            (State::First, _) | (State::Rows, _) | (State::ColumnsEof, _)
                if first == packets::ERR =>
            {
                self.error = true;
                (State::Done, Step::Done)
            }
            (State::First, Expect::Prepare) => {
                let mut r = Reader::new(p);
                r.u8();
                let (Some(id), Some(cols), Some(params)) = (r.u32(), r.u16(), r.u16()) else {
                    return Err("malformed COM_STMT_PREPARE_OK".into());
                };
                self.prepared = Some(id);
                match (params, cols) {
                    (0, 0) => (State::Done, Step::Done),
                    (0, c) => (State::PrepCols(c), Step::More),
                    (n, c) => (State::PrepParams(n, c), Step::More),
                }
            }
            (State::PrepParams(n, c), _) => match n {
                1 => (State::PrepParamsEof(c), Step::More),
                _ => (State::PrepParams(n - 1, c), Step::More),
            },
            (State::PrepParamsEof(c), _) if is_eof(p) => match c {
                0 => (State::Done, Step::Done),
                c => (State::PrepCols(c), Step::More),
            },
            (State::PrepCols(n), _) => match n {
                1 => (State::PrepColsEof, Step::Column),
                _ => (State::PrepCols(n - 1), Step::Column),
            },
            (State::PrepColsEof, _) if is_eof(p) => (State::Done, Step::Done),
            (State::First, Expect::FieldList) if is_eof(p) => (State::Done, Step::Done),
            (State::First, Expect::FieldList) => (State::First, Step::More),
            (State::First, _) if first == packets::OK => {
                self.error = false;
                let mut r = Reader::new(p);
                r.u8();
                self.rows = self.rows.saturating_add(r.lenenc().unwrap_or(0));
                match more(p) {
                    true => (State::First, Step::More),
                    false => (State::Done, Step::Done),
                }
            }
            (State::First, Expect::Query) if first == packets::LOCAL_INFILE => {
                // The server's OK/ERR for the (empty) file comes next.
                (State::First, Step::LocalInfile)
            }
            (State::First, _) => {
                let n = Reader::new(p)
                    .lenenc()
                    .filter(|&n| n > 0)
                    .ok_or("malformed column count")?;
                (State::Columns(n), Step::ColumnCount)
            }
            (State::Columns(n), _) => match n {
                1 => (State::ColumnsEof, Step::Column),
                _ => (State::Columns(n - 1), Step::Column),
            },
            (State::ColumnsEof, _) if is_eof(p) => {
                let cursor = status_flags(p).is_some_and(|s| s & status::CURSOR_EXISTS != 0);
                if self.expect == Expect::Execute && cursor {
                    self.cursor = true;
                    (State::Done, Step::Done)
                } else {
                    (State::Rows, Step::More)
                }
            }
            (State::Rows, _) if is_eof(p) => match more(p) && self.expect != Expect::Fetch {
                true => (State::First, Step::More),
                false => (State::Done, Step::Done),
            },
            (State::Rows, _) => (State::Rows, Step::Row),
            (s, e) => {
                return Err(format!(
                    "unexpected packet {first:#04x} in state {s:?} of a {e:?} reply"
                ))
            }
        };
        self.state = next;
        if step == Step::Row {
            self.rows += 1;
        }
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn ok(status: u16) -> Vec<u8> {
        let mut b = BytesMut::new();
        packets::ok(&mut b, 1, 0, status, 0);
        b.to_vec()
    }
    fn eof(status: u16) -> Vec<u8> {
        let mut b = BytesMut::new();
        packets::eof(&mut b, 0, status);
        b.to_vec()
    }
    fn run(t: &mut Tracker, ps: &[Vec<u8>]) -> Vec<Step> {
        ps.iter().map(|p| t.feed(p).unwrap()).collect()
    }

    #[test]
    fn query_result_set_then_more_results() {
        let mut t = Tracker::new(Expect::Query);
        let steps = run(
            &mut t,
            &[
                vec![1],
                b"\x03defcol".to_vec(),
                eof(0),
                b"\x011".to_vec(),
                b"\x012".to_vec(),
                eof(status::MORE_RESULTS_EXISTS),
                ok(0),
            ],
        );
        assert_eq!(
            steps,
            [
                Step::ColumnCount,
                Step::Column,
                Step::More,
                Step::Row,
                Step::Row,
                Step::More,
                Step::Done
            ]
        );
        assert!(t.is_done());
        assert_eq!(t.rows, 2 + 1);
        assert!(t.feed(&ok(0)).is_err());
    }

    #[test]
    fn err_and_ok_end_a_query() {
        let mut t = Tracker::new(Expect::Query);
        assert_eq!(t.feed(b"\xff\x10\x04#42000no").unwrap(), Step::Done);
        assert!(t.error);
        let mut t = Tracker::new(Expect::Query);
        assert_eq!(t.feed(&ok(0)).unwrap(), Step::Done);
        let mut t = Tracker::new(Expect::Query);
        assert_eq!(t.feed(b"\xfb/etc/passwd").unwrap(), Step::LocalInfile);
    }

    #[test]
    fn prepare_ok_with_params_and_columns() {
        let mut t = Tracker::new(Expect::Prepare);
        let mut prep = vec![0, 7, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0];
        assert_eq!(t.feed(&prep).unwrap(), Step::More);
        assert_eq!(t.prepared, Some(7));
        let steps = run(
            &mut t,
            &[
                b"p1".to_vec(),
                b"p2".to_vec(),
                eof(0),
                b"c1".to_vec(),
                eof(0),
            ],
        );
        assert_eq!(steps.last(), Some(&Step::Done));
        // No params, no columns: done at once.
        prep[5..9].fill(0);
        let mut t = Tracker::new(Expect::Prepare);
        assert_eq!(t.feed(&prep).unwrap(), Step::Done);
    }

    #[test]
    fn execute_with_cursor_stops_after_columns() {
        let mut t = Tracker::new(Expect::Execute);
        let steps = run(
            &mut t,
            &[vec![1], b"col".to_vec(), eof(status::CURSOR_EXISTS)],
        );
        assert_eq!(steps.last(), Some(&Step::Done));
        assert!(t.cursor);
        let mut t = Tracker::new(Expect::Execute);
        run(&mut t, &[vec![1], b"col".to_vec(), eof(0), eof(0)]);
        assert!(t.is_done() && !t.cursor);
        let mut t = Tracker::new(Expect::Fetch);
        let steps = run(&mut t, &[vec![0, 0, 1], eof(status::CURSOR_EXISTS)]);
        assert_eq!(steps, [Step::Row, Step::Done]);
    }

    /// Frames payloads as packets with sequence ids from 1.
    fn framed(ps: &[Vec<u8>]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for (i, p) in ps.iter().enumerate() {
            frame::write_packet(&mut out, i as u8 + 1, p);
        }
        out.to_vec()
    }

    #[test]
    fn pass_rows_walks_what_feed_would_call_rows() {
        let rows = [b"\x011".to_vec(), b"\x0212".to_vec(), vec![0xfb]];
        let mut t = Tracker::new(Expect::Query);
        // Not in the rows yet.
        assert_eq!(t.pass_rows(&framed(&rows), 1 << 20), None);
        run(&mut t, &[vec![1], b"col".to_vec(), eof(0)]);
        let mut all = rows.to_vec();
        all.push(eof(0));
        let buf = framed(&all);
        let (n, seq) = t.pass_rows(&buf, 1 << 20).unwrap();
        assert_eq!((n, seq, t.rows), (6 + 7 + 5, 3, 3));
        // The EOF is left to `feed`; then there is nothing to walk.
        assert_eq!(t.pass_rows(&buf[n..], 1 << 20), None);
        assert_eq!(t.feed(&eof(0)).unwrap(), Step::Done);
        assert_eq!(t.pass_rows(&buf, 1 << 20), None);

        // Incomplete, ERR, empty, over the limit: left to `feed`.
        for (rows, max) in [
            (vec![b"\x011".to_vec()], 1 << 20),
            (vec![b"\xff\x10\x04#42000no".to_vec()], 1 << 20),
            (vec![vec![]], 1 << 20),
            (vec![b"\x011".to_vec()], 1),
        ] {
            let mut t = Tracker::new(Expect::Query);
            run(&mut t, &[vec![1], b"col".to_vec(), eof(0)]);
            let mut buf = framed(&rows);
            if rows[0] == b"\x011" && max > 1 {
                buf.pop();
            }
            assert_eq!(t.pass_rows(&buf, max), None, "{rows:?}");
            assert_eq!(t.rows, 0);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut t = Tracker::new(Expect::Query);
        assert!(t.feed(&[]).is_err());
        assert!(t.feed(&[0xfc]).is_err());
    }
}
