//! What the KV machines publish for etcd's watch, checked on the
//! simulator: [`Published`] collects every member's publications
//! ([`flotilla_host::kv_app::Publish`]), and [`Watcher`]s follow members
//! the way a watch client does, across their crashes and restarts.
//!
//! Rules, each a violation when broken:
//!
//! - a machine publishes each store revision once, in order, with no
//!   gap: the first batch after the machine's start or a restore
//!   (a reset) continues from it, every later one is the last plus one;
//! - every member publishes the same events at each revision (the
//!   changes its entry made, in order);
//! - a watcher that follows one member from revision 2 (the first
//!   write) receives every revision exactly once, in order, with the
//!   events the members published: live from the member's publications
//!   while they continue, and after a crash, restart or reset of its
//!   member from the store's history (`Store::replay`, what the watch
//!   service reads to resume a watch at a revision), then live again;
//!   revisions below the one it waits for (a member that restarted
//!   behind it replays them) are skipped, as a watch from a later start
//!   skips them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use flotilla_host::kv_app::{Batch, KvMachine, Publish};
use flotilla_kv::Event;

/// The state all members' publications go to.
#[derive(Debug, Default)]
pub struct Published {
    /// The events of each revision, as the first member published them.
    revisions: BTreeMap<u64, Vec<Event>>,
    /// Each member's publications since its watcher last read them, with
    /// the start of its current machine (a restart: `true` first).
    queues: BTreeMap<u64, Vec<Batch>>,
    /// Rules broken, not yet reported.
    violations: Vec<String>,
    /// Machines started per member (each restart starts one).
    starts: BTreeMap<u64, u64>,
    /// Batches of events published, all members.
    pub batches: u64,
}

/// Locks the shared state (a poisoned lock is a failure already reported).
pub(crate) fn lock(p: &Mutex<Published>) -> MutexGuard<'_, Published> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

impl Published {
    /// The first rule broken since the last call.
    pub(crate) fn take_violation(&mut self) -> Option<String> {
        let v = self.violations.drain(..).next();
        self.violations.clear();
        v
    }

    /// Records `events` of `revision` from `member`; checks that they are
    /// the events every other member published at that revision.
    fn record(&mut self, member: u64, revision: u64, events: &[Event]) {
        self.batches += 1;
        let known = self
            .revisions
            .entry(revision)
            .or_insert_with(|| events.to_vec());
        if known.as_slice() != events {
            let what = format!(
                "member {member} published at revision {revision} {events:?}, another member {known:?}"
            );
            self.violations.push(what);
        }
    }
}

/// One machine's publisher: checks its order, and files what it
/// publishes for the member's watcher.
#[derive(Debug)]
pub struct Publisher {
    member: u64,
    /// The last revision this machine published or reset to.
    last: Mutex<u64>,
    shared: Arc<Mutex<Published>>,
}

impl Publisher {
    /// The publisher of a fresh machine of `member` (its store at revision
    /// 1, the empty store, until a snapshot is restored).
    pub(crate) fn new(member: u64, shared: Arc<Mutex<Published>>) -> Publisher {
        *lock(&shared).starts.entry(member).or_default() += 1;
        Publisher {
            member,
            last: Mutex::new(1),
            shared,
        }
    }
}

impl Publish for Publisher {
    fn active(&self) -> bool {
        true
    }

    fn publish(&self, batch: Batch) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut shared = lock(&self.shared);
        let m = self.member;
        match &batch {
            Batch::Events { revision, events } => {
                if *revision != *last + 1 {
                    let what =
                        format!("member {m} published revision {revision} after revision {last}");
                    shared.violations.push(what);
                }
                shared.record(m, *revision, events);
                *last = *revision;
            }
            Batch::Reset { revision } => {
                if *revision < *last {
                    let what = format!("member {m} reset to revision {revision} from {last}");
                    shared.violations.push(what);
                }
                *last = *revision;
            }
        }
        shared.queues.entry(m).or_default().push(batch);
    }
}

/// A watch client following one member from revision 2 on.
#[derive(Debug)]
pub struct Watcher {
    /// The member it follows.
    pub member: u64,
    /// The next revision it expects.
    next: u64,
    /// The member's machine it follows (a count of its starts): another
    /// one means the member restarted, and the watch resumes.
    machine: u64,
    /// Revisions received (live and replayed).
    pub received: u64,
    /// Times it resumed from the history.
    pub resumed: u64,
}

impl Watcher {
    /// A watcher of `member` from the first write on.
    pub(crate) fn new(member: u64) -> Watcher {
        Watcher {
            member,
            next: 2,
            machine: 0,
            received: 0,
            resumed: 0,
        }
    }

    /// Reads what the member published since the last call, or resumes
    /// from the member's history; checks each revision against the
    /// members' publications.
    pub(crate) fn follow(
        &mut self,
        machine: &KvMachine<Publisher>,
        shared: &Mutex<Published>,
    ) -> Result<(), String> {
        if machine.watch.member != self.member {
            return Err(format!(
                "a watcher of member {} was handed member {}'s machine",
                self.member, machine.watch.member
            ));
        }
        let mut shared = lock(shared);
        let batches = shared.queues.remove(&self.member).unwrap_or_default();
        let reset = batches.iter().any(|b| matches!(b, Batch::Reset { .. }));
        // A fresh machine (the member restarted) publishes from its
        // snapshot on: the watch resumes from the history.
        let started = shared.starts.get(&self.member).copied().unwrap_or(0);
        if started != self.machine || reset {
            self.machine = started;
            return self.replay(machine, &shared);
        }
        for batch in batches {
            if let Batch::Events { revision, events } = batch {
                self.receive(revision, &events, &shared)?;
            }
        }
        Ok(())
    }

    /// Resumes at `next` from the store's history, up to its revision now
    /// (the publications queued so far are all at or below it).
    fn replay(&mut self, machine: &KvMachine<Publisher>, shared: &Published) -> Result<(), String> {
        self.resumed += 1;
        let store = machine.replica.store();
        let (from, to) = (self.next, store.revision());
        // From the first key to the last: every key.
        let replay = store
            .replay(from, to, &bytes::Bytes::new(), None, usize::MAX)
            .map_err(|e| {
                format!(
                    "member {}: a watch from {from} cannot resume: {e}",
                    self.member
                )
            })?;
        let mut by_revision: BTreeMap<u64, Vec<Event>> = BTreeMap::new();
        for e in replay.events {
            by_revision.entry(e.kv.mod_rev).or_default().push(e);
        }
        for (revision, events) in by_revision {
            self.receive(revision, &events, shared)?;
        }
        // A member that restarted behind the watcher has nothing to
        // replay yet: the watch waits for its revision, as a watch from a
        // future revision does.
        if self.next != (to + 1).max(from) {
            return Err(format!(
                "member {}: a watch resumed at {from} read up to revision {}, the store is at {to}",
                self.member,
                self.next - 1
            ));
        }
        Ok(())
    }

    /// One revision's events: the next expected, as the members published.
    fn receive(
        &mut self,
        revision: u64,
        events: &[Event],
        shared: &Published,
    ) -> Result<(), String> {
        let m = self.member;
        if revision < self.next {
            // Already received (from a member that restarted behind the
            // watcher): a resumed watch skips what precedes its start.
            return Ok(());
        }
        if revision != self.next {
            return Err(format!(
                "a watcher of member {m} received revision {revision} when it expected {}",
                self.next
            ));
        }
        match shared.revisions.get(&revision) {
            Some(known) if same_changes(known, events) => {}
            known => {
                return Err(format!(
                    "a watcher of member {m} received at revision {revision} {events:?}, the members published {known:?}"
                ));
            }
        }
        self.next += 1;
        self.received += 1;
        Ok(())
    }
}

/// Whether two lists of events make the same changes (a replay carries
/// no previous pairs unless asked, so those are not compared).
fn same_changes(a: &[Event], b: &[Event]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.kind == y.kind && x.kv == y.kv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_kv::{EventKind, KeyValue};

    fn put(key: &str, rev: u64) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: bytes::Bytes::copy_from_slice(key.as_bytes()),
                value: bytes::Bytes::from_static(b"v"),
                create_rev: rev,
                mod_rev: rev,
                version: 1,
                lease: 0,
            },
            prev: None,
        }
    }

    fn events(revision: u64, key: &str) -> Batch {
        Batch::Events {
            revision,
            events: vec![put(key, revision)],
        }
    }

    #[test]
    fn a_gap_a_repeat_or_a_step_back_is_a_violation() {
        let shared = Arc::new(Mutex::new(Published::default()));
        let p = Publisher::new(1, Arc::clone(&shared));
        p.publish(events(2, "a"));
        p.publish(events(3, "b"));
        assert_eq!(lock(&shared).take_violation(), None);
        p.publish(events(5, "c"));
        let v = lock(&shared).take_violation().unwrap();
        assert!(v.contains("published revision 5 after revision 3"), "{v}");
        p.publish(events(5, "c"));
        assert!(lock(&shared).take_violation().is_some(), "a repeat");
        p.publish(Batch::Reset { revision: 9 });
        p.publish(events(10, "d"));
        assert_eq!(lock(&shared).take_violation(), None, "a reset moves on");
        p.publish(Batch::Reset { revision: 10 });
        assert_eq!(
            lock(&shared).take_violation(),
            None,
            "a reset to where it is"
        );
        p.publish(Batch::Reset { revision: 4 });
        assert!(
            lock(&shared)
                .take_violation()
                .unwrap()
                .contains("reset to revision 4")
        );
        assert_eq!(lock(&shared).batches, 5, "batches of events");
    }

    #[test]
    fn members_must_publish_the_same_events_at_a_revision() {
        let shared = Arc::new(Mutex::new(Published::default()));
        let (one, two) = (
            Publisher::new(1, Arc::clone(&shared)),
            Publisher::new(2, Arc::clone(&shared)),
        );
        one.publish(events(2, "a"));
        two.publish(events(2, "a"));
        assert_eq!(lock(&shared).take_violation(), None);
        one.publish(events(3, "b"));
        two.publish(events(3, "x"));
        let v = lock(&shared).take_violation().unwrap();
        assert!(v.contains("member 2 published at revision 3"), "{v}");
    }

    #[test]
    fn a_watcher_takes_each_revision_once_as_the_members_published_it() {
        let shared = Arc::new(Mutex::new(Published::default()));
        let p = Publisher::new(1, Arc::clone(&shared));
        p.publish(events(2, "a"));
        p.publish(events(3, "b"));
        let mut w = Watcher::new(1);
        let published = lock(&shared);
        assert_eq!(w.receive(2, &[put("a", 2)], &published), Ok(()));
        assert_eq!(
            w.receive(2, &[put("a", 2)], &published),
            Ok(()),
            "skipped: before its start"
        );
        let e = w.receive(3, &[put("x", 3)], &published).unwrap_err();
        assert!(e.contains("received at revision 3"), "{e}");
        let e = w.receive(4, &[put("c", 4)], &published).unwrap_err();
        assert!(e.contains("received revision 4 when it expected 3"), "{e}");
        assert_eq!(w.receive(3, &[put("b", 3)], &published), Ok(()));
        assert_eq!(w.received, 2);
    }

    #[test]
    fn changes_compare_kind_and_pair_but_not_the_previous_pair() {
        let a = put("a", 2);
        let with_prev = Event {
            prev: Some(put("a", 1).kv),
            ..a.clone()
        };
        assert!(same_changes(std::slice::from_ref(&a), &[with_prev]));
        let deleted = Event {
            kind: EventKind::Delete,
            ..a.clone()
        };
        assert!(!same_changes(std::slice::from_ref(&a), &[deleted]));
        assert!(!same_changes(std::slice::from_ref(&a), &[put("b", 2)]));
        assert!(!same_changes(
            std::slice::from_ref(&a),
            &[a.clone(), a.clone()]
        ));
        assert!(!same_changes(
            &[a.clone(), put("b", 2)],
            &[a.clone(), put("c", 2)]
        ));
    }
}
