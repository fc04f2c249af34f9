//! [`ServerClient`]: the client core the Redis and PostgreSQL backends share, over
//! [`Protocol`], the statements each server runs.
//!
//! A server call can fail after the server executed it (the reply was lost). The core makes
//! that harmless in the same way for both servers:
//! * **Push.** Every batch carries a batch id, and the server records the id of the last batch
//!   each client stored. When a push fails with its outcome in doubt, the client keeps the
//!   batch's id and items ([`InDoubt`]); a retry that starts with the same items sends the
//!   attempts that apply, and the server skips the items the attempt it recorded stored.
//! * **Push leased.** Every `push_leased` call carries a token (the client id and a number);
//!   the server stores the items only under a token it has not recorded and answers the ids
//!   recorded under it otherwise. A call that fails in doubt is remembered
//!   ([`LeasedInDoubt`]); its retry (the same call number and items) sends the same token, so
//!   it gets the ids of the attempt that landed instead of storing the items again.
//! * **Pop.** The server keeps a copy of what a pop took, and every pop says which earlier pop's
//!   reply arrived: the copy of an answered pop is forgotten, the items of a lost one come
//!   back. Dropping the client settles its last pop the same way.

use super::in_doubt::{InDoubt, LeasedInDoubt, client_id};
use crate::error::{DbError, PushBatchError};
use crate::sync::Mutex;

/// The statements a server runs for the core, and how its errors read.
pub(crate) trait Protocol: Send + Sync {
    /// A connection.
    type Conn: Send;
    /// The client library's error.
    type Error;

    /// Opens a connection.
    fn connect(&self) -> Result<Self::Conn, DbError>;
    /// Whether `conn` is known to be unusable before a call.
    fn is_closed(conn: &Self::Conn) -> bool;
    /// Whether `err` on `conn` broke it (the next call reconnects).
    fn broke(conn: &Self::Conn, err: &Self::Error) -> bool;
    /// Whether a call that failed with `err` may have taken effect on the server anyway.
    fn in_doubt(err: &Self::Error) -> bool;
    /// The error a call reports for `err`.
    fn error(&self, err: Self::Error) -> DbError;

    /// Stores `items` (oldest first) as batch `batch` of `client`, skipping the leading items
    /// the attempt the server recorded among `attempts` ((batch id, items stored)) stored.
    fn push(
        &self,
        conn: &mut Self::Conn,
        client: &str,
        batch: i64,
        attempts: &[(i64, i64)],
        items: &[&[u8]],
    ) -> Result<(), Self::Error>;

    /// Settles `client`'s pop `acked` (its reply arrived; any other earlier pop's items come
    /// back), then takes up to `max` items, newest first, as pop `seq` (`acked_and_seq`),
    /// keeping a copy.
    fn pop(
        &self,
        conn: &mut Self::Conn,
        client: &str,
        acked_and_seq: (i64, i64),
        max: usize,
    ) -> Result<Popped, Self::Error>;

    /// Puts the leases past their deadline back on top, for a server whose pop cannot do it
    /// itself ([`Popped::expired_first`]). Default: nothing to do.
    fn return_expired(&self, conn: &mut Self::Conn) -> Result<(), Self::Error> {
        let _ = conn;
        Ok(())
    }

    /// Settles `client`'s pops for good (pop `acked` answered, any later one lost) and
    /// forgets the client: its last call.
    fn release(&self, conn: &mut Self::Conn, client: &str, acked: i64) -> Result<(), Self::Error>;
}

/// What one pop statement took.
pub(crate) struct Popped {
    /// The items, newest first.
    pub(crate) items: Vec<Vec<u8>>,
    /// An expired lease waits to come back on top of the stack, so the statement took nothing
    /// new (only items of a lost earlier pop, if any): the client returns the expired leases
    /// ([`Protocol::return_expired`]) and asks again.
    pub(crate) expired_first: bool,
}

/// How many times a pop returns expired leases and asks again before it gives up for this
/// call (each time, other clients' leases may have expired meanwhile).
const EXPIRED_RETRIES: usize = 4;

/// The connection and what the client must remember across calls.
struct Session<C> {
    conn: Option<C>,
    /// Last batch id used.
    batch: i64,
    /// A batch whose push failed after it may have reached the server.
    in_doubt: Option<InDoubt>,
    /// Last `push_leased` token number used.
    leased: u64,
    /// The `push_leased` calls that failed after they may have reached the server.
    leased_in_doubt: LeasedInDoubt,
    /// Last pop sequence number used, and the last one whose reply arrived.
    pop_seq: i64,
    pop_acked: i64,
}

/// A call that failed: the error, and whether it may have taken effect.
pub(crate) struct Failed {
    pub(crate) error: DbError,
    pub(crate) in_doubt: bool,
}

/// One client of a server: a random id, one connection, and the session's bookkeeping.
pub(crate) struct ServerClient<P: Protocol> {
    protocol: P,
    id: String,
    session: Mutex<Session<P::Conn>>,
}

impl<P: Protocol> ServerClient<P> {
    /// A client speaking `protocol`, over `conn` if one is open already.
    pub(crate) fn new(protocol: P, conn: Option<P::Conn>) -> Self {
        ServerClient {
            protocol,
            id: client_id(),
            session: Mutex::new(Session {
                conn,
                batch: 0,
                in_doubt: None,
                leased: 0,
                leased_in_doubt: LeasedInDoubt::default(),
                pop_seq: 0,
                pop_acked: 0,
            }),
        }
    }

    /// The protocol (the server's settings).
    pub(crate) fn protocol(&self) -> &P {
        &self.protocol
    }

    /// The protocol, to change its settings before the first call.
    pub(crate) fn protocol_mut(&mut self) -> &mut P {
        &mut self.protocol
    }

    /// The client's random id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Runs `f` on the connection, connecting first if there is none or the last one broke.
    fn call<T>(
        &self,
        session: &mut Session<P::Conn>,
        f: impl FnOnce(&P, &mut P::Conn) -> Result<T, P::Error>,
    ) -> Result<T, Failed> {
        if session.conn.as_ref().is_none_or(P::is_closed) {
            session.conn = None;
            let conn = self.protocol.connect().map_err(|error| Failed {
                error,
                in_doubt: false,
            })?;
            session.conn = Some(conn);
        }
        let Some(conn) = session.conn.as_mut() else {
            let error = DbError::msg("no connection to the server");
            return Err(Failed {
                error,
                in_doubt: false,
            });
        };
        match f(&self.protocol, conn) {
            Ok(value) => Ok(value),
            Err(e) => {
                if P::broke(conn, &e) {
                    session.conn = None; // reconnect on the next call
                }
                Err(Failed {
                    in_doubt: P::in_doubt(&e),
                    error: self.protocol.error(e),
                })
            }
        }
    }

    /// Runs one statement `f` (not a push or a pop: those keep books) on the connection.
    pub(crate) fn run<T>(
        &self,
        f: impl FnOnce(&P, &mut P::Conn) -> Result<T, P::Error>,
    ) -> Result<T, DbError> {
        self.call(&mut self.session.lock(), f)
            .map_err(|failed| failed.error)
    }

    /// Stores `items` in one statement: on error nothing of this attempt is stored, unless
    /// the reply was lost; then a retry of the same items stores only what is missing.
    pub(crate) fn push_batch(&self, items: &[&[u8]]) -> Result<(), PushBatchError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut session = self.session.lock();
        session.batch += 1;
        let batch = session.batch;
        let attempts = InDoubt::attempts_for(session.in_doubt.as_ref(), items);
        let pushed = self.call(&mut session, |p, conn| {
            p.push(conn, &self.id, batch, &attempts, items)
        });
        match pushed {
            Ok(()) => {
                session.in_doubt = None;
                Ok(())
            }
            Err(Failed { error, in_doubt }) => {
                if in_doubt && !error.is_permanent() {
                    session.in_doubt = Some(InDoubt::after(attempts, batch, items));
                }
                Err(PushBatchError {
                    stored: 0,
                    source: error,
                })
            }
        }
    }

    /// Stores `items` already leased with one statement `f`, which gets the call's token: the
    /// statement must store nothing and answer the ids recorded under a token it knows, and
    /// record the ids it stores under a new one. A retry of a call that failed in doubt (the
    /// same `call` number and items) sends that call's token, so it gets the first attempt's
    /// ids instead of storing the items twice. Any other failure keeps the books as they were
    /// (an earlier attempt in doubt may still have landed).
    pub(crate) fn push_leased<T>(
        &self,
        items: &[&[u8]],
        call: u64,
        f: impl FnOnce(&P, &mut P::Conn, &str) -> Result<T, P::Error>,
    ) -> Result<T, DbError> {
        let mut session = self.session.lock();
        let number = match session.leased_in_doubt.token_for(call, items) {
            Some(number) => number,
            None => {
                session.leased += 1;
                session.leased
            }
        };
        let token = format!("{}:{number}", self.id);
        match self.call(&mut session, |p, conn| f(p, conn, &token)) {
            Ok(value) => {
                session.leased_in_doubt.forget(call, items);
                Ok(value)
            }
            Err(Failed { error, in_doubt }) => {
                if in_doubt {
                    session.leased_in_doubt.remember(call, items, number);
                }
                Err(error)
            }
        }
    }

    /// Takes up to `max` items in one statement, newest first; items of an earlier pop whose
    /// reply was lost come first. A leased item past its deadline comes back on top first (two
    /// more round trips, only then).
    pub(crate) fn pop_batch(&self, max: usize) -> Result<Vec<Vec<u8>>, DbError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut session = self.session.lock();
        for _ in 0..EXPIRED_RETRIES {
            session.pop_seq += 1;
            let seqs = (session.pop_acked, session.pop_seq);
            let popped = self
                .call(&mut session, |p, conn| p.pop(conn, &self.id, seqs, max))
                .map_err(|failed| failed.error)?;
            if popped.items.len() > max {
                // The server took more than asked (a statement that misbehaves under some
                // plan). Handing back only `max` would lose the rest; leaving this pop
                // unacknowledged makes the next pops return all it took, as after a lost reply.
                return Err(DbError::msg(format!(
                    "the server took {} items for a pop of at most {max}; they are kept, and \
                     the next pops return them",
                    popped.items.len()
                )));
            }
            session.pop_acked = seqs.1;
            if popped.expired_first {
                self.call(&mut session, |p, conn| p.return_expired(conn))
                    .map_err(|failed| failed.error)?;
                if popped.items.is_empty() {
                    continue; // the expired leases are on top now: ask again
                }
            }
            return Ok(popped.items);
        }
        Ok(Vec::new())
    }

    /// Runs `f` with `return_expired` between tries while `f` says an expired lease must come
    /// back on top first (`Ok(None)`), at most a few times; `Ok(None)` from the last try is an
    /// empty answer. For a lease statement, which has the same rule as a pop.
    pub(crate) fn run_after_expired<T: Default>(
        &self,
        mut f: impl FnMut(&P, &mut P::Conn) -> Result<Option<T>, P::Error>,
    ) -> Result<T, DbError> {
        let mut session = self.session.lock();
        for _ in 0..EXPIRED_RETRIES {
            let answer = self
                .call(&mut session, &mut f)
                .map_err(|failed| failed.error)?;
            match answer {
                Some(value) => return Ok(value),
                None => self
                    .call(&mut session, |p, conn| p.return_expired(conn))
                    .map_err(|failed| failed.error)?,
            }
        }
        Ok(T::default())
    }
}

impl<P: Protocol> Drop for ServerClient<P> {
    /// Best effort: settles the last pop (its items come back if its reply was lost) and
    /// forgets the client on the server. Reconnects for it only when a pop's reply was lost.
    fn drop(&mut self) {
        let mut session = self.session.lock();
        let live = session.conn.as_ref().is_some_and(|c| !P::is_closed(c));
        if live || session.pop_seq != session.pop_acked {
            let acked = session.pop_acked;
            let _ = self.call(&mut session, |p, conn| p.release(conn, &self.id, acked));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Popped, Protocol, ServerClient};
    use crate::error::DbError;

    /// A server whose first pop takes three items whatever it is asked for; records the
    /// (acknowledged, this) pop numbers of every pop.
    #[derive(Default)]
    struct Greedy {
        pops: std::sync::Mutex<Vec<(i64, i64)>>,
    }

    impl Protocol for Greedy {
        type Conn = ();
        type Error = DbError;
        fn connect(&self) -> Result<(), DbError> {
            Ok(())
        }
        fn is_closed(_: &()) -> bool {
            false
        }
        fn broke(_: &(), _: &DbError) -> bool {
            false
        }
        fn in_doubt(_: &DbError) -> bool {
            false
        }
        fn error(&self, err: DbError) -> DbError {
            err
        }
        fn push(
            &self,
            _: &mut (),
            _: &str,
            _: i64,
            _: &[(i64, i64)],
            _: &[&[u8]],
        ) -> Result<(), DbError> {
            Ok(())
        }
        fn pop(&self, _: &mut (), _: &str, seqs: (i64, i64), _: usize) -> Result<Popped, DbError> {
            let mut pops = self.pops.lock().map_err(|_| DbError::msg("poisoned"))?;
            pops.push(seqs);
            let items = if pops.len() == 1 {
                vec![vec![3], vec![2], vec![1]]
            } else {
                Vec::new()
            };
            Ok(Popped {
                items,
                expired_first: false,
            })
        }
        fn release(&self, _: &mut (), _: &str, _: i64) -> Result<(), DbError> {
            Ok(())
        }
    }

    #[test]
    fn a_pop_answered_with_more_than_it_asked_stays_unacknowledged() {
        let client = ServerClient::new(Greedy::default(), Some(()));
        let err = client
            .pop_batch(1)
            .expect_err("three items for a pop of one");
        assert!(err.to_string().contains("took 3 items"), "{err}");
        assert_eq!(
            client.pop_batch(1).expect("second pop"),
            Vec::<Vec<u8>>::new()
        );
        let pops = client.protocol().pops.lock().expect("pops").clone();
        // The second pop says the first was not answered, so the server returns its items.
        assert_eq!(pops, vec![(0, 1), (0, 2)]);
    }
}
