//! The lessor on virtual time: unit cases, then a seeded model of a
//! cluster (leader changes, leaderless gaps, paused leaders, members whose
//! monotonic clocks start far apart, clients keeping leases alive at
//! random moments) that checks the bounds the module docs promise.

use flotilla_kv::{Op, Store};
use proptest::prelude::*;

use super::*;

const E: u64 = 1_000;

fn config(interval_ms: u64) -> LessorConfig {
    LessorConfig {
        extend_ms: E,
        checkpoint_interval_ms: interval_ms,
    }
}

fn store_with(leases: &[(i64, i64)]) -> Store {
    let mut s = Store::new();
    for &(id, ttl) in leases {
        s.apply(&Op::LeaseGrant { id, ttl });
    }
    s
}

#[test]
fn a_new_leader_counts_down_from_the_checkpoint_plus_one_election() {
    let mut s = store_with(&[(1, 10), (2, 600)]);
    s.apply(&Op::LeaseCheckpoint {
        checkpoints: vec![(2, 100)],
    });
    let mut l = Lessor::new(config(300_000));
    assert_eq!(l.expired(50_000, 10), Vec::<i64>::new(), "not primary");
    l.sync(5_000, Some(3), s.leases());
    assert!(l.is_primary());
    assert_eq!(l.remaining(5_000, 1), Some(11));
    assert_eq!(l.remaining(5_000, 2), Some(101));
    assert_eq!(l.expired(15_999, 10), Vec::<i64>::new());
    assert_eq!(l.expired(16_000, 10), vec![1]);
    assert_eq!(l.expired(16_500, 10), Vec::<i64>::new(), "proposed already");
    assert_eq!(l.expired(16_000 + REVOKE_RETRY_MS, 10), vec![1], "again");
    // Losing leadership forgets every countdown.
    l.sync(20_000, None, s.leases());
    assert_eq!((l.is_primary(), l.remaining(20_000, 2)), (false, None));
    assert_eq!(l.renew(20_000, 2, s.leases()), Err(RenewError::NotPrimary));
}

#[test]
fn keep_alives_restart_the_countdown_and_ask_to_clear_a_checkpoint() {
    let mut s = store_with(&[(1, 10)]);
    let mut l = Lessor::new(config(300_000));
    l.sync(0, Some(1), s.leases());
    let r = l.renew(4_000, 1, s.leases()).unwrap();
    assert_eq!(
        r,
        Renewed {
            ttl: 10,
            clear_checkpoint: false
        }
    );
    assert_eq!(l.remaining(4_000, 1), Some(10));
    assert_eq!(l.expired(13_999, 10), Vec::<i64>::new());
    assert_eq!(l.renew(4_000, 9, s.leases()), Err(RenewError::NotFound));
    s.apply(&Op::LeaseCheckpoint {
        checkpoints: vec![(1, 3)],
    });
    assert!(l.renew(5_000, 1, s.leases()).unwrap().clear_checkpoint);
    // Past its deadline a lease is gone, even before its revoke applies.
    assert_eq!(l.renew(15_000, 1, s.leases()), Err(RenewError::NotFound));
}

#[test]
fn grants_and_revokes_are_followed_while_leading() {
    let mut s = store_with(&[]);
    let mut l = Lessor::new(config(300_000));
    l.sync(0, Some(1), s.leases());
    s.apply(&Op::LeaseGrant { id: 4, ttl: 5 });
    l.sync(1_000, Some(1), s.leases());
    assert_eq!(l.remaining(1_000, 4), Some(5));
    s.apply(&Op::LeaseRevoke { id: 4 });
    l.sync(2_000, Some(1), s.leases());
    assert_eq!(l.remaining(2_000, 4), None);
    // A new term is a new takeover, with the extension.
    s.apply(&Op::LeaseGrant { id: 5, ttl: 5 });
    l.sync(3_000, Some(2), s.leases());
    assert_eq!(l.remaining(3_000, 5), Some(6));
}

#[test]
fn checkpoints_cover_long_leases_in_batches_once_per_interval() {
    let leases: Vec<(i64, i64)> = (1..=1_500)
        .map(|id| (id, 900))
        .chain([(9_999, 60)])
        .collect();
    let s = store_with(&leases);
    let mut l = Lessor::new(config(300_000));
    l.sync(0, Some(1), s.leases());
    assert!(l.checkpoints(299_999, s.leases()).is_empty());
    let batches = l.checkpoints(300_000, s.leases());
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![1_000, 500]
    );
    // 901 s from the takeover (with the extension) less 300 s, rounded up.
    assert_eq!(batches[0][0], (1, 601));
    assert!(
        batches.iter().flatten().all(|&(id, _)| id != 9_999),
        "60 s < 300 s"
    );
    assert!(l.checkpoints(300_001, s.leases()).is_empty());
}

#[test]
fn a_lease_as_long_as_the_interval_is_not_checkpointed() {
    let s = store_with(&[(1, 300), (2, 301)]);
    let config = LessorConfig::for_election_timeout(1_000);
    assert_eq!(config.checkpoint_interval_ms, 300_000, "etcd's 5 minutes");
    let mut l = Lessor::new(config);
    l.sync(0, Some(1), s.leases());
    let batches = l.checkpoints(300_000, s.leases());
    assert_eq!(batches, vec![vec![(2, 2)]]);
}

#[test]
fn the_smallest_ttl_outlives_an_election() {
    assert_eq!(LessorConfig::for_election_timeout(1_000).min_ttl(), 2);
    assert_eq!(LessorConfig::for_election_timeout(100).min_ttl(), 1);
    assert_eq!(LessorConfig::for_election_timeout(4_000).min_ttl(), 6);
}

/// A member of the modelled cluster.
struct Member {
    lessor: Lessor,
    /// Its monotonic clock reads `true time + offset`.
    offset: u64,
    /// Paused (SIGSTOP) until this true time.
    paused_until: u64,
}

/// What happened to one lease, in true time.
#[derive(Default)]
struct Record {
    /// The last moment a keep-alive (or the grant) was answered.
    renewed: u64,
    revoked: Option<u64>,
}

struct Model {
    store: Store,
    members: Vec<Member>,
    leader: Option<usize>,
    term: u64,
    /// When the current leader took over.
    promoted: u64,
    /// How long the current leader was paused since it took over.
    paused: u64,
    records: Vec<Record>,
    ttls: Vec<i64>,
}

const TICK: u64 = 100;

impl Model {
    fn new(ttls: &[i64], offsets: [u64; 3], interval: u64) -> Model {
        let members = offsets
            .iter()
            .map(|&offset| Member {
                lessor: Lessor::new(config(interval)),
                offset,
                paused_until: 0,
            })
            .collect();
        let mut store = Store::new();
        for (i, &ttl) in ttls.iter().enumerate() {
            store.apply(&Op::LeaseGrant {
                id: i as i64 + 1,
                ttl,
            });
        }
        let mut m = Model {
            store,
            members,
            leader: None,
            term: 0,
            promoted: 0,
            paused: 0,
            records: ttls.iter().map(|_| Record::default()).collect(),
            ttls: ttls.to_vec(),
        };
        m.elect(0, 0);
        m
    }

    /// Member `who`, or the next one not paused (a paused member cannot
    /// win an election), takes over at `now`.
    fn elect(&mut self, now: u64, who: usize) {
        let n = self.members.len();
        let Some(who) = (0..n)
            .map(|k| (who + k) % n)
            .find(|&i| self.members[i].paused_until <= now)
        else {
            return;
        };
        self.term += 1;
        self.leader = Some(who);
        self.promoted = now;
        self.paused = 0;
    }

    /// Every unpaused member follows its role; the leader revokes and
    /// checkpoints through the "log" (the shared store).
    fn tick(&mut self, now: u64) {
        for i in 0..self.members.len() {
            let m = &mut self.members[i];
            if m.paused_until > now {
                continue;
            }
            let local = now + m.offset;
            let leads = (self.leader == Some(i)).then_some(self.term);
            m.lessor.sync(local, leads, self.store.leases());
            if leads.is_none() {
                continue;
            }
            for id in m.lessor.expired(local, 100) {
                if self.store.leases().contains(id) {
                    self.store.apply(&Op::LeaseRevoke { id });
                    self.records[(id - 1) as usize].revoked = Some(now);
                }
            }
            for checkpoints in m.lessor.checkpoints(local, self.store.leases()) {
                self.store.apply(&Op::LeaseCheckpoint { checkpoints });
            }
        }
    }

    /// A client's keep-alive of lease `id` at `now`: answered only by an
    /// unpaused leader (which confirms its leadership first).
    fn keep_alive(&mut self, now: u64, id: i64) {
        let Some(i) = self.leader else { return };
        let m = &mut self.members[i];
        if m.paused_until > now {
            return;
        }
        let Ok(r) = m.lessor.renew(now + m.offset, id, self.store.leases()) else {
            return;
        };
        if r.clear_checkpoint {
            self.store.apply(&Op::LeaseCheckpoint {
                checkpoints: vec![(id, 0)],
            });
        }
        self.records[(id - 1) as usize].renewed = now;
    }

    /// Checks the bounds for every lease at `now`.
    fn check(&self, now: u64) {
        for (i, r) in self.records.iter().enumerate() {
            let t = self.ttls[i] as u64 * 1000;
            let due = r.renewed + t;
            if let Some(at) = r.revoked {
                assert!(at >= due, "lease {} revoked at {at}, before {due}", i + 1);
            } else if self.leader.is_some() {
                let bound = due.max(self.promoted + E + t) + self.paused + TICK;
                assert!(now <= bound, "lease {} alive at {now}, past {bound}", i + 1);
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Event {
    KeepAlive(u8),
    /// The leader steps down; a member is elected after a gap.
    Elect(u8, u16),
    /// The leader is paused this long (deposed if past an election).
    Pause(u16),
    Idle(u16),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => any::<u8>().prop_map(Event::KeepAlive),
        1 => (any::<u8>(), 0..3_000u16).prop_map(|(w, g)| Event::Elect(w, g)),
        1 => (0..4_000u16).prop_map(Event::Pause),
        3 => (0..5_000u16).prop_map(Event::Idle),
    ]
}

/// Member `who` (or the next one not paused) takes over, once one is not
/// paused.
fn elect(m: &mut Model, now: &mut u64, who: usize) {
    m.leader = None;
    while m.leader.is_none() {
        m.elect(*now, who);
        if m.leader.is_none() {
            run_for(m, now, TICK);
        }
    }
}

/// Advances the model tick by tick for `ms`, checking as it goes.
fn run_for(m: &mut Model, now: &mut u64, ms: u64) {
    let until = *now + ms;
    while *now < until {
        *now += TICK;
        m.tick(*now);
        m.check(*now);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    #[test]
    fn leases_are_never_revoked_early_and_late_only_within_the_bound(
        ttls in proptest::collection::vec(2..30i64, 1..4),
        offsets in proptest::array::uniform3(0..1_000_000_000u64),
        interval in prop_oneof![Just(5_000u64), Just(300_000)],
        events in proptest::collection::vec(event(), 1..80),
    ) {
        let mut m = Model::new(&ttls, offsets, interval);
        let mut now = 0;
        for e in events {
            match e {
                Event::KeepAlive(l) => {
                    let id = i64::from(l) % ttls.len() as i64 + 1;
                    m.keep_alive(now, id);
                }
                Event::Elect(who, gap) => {
                    m.leader = None;
                    run_for(&mut m, &mut now, u64::from(gap));
                    elect(&mut m, &mut now, usize::from(who) % 3);
                }
                Event::Pause(p) => {
                    let Some(i) = m.leader else { continue };
                    let p = u64::from(p);
                    m.members[i].paused_until = now + p;
                    if p > E {
                        // The others elect a new leader after a timeout.
                        m.leader = None;
                        run_for(&mut m, &mut now, E);
                        elect(&mut m, &mut now, (i + 1) % 3);
                    } else {
                        m.paused += p;
                    }
                }
                Event::Idle(d) => run_for(&mut m, &mut now, u64::from(d)),
            }
        }
        // Left alone, every lease goes.
        let longest = ttls.iter().max().copied().unwrap_or(0) as u64 * 1000;
        run_for(&mut m, &mut now, longest + 2 * E + 5_000);
        prop_assert!(m.records.iter().all(|r| r.revoked.is_some()));
    }
}
