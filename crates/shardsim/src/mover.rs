//! A replica group's background work (the course's server goroutines
//! that poll the controller and pull shards), as an actor that acts for
//! whichever member leads the group now, from that member's machine:
//! - once every shard has settled, it asks the controller for the next
//!   configuration and proposes it to the group;
//! - for each shard the group pulls, it asks the old owner for a read
//!   index and, once that owner has applied it, takes the shard's data
//!   from its machine ([`ShardKv::export`]) and proposes it (`Insert`);
//! - for each shard that arrived, it proposes `Delete` to the old owner
//!   and, once applied there, `Settle` to its own group.
//!
//! Every step is idempotent at the machines (a configuration applies only
//! from the one before it, an insert only to a pulling shard, ...), so a
//! lost or repeated request is harmless: the next poll sends it again.
//! Nothing here decides ownership; the groups' logs do.
//!
//! [`ShardKv::export`]: flotilla_shardkv::ShardKv::export

use std::collections::BTreeMap;

use flotilla_shardkv::{CtrlCommand, CtrlOp, CtrlReply, Gid, GroupApplied, GroupCommand};
use flotilla_sim::Failure;
use flotilla_sim::hosted::Answered;

use crate::fleet::{Fleet, FleetActor, Mail};

/// How often a mover looks at its group.
pub const POLL_NS: u64 = 50 * flotilla_sim::MS;

/// What a request of the mover's was for.
#[derive(Clone, Debug)]
enum Purpose {
    /// The configuration after `num`.
    Next(u64),
    /// A read at group `from` for `shards` of configuration `num`.
    Pull {
        from: Gid,
        num: u64,
        shards: Vec<usize>,
    },
    /// A delete of `shards` at their old owner, for `num`.
    Delete { num: u64, shards: Vec<usize> },
}

/// A group's mover. See the module docs.
pub struct Mover {
    gid: Gid,
    /// Requests out, by (cluster, request): cluster 0 is the controller.
    out: BTreeMap<(Gid, u64), Purpose>,
    turn: usize,
    next_poll: u64,
}

impl Mover {
    /// The mover of group `gid`.
    pub fn new(gid: Gid) -> Mover {
        Mover {
            gid,
            out: BTreeMap::new(),
            turn: 0,
            next_poll: 0,
        }
    }

    /// Proposes `command` to this group, at the member that leads.
    fn propose(&mut self, f: &mut Fleet, me: usize, command: &GroupCommand) {
        let server = f.target(self.gid, self.turn);
        f.ask_group(me, self.gid, server, command);
    }

    /// One look at the group, from the machine of the member that leads.
    fn poll(&mut self, f: &mut Fleet, me: usize) {
        self.turn += 1;
        let Some(g) = f.groups.get(&self.gid) else {
            return;
        };
        let Some(leader) = g.leader() else {
            return;
        };
        let Some((num, settled, pull, settle)) = g.with_machine(leader, |m| {
            (m.config().num, m.settled(), m.to_pull(), m.to_settle())
        }) else {
            return;
        };
        self.out.clear();
        if settled {
            let query = CtrlCommand {
                client: 0,
                seq: 0,
                op: CtrlOp::Query(Some(num + 1)),
            };
            let server = f.ctrl_target(self.turn);
            if let Some(r) = f.ask_ctrl(me, server, &query) {
                self.out.insert((0, r), Purpose::Next(num));
            }
        }
        for (from, shards) in pull {
            let server = f.target(from, self.turn);
            if let Some(r) = f.read_group(me, from, server) {
                self.out
                    .insert((from, r), Purpose::Pull { from, num, shards });
            }
        }
        for (from, shards) in settle {
            let server = f.target(from, self.turn);
            let delete = GroupCommand::Delete {
                num,
                shards: shards.clone(),
            };
            if let Some(r) = f.ask_group(me, from, server, &delete) {
                self.out.insert((from, r), Purpose::Delete { num, shards });
            }
        }
    }

    /// An answer to one of the requests out.
    fn answered(&mut self, f: &mut Fleet, me: usize, mail: Mail) {
        match mail {
            Mail::Ctrl(r, Ok(Answered::Written(_, Some(applied)))) => {
                let Some(Purpose::Next(num)) = self.out.remove(&(0, r)) else {
                    return;
                };
                if let CtrlReply::Config(next) = applied.reply
                    && next.num == num + 1
                {
                    self.propose(f, me, &GroupCommand::Config(next));
                }
            }
            Mail::Group(gid, r, server, Ok(answer)) => match (self.out.remove(&(gid, r)), answer) {
                (Some(Purpose::Pull { from, num, shards }), Answered::Read(_)) => {
                    let Some(g) = f.groups.get(&from) else {
                        return;
                    };
                    let data = g.with_machine(server, |m| m.export(num, &shards)).flatten();
                    if let Some(shards) = data {
                        self.propose(f, me, &GroupCommand::Insert { num, shards });
                    }
                }
                (
                    Some(Purpose::Delete { num, shards }),
                    Answered::Written(_, Some(GroupApplied::Step { .. })),
                ) => {
                    self.propose(f, me, &GroupCommand::Settle { num, shards });
                }
                _ => {}
            },
            _ => {}
        }
    }
}

impl FleetActor for Mover {
    fn wake(&mut self, f: &mut Fleet, me: usize) -> Result<Option<u64>, Failure> {
        for m in f.take_mail(me) {
            self.answered(f, me, m);
        }
        if f.now() >= self.next_poll {
            self.poll(f, me);
            self.next_poll = f.now() + POLL_NS;
        }
        Ok(Some(self.next_poll))
    }
}
