//! The simulated network: which links are up, and what happens to each
//! message (lost, delayed, duplicated, reordered), with the probabilities of
//! the course's labrpc (spec §0.1): on an unreliable network a request waits
//! 0–26 ms and is lost with probability 10 %, a response is lost with
//! probability 10 %, and with long reordering 2/3 of the responses arrive
//! 200–2200 ms late.
//!
//! Addresses are plain `u64`s (Raft node ids, and clients' from
//! [`CLIENT_ADDR_BASE`] on).
//! A link from `a` to `b` is up unless either end is isolated or the pair
//! is blocked. Links are checked both when a message leaves and when it
//! would arrive, so a partition also drops what was in flight.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_raft::rng::SplitMix64;

/// Addresses from here on are clients (member ids are below).
pub const CLIENT_ADDR_BASE: u64 = 1 << 32;

/// One millisecond of virtual time, in nanoseconds.
pub const MS: u64 = 1_000_000;

/// How messages fare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Reliable: no loss and no delay.
    pub reliable: bool,
    /// Delay 2/3 of the responses by 200–2200 ms (the course's "long
    /// reordering").
    pub long_reordering: bool,
    /// Loss of a request on an unreliable network, per mille.
    pub drop_request_per_mille: u64,
    /// Loss of a response on an unreliable network, per mille.
    pub drop_response_per_mille: u64,
    /// Largest delay of a message on an unreliable network.
    pub max_delay_ns: u64,
    /// Duplication of a message on an unreliable network, per mille (not a
    /// course fault; the swarm runner turns it on).
    pub duplicate_per_mille: u64,
    /// Latency of every message, reliable or not (0 by default, as the Raft
    /// tests assume). Services set it so that client operations take
    /// virtual time, as real RPCs do.
    pub base_delay_ns: u64,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            reliable: true,
            long_reordering: false,
            drop_request_per_mille: 100,
            drop_response_per_mille: 100,
            max_delay_ns: 26 * MS,
            duplicate_per_mille: 0,
            base_delay_ns: 0,
        }
    }
}

/// What the network has carried, for the course's RPC and byte limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Request messages sent (every send counts, as labrpc counts every Call).
    pub requests: u64,
    /// Bytes of every message sent.
    pub bytes: u64,
    /// Request messages that reached each address.
    pub delivered_requests: BTreeMap<u64, u64>,
    /// Messages lost to faults or partitions.
    pub dropped: u64,
    /// Messages sent to each address (delivered or not).
    pub sent_to: BTreeMap<u64, u64>,
}

/// Link state and message fates.
#[derive(Clone, Debug)]
pub struct Network {
    /// The fault settings; may change at any time.
    pub cfg: NetConfig,
    isolated: BTreeSet<u64>,
    blocked: BTreeSet<(u64, u64)>,
    /// Traffic so far.
    pub counters: NetCounters,
}

impl Network {
    /// A fully connected network.
    pub fn new(cfg: NetConfig) -> Network {
        Network {
            cfg,
            isolated: BTreeSet::new(),
            blocked: BTreeSet::new(),
            counters: NetCounters::default(),
        }
    }

    /// Whether `from` can reach `to` now.
    pub fn link_up(&self, from: u64, to: u64) -> bool {
        !self.isolated.contains(&from)
            && !self.isolated.contains(&to)
            && !self.blocked.contains(&(from, to))
    }

    /// Whether `id` is cut off from everyone.
    pub fn is_isolated(&self, id: u64) -> bool {
        self.isolated.contains(&id)
    }

    /// Cuts `id` off from everyone (the course's `disconnect`).
    pub fn isolate(&mut self, id: u64) {
        self.isolated.insert(id);
    }

    /// Undoes [`Network::isolate`] (the course's `connect`).
    pub fn rejoin(&mut self, id: u64) {
        self.isolated.remove(&id);
    }

    /// Blocks or unblocks both directions between `a` and `b`.
    pub fn set_link(&mut self, a: u64, b: u64, up: bool) {
        for pair in [(a, b), (b, a)] {
            if up {
                self.blocked.remove(&pair);
            } else {
                self.blocked.insert(pair);
            }
        }
    }

    /// Splits `members` into groups that can talk only within themselves
    /// (any shape; an address in no group keeps its other links).
    pub fn partition(&mut self, groups: &[Vec<u64>]) {
        self.heal();
        for (i, g) in groups.iter().enumerate() {
            for other in &groups[i + 1..] {
                for &a in g {
                    for &b in other {
                        self.set_link(a, b, false);
                    }
                }
            }
        }
    }

    /// Removes every block and isolation.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.isolated.clear();
    }

    /// Decides the fate of a message sent at `now`: the times at which
    /// copies arrive (none if it is lost).
    pub fn route(
        &mut self,
        rng: &mut SplitMix64,
        now: u64,
        (from, to): (u64, u64),
        is_request: bool,
        bytes: u64,
    ) -> Vec<u64> {
        if is_request {
            self.counters.requests += 1;
        }
        self.counters.bytes += bytes;
        *self.counters.sent_to.entry(to).or_insert(0) += 1;
        if !self.link_up(from, to) {
            self.counters.dropped += 1;
            return Vec::new();
        }
        let now = now + self.cfg.base_delay_ns;
        if self.cfg.reliable {
            return vec![now];
        }
        let loss = if is_request {
            self.cfg.drop_request_per_mille
        } else {
            self.cfg.drop_response_per_mille
        };
        if rng.range(0, 1000) < loss {
            self.counters.dropped += 1;
            return Vec::new();
        }
        let copies = if rng.range(0, 1000) < self.cfg.duplicate_per_mille {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| now + self.delay(rng, is_request))
            .collect()
    }

    fn delay(&self, rng: &mut SplitMix64, is_request: bool) -> u64 {
        let mut d = rng.range(0, self.cfg.max_delay_ns + 1);
        if !is_request && self.cfg.long_reordering && rng.range(0, 900) < 600 {
            let upper = rng.range(0, 2000);
            d += 200 * MS + rng.range(0, upper + 1) * MS;
        }
        d
    }

    /// Records a request that reached `to`.
    pub fn delivered(&mut self, to: u64, is_request: bool) {
        if is_request {
            *self.counters.delivered_requests.entry(to).or_insert(0) += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_and_isolation_cut_links() {
        let mut n = Network::new(NetConfig::default());
        n.partition(&[vec![1, 2], vec![3, 4, 5]]);
        assert!(n.link_up(1, 2) && n.link_up(3, 5));
        assert!(!n.link_up(1, 3) && !n.link_up(5, 2));
        n.heal();
        n.isolate(4);
        assert!(!n.link_up(4, 1) && !n.link_up(1, 4) && n.link_up(1, 3));
        n.rejoin(4);
        assert!(n.link_up(4, 1));
    }

    #[test]
    fn unreliable_network_loses_some_but_not_all() {
        // labrpc's "unreliable" test: 300 calls must neither all succeed nor all fail.
        let mut n = Network::new(NetConfig {
            reliable: false,
            ..NetConfig::default()
        });
        let mut rng = SplitMix64::new(7);
        let delivered = (0..300)
            .filter(|_| !n.route(&mut rng, 0, (1, 2), true, 10).is_empty())
            .count();
        assert!(delivered > 0 && delivered < 300, "delivered {delivered}");
        assert_eq!(n.counters.requests, 300);
        assert_eq!(n.counters.bytes, 3000);
    }

    #[test]
    fn long_reordering_delays_responses_only() {
        let cfg = NetConfig {
            reliable: false,
            long_reordering: true,
            ..NetConfig::default()
        };
        let mut n = Network::new(cfg);
        let mut rng = SplitMix64::new(3);
        let max_req = (0..500)
            .flat_map(|_| n.route(&mut rng, 0, (1, 2), true, 1))
            .max();
        let late = (0..500)
            .flat_map(|_| n.route(&mut rng, 0, (2, 1), false, 1))
            .filter(|&t| t >= 200 * MS)
            .count();
        assert!(max_req.is_some_and(|t| t <= 26 * MS));
        assert!(late > 200, "only {late} of 500 responses were late");
    }
}
