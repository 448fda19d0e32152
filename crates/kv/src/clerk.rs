//! The client side ("clerk"): an I/O-free state machine that numbers a
//! client's requests, picks a server, and retries on a timeout or a
//! `WrongLeader` answer (going to the leader named in the answer when
//! there is one) until a server answers. The driver sends what it says to
//! send, delivers replies, and calls [`Clerk::on_timer`] at
//! [`Clerk::deadline`]. Time is whatever unit the driver's `now` uses.
//!
//! Invariants:
//! - at most one request is in flight, and its `seq` is one more than the
//!   previous request's: the server's session table relies on it;
//! - a retry resends the same request (same `seq`), so it is applied at most
//!   once whichever server gets it;
//! - after a full round of servers answering `WrongLeader` without a new
//!   leader to try, the clerk waits `backoff` before the next attempt, so a
//!   cluster without a leader is not flooded.

use bytes::Bytes;
use thiserror::Error;

use crate::command::{ClientMsg, Op, Outcome, ReadConsistency, Reply, Request, Response};

/// Timing of a clerk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClerkConfig {
    /// How long to wait for an answer before trying another server.
    pub retry_timeout: u64,
    /// How long to wait after a round of `WrongLeader` answers.
    pub backoff: u64,
}

/// A message for the driver to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Send {
    /// The server's address.
    pub to: u64,
    /// The encoded [`ClientMsg`].
    pub msg: Bytes,
}

/// Why a request failed for good.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ClerkError {
    /// The server no longer has this client's session: the request may or
    /// may not have taken effect.
    #[error("client {client}: session expired; request {seq} may or may not have been applied")]
    SessionExpired {
        /// The client.
        client: u64,
        /// The request.
        seq: u64,
    },
    /// The replicas refused the request as invalid; it changed nothing.
    #[error("client {client}: request {seq} was refused: {refusal}")]
    Refused {
        /// The client.
        client: u64,
        /// The request.
        seq: u64,
        /// Why.
        refusal: crate::check::Refusal,
    },
    /// A request is already in flight.
    #[error("client {client}: request {seq} is still in flight")]
    Busy {
        /// The client.
        client: u64,
        /// The request in flight.
        seq: u64,
    },
}

/// What a reply did to the clerk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClerkStep {
    /// Nothing (a stale or garbled reply).
    Nothing,
    /// Retry: send this now.
    Send(Send),
    /// Wait until [`Clerk::deadline`], then call [`Clerk::on_timer`].
    Wait,
    /// The request completed: the store's revision and the answer.
    Done(Result<(u64, Response), ClerkError>),
}

#[derive(Clone, Debug)]
struct InFlight {
    req: Request,
    to: usize,
    deadline: u64,
    wrong_in_a_row: usize,
}

/// A client of one KV group. See the module docs.
#[derive(Clone, Debug)]
pub struct Clerk {
    cfg: ClerkConfig,
    client: u64,
    seq: u64,
    servers: Vec<u64>,
    leader: usize,
    inflight: Option<InFlight>,
    wrote: bool,
}

impl Clerk {
    /// A clerk with id `client` (unique among the group's clients) for the
    /// servers at `servers`.
    ///
    /// # Panics
    /// If `servers` is empty.
    pub fn new(cfg: ClerkConfig, client: u64, servers: Vec<u64>) -> Clerk {
        assert!(!servers.is_empty(), "a clerk needs at least one server");
        Clerk {
            cfg,
            client,
            seq: 0,
            servers,
            leader: 0,
            inflight: None,
            wrote: false,
        }
    }

    /// The client id.
    pub fn id(&self) -> u64 {
        self.client
    }

    /// Whether a request is in flight.
    pub fn busy(&self) -> bool {
        self.inflight.is_some()
    }

    /// When [`Clerk::on_timer`] is due, if a request is in flight.
    pub fn deadline(&self) -> Option<u64> {
        self.inflight.as_ref().map(|f| f.deadline)
    }

    /// Starts a request; returns what to send.
    pub fn start(&mut self, op: Op, read: ReadConsistency, now: u64) -> Result<Send, ClerkError> {
        if let Some(f) = &self.inflight {
            return Err(ClerkError::Busy {
                client: self.client,
                seq: f.req.seq,
            });
        }
        self.seq += 1;
        let req = Request {
            client: self.client,
            seq: self.seq,
            read,
            resumed: self.wrote,
            op,
        };
        let mut f = InFlight {
            req,
            to: self.leader,
            deadline: 0,
            wrong_in_a_row: 0,
        };
        let send = self.send(&mut f, now);
        self.inflight = Some(f);
        Ok(send)
    }

    fn send(&self, f: &mut InFlight, now: u64) -> Send {
        f.deadline = now + self.cfg.retry_timeout;
        Send {
            to: self.servers[f.to],
            msg: ClientMsg::Request(f.req.clone()).encode(),
        }
    }

    /// A reply arrived from the server at `from`.
    pub fn on_reply(&mut self, from: u64, bytes: &Bytes, now: u64) -> ClerkStep {
        let Ok(Reply {
            client,
            seq,
            outcome,
        }) = Reply::decode(bytes)
        else {
            return ClerkStep::Nothing;
        };
        let Some(mut f) = self.inflight.take() else {
            return ClerkStep::Nothing;
        };
        if client != self.client || seq != f.req.seq {
            self.inflight = Some(f);
            return ClerkStep::Nothing;
        }
        match outcome {
            Outcome::Ok { revision, response } => {
                self.leader = self.servers.iter().position(|&s| s == from).unwrap_or(f.to);
                self.wrote |= !f.req.op.is_read_only();
                ClerkStep::Done(Ok((revision, response)))
            }
            Outcome::SessionExpired => ClerkStep::Done(Err(ClerkError::SessionExpired {
                client: self.client,
                seq,
            })),
            Outcome::Refused(refusal) => ClerkStep::Done(Err(ClerkError::Refused {
                client: self.client,
                seq,
                refusal,
            })),
            Outcome::WrongLeader { leader } => {
                let hint = leader
                    .filter(|&l| l != from)
                    .and_then(|l| self.servers.iter().position(|&s| s == l));
                f.wrong_in_a_row += 1;
                f.to = hint.unwrap_or((f.to + 1) % self.servers.len());
                self.leader = f.to;
                let step = if f.wrong_in_a_row.is_multiple_of(self.servers.len()) {
                    f.deadline = now + self.cfg.backoff;
                    ClerkStep::Wait
                } else {
                    ClerkStep::Send(self.send(&mut f, now))
                };
                self.inflight = Some(f);
                step
            }
        }
    }

    /// Time passed: if the request's deadline is reached, retry it at the
    /// next server (or, after a backoff, at the chosen one).
    pub fn on_timer(&mut self, now: u64) -> Option<Send> {
        let mut f = self.inflight.take()?;
        if now < f.deadline {
            self.inflight = Some(f);
            return None;
        }
        let backed_off =
            f.wrong_in_a_row > 0 && f.wrong_in_a_row.is_multiple_of(self.servers.len());
        if !backed_off {
            f.to = (f.to + 1) % self.servers.len();
            self.leader = f.to;
        }
        f.wrong_in_a_row = 0;
        let send = self.send(&mut f, now);
        self.inflight = Some(f);
        Some(send)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: ClerkConfig = ClerkConfig {
        retry_timeout: 100,
        backoff: 10,
    };

    fn answer(seq: u64, outcome: Outcome) -> Bytes {
        Reply {
            client: 7,
            seq,
            outcome,
        }
        .encode()
    }

    #[test]
    fn follows_the_leader_hint_and_numbers_requests() {
        let mut c = Clerk::new(CFG, 7, vec![1, 2, 3]);
        let s = c
            .start(Op::put("k", "v"), ReadConsistency::Linearizable, 0)
            .unwrap();
        assert_eq!(s.to, 1);
        let step = c.on_reply(1, &answer(1, Outcome::WrongLeader { leader: Some(3) }), 5);
        let ClerkStep::Send(s) = step else {
            panic!("no retry: {step:?}")
        };
        assert_eq!(s.to, 3);
        let ok = Outcome::Ok {
            revision: 1,
            response: Response::Written,
        };
        assert_eq!(c.on_reply(3, &answer(0, ok.clone()), 6), ClerkStep::Nothing);
        assert_eq!(
            c.on_reply(3, &answer(1, ok), 7),
            ClerkStep::Done(Ok((1, Response::Written)))
        );
        let s = c
            .start(Op::get("k"), ReadConsistency::Linearizable, 8)
            .unwrap();
        assert_eq!(s.to, 3, "remembers the leader");
        let ClientMsg::Request(r) = ClientMsg::decode(&s.msg).unwrap();
        assert_eq!(r.seq, 2);
    }

    #[test]
    fn times_out_to_the_next_server_and_backs_off_after_a_round() {
        let mut c = Clerk::new(CFG, 7, vec![1, 2]);
        c.start(Op::put("k", "v"), ReadConsistency::Linearizable, 0)
            .unwrap();
        assert!(
            c.start(Op::get("k"), ReadConsistency::Linearizable, 0)
                .is_err()
        );
        assert_eq!(c.on_timer(99), None);
        assert_eq!(c.on_timer(100).map(|s| s.to), Some(2));
        let wrong = answer(1, Outcome::WrongLeader { leader: None });
        assert!(matches!(
            c.on_reply(2, &wrong, 101),
            ClerkStep::Send(Send { to: 1, .. })
        ));
        assert_eq!(c.on_reply(1, &wrong, 102), ClerkStep::Wait);
        assert_eq!(c.deadline(), Some(112));
        assert_eq!(c.on_timer(112).map(|s| s.to), Some(2));
    }
}
