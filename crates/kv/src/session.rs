//! Exactly-once: the table of client sessions (Raft thesis §6.3). For each
//! client it keeps the number of the last request applied and its answer,
//! so a retried request is answered from the table and never applied twice.
//!
//! The table is bounded. A session expires once the replicated clock (the
//! maximum leader stamp of the entries applied, never a local clock) passes
//! its last activity by `ttl_ms`; beyond `max_sessions`, the least recently
//! active session goes first. Both depend only on the applied log, so every
//! replica expires the same sessions at the same entry.
//!
//! A request from an unknown client is applied only if the client never had
//! a write answered (`resumed` is false); otherwise its session must have
//! expired and it gets [`crate::Outcome::SessionExpired`] (its request may
//! or may not have been applied before: the caller cannot know, so it is
//! told). One case stays open, as in any TTL scheme: a first write applied,
//! its answer lost, and the client silent past the TTL before retrying.
//! The TTL (minutes) is far above a clerk's retry interval.
//!
//! Invariants: `by_activity` holds exactly one `(last_active_ms, client)`
//! per session; `len() <= max_sessions`.

use crate::chunked::ChunkMap;
use crate::command::Outcome;

/// The bit a server sets in the session ids it mints for plain,
/// session-less requests (one fresh id per request). Clients' ids keep it
/// clear: the servers refuse a client's id with it set.
pub const SERVER_MINTED: u64 = 1 << 63;

/// Whether `client` is a session id a server minted for one plain
/// request ([`SERVER_MINTED`]). A duplicate in such a session is that
/// server's own resend of the same command bytes, never another caller's.
pub fn minted_by_server(client: u64) -> bool {
    client & SERVER_MINTED != 0
}

/// One client's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) last_seq: u64,
    pub(crate) reply: Outcome,
    pub(crate) last_active_ms: u64,
}

/// The limits of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Idle time, on the replicated clock, after which a session expires.
    pub ttl_ms: u64,
    /// The most sessions kept.
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            ttl_ms: 10 * 60 * 1000,
            max_sessions: 100_000,
        }
    }
}

/// What the table says about an incoming request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A new request: apply it.
    Apply,
    /// Already applied: this is its answer.
    Duplicate(Outcome),
    /// Older than the last applied, or from an expired session.
    Expired,
}

/// The session table. See the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    pub(crate) limits: SessionLimits,
    pub(crate) map: ChunkMap<u64, Session>,
    /// `(last_active_ms, client)` of every session, oldest first.
    pub(crate) by_activity: ChunkMap<(u64, u64), ()>,
}

impl Sessions {
    /// An empty table.
    pub fn new(limits: SessionLimits) -> Sessions {
        Sessions {
            limits,
            ..Sessions::default()
        }
    }

    /// The number of live sessions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The last request number applied for `client`.
    pub fn last_seq(&self, client: u64) -> Option<u64> {
        self.map.get(&client).map(|s| s.last_seq)
    }

    /// Decides what to do with request `seq` of `client` (`resumed`: the
    /// client had a write answered before).
    pub fn admit(&self, client: u64, seq: u64, resumed: bool) -> Admission {
        match self.map.get(&client) {
            None if !resumed => Admission::Apply,
            None => Admission::Expired,
            Some(s) if seq == s.last_seq => Admission::Duplicate(s.reply.clone()),
            Some(s) if seq > s.last_seq => Admission::Apply,
            Some(_) => Admission::Expired,
        }
    }

    /// Records that request `seq` of `client` was applied at clock `now_ms`
    /// with answer `reply`.
    pub fn record(&mut self, client: u64, seq: u64, reply: Outcome, now_ms: u64) {
        if let Some(old) = self.map.get(&client) {
            self.by_activity.remove(&(old.last_active_ms, client));
        }
        self.map.insert(
            client,
            Session {
                last_seq: seq,
                reply,
                last_active_ms: now_ms,
            },
        );
        self.by_activity.insert((now_ms, client), ());
        while self.map.len() > self.limits.max_sessions {
            self.evict_oldest();
        }
    }

    /// Expires the sessions idle for longer than the TTL at `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        while let Some((&(t, _), _)) = self.by_activity.first_key_value() {
            if t.saturating_add(self.limits.ttl_ms) >= now_ms {
                break;
            }
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(((_, client), ())) = self.by_activity.pop_first() {
            self.map.remove(&client);
        }
    }

    /// Rebuilds the activity index after decoding `map`.
    pub(crate) fn reindex(&mut self) {
        self.by_activity = self
            .map
            .iter()
            .map(|(&c, s)| ((s.last_active_ms, c), ()))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Response;

    fn ok(rev: u64) -> Outcome {
        Outcome::Ok {
            revision: rev,
            response: Response::Written,
        }
    }

    #[test]
    fn duplicates_are_answered_from_the_table() {
        let mut s = Sessions::new(SessionLimits::default());
        assert_eq!(s.admit(7, 3, false), Admission::Apply);
        assert_eq!(s.admit(7, 3, true), Admission::Expired, "resumed, unknown");
        s.record(7, 3, ok(1), 0);
        assert_eq!(s.admit(7, 3, true), Admission::Duplicate(ok(1)));
        assert_eq!(s.admit(7, 4, true), Admission::Apply);
        s.record(7, 4, ok(2), 0);
        assert_eq!(s.admit(7, 3, true), Admission::Expired);
    }

    #[test]
    fn sessions_expire_on_the_replicated_clock_and_by_count() {
        let limits = SessionLimits {
            ttl_ms: 100,
            max_sessions: 2,
        };
        let mut s = Sessions::new(limits);
        s.record(1, 1, ok(1), 0);
        s.record(2, 1, ok(2), 50);
        s.expire(100);
        assert_eq!(s.len(), 2, "idle for exactly the ttl is not expired");
        s.expire(101);
        assert_eq!(s.last_seq(1), None);
        assert_eq!(s.last_seq(2), Some(1));
        s.record(3, 1, ok(3), 60);
        s.record(4, 1, ok(4), 70);
        assert_eq!(s.len(), 2);
        assert_eq!(s.last_seq(2), None, "least recently active evicted first");
        assert_eq!(s.by_activity.len(), 2);
    }
}
