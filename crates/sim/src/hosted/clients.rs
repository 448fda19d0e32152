//! The hosted simulation's clients: each has one request out at a
//! member (a write the app chose, or a linearizable read), gives up after
//! a deadline and tries another member, follows `NotLeader` hints, and now
//! and then moves on as clients behind a balancer do; every answer is
//! checked as it leaves the host (see the module docs of [`super`]) and
//! passed to the app.

use std::cell::RefCell;
use std::rc::Rc;

use flotilla_raft::{LogIndex, NodeId, Term};

use super::app::{App, Request};
use super::machine;
use super::member::{Answer, SimWaiter};
use super::quorum;
use super::world::{Answered, Out, Output, TEST, World};
use crate::net::MS;

impl<A: App> World<A> {
    pub(crate) fn client_step(&mut self, c: u64) {
        if let Some((request, deadline)) = self.clients[c as usize].pending {
            if self.now < deadline {
                return;
            }
            // Gave up: the host may forget it; try another member.
            if let Some(out) = self.out.get(&request) {
                *out.gave_up.borrow_mut() = true;
            }
            self.next_target(c, None);
        }
        self.issue(c);
    }

    fn next_target(&mut self, c: u64, hint: Option<NodeId>) {
        let members = self.hosts();
        let client = &mut self.clients[c as usize];
        client.pending = None;
        client.target = match hint {
            Some(leader) if (1..=members).contains(&leader.get()) => leader.get(),
            _ => 1 + client.target % members,
        };
    }

    fn issue(&mut self, c: u64) {
        let request = self.next_request;
        self.next_request += 1;
        let target = self.clients[c as usize].target;
        let command = match self.app.next(&mut self.rng, c, self.now) {
            Request::Write(data) => Some(data),
            Request::Read => None,
        };
        let waiter = self.waiter(target, request, false);
        if let Some(out) = self.out.get_mut(&request) {
            out.client = c;
            out.command.clone_from(&command);
        }
        let deadline = self.now + 500 * MS;
        self.clients[c as usize].pending = Some((request, deadline));
        self.wake(c, 500 * MS);
        self.charge_request(target);
        let Some(host) = self.member(target).host() else {
            self.out.remove(&request);
            self.next_target(c, None);
            self.wake(c, 10 * MS);
            return;
        };
        match command {
            Some(data) => host.propose(data, waiter),
            None => host.read_index(waiter),
        }
        self.pump(target);
    }

    /// A waiter for `request` at member `target`, and the request's entry
    /// among those out (a client's, until the caller fills it in).
    pub(crate) fn waiter(
        &mut self,
        target: u64,
        request: u64,
        membership: bool,
    ) -> SimWaiter<Output<A>> {
        let gave_up = Rc::new(RefCell::new(false));
        // A read must cover every entry committed before it began: every
        // write acknowledged, and every entry applied anywhere (§6.4 of
        // the thesis).
        let applied = machine::lock(&self.ledger)
            .entries
            .keys()
            .next_back()
            .copied();
        let out = Out {
            client: u64::MAX,
            command: None,
            acked_floor: self.acked_max.max(applied.unwrap_or_default()),
            gave_up: Rc::clone(&gave_up),
        };
        self.out.insert(request, out);
        SimWaiter {
            member: target,
            request,
            membership,
            inbox: Rc::clone(&self.inbox),
            gave_up,
        }
    }

    /// Checks and passes on every answer the hosts gave: to the client
    /// that waits for it, or to the test's answers if a test asked.
    pub(crate) fn answers(&mut self) {
        let answers = std::mem::take(&mut *self.inbox.borrow_mut());
        for (member, answer) in answers {
            let request = answer.request();
            let test = self.out.get(&request).is_some_and(|o| o.client == TEST);
            let (request, result) = match answer {
                Answer::Proposal(r, Ok((index, term, output))) => {
                    let checked = self.acked_write(member, r, index, term);
                    if test {
                        let answered = Answered::Written(index, output);
                        self.test_answers.push((r, member, Ok(answered)));
                    } else if let Some(c) = self.waiting(r)
                        && let Err(f) = self.app.written(c, &output, self.now)
                    {
                        self.fail(f);
                    }
                    (r, checked)
                }
                Answer::Read(r, Ok(index)) => {
                    let checked = self.answered_read(member, r, index);
                    if test {
                        self.test_answers
                            .push((r, member, Ok(Answered::Read(index))));
                    } else if let Some(c) = self.waiting(r) {
                        self.app_read(member, c);
                    }
                    (r, checked)
                }
                Answer::Proposal(r, Err(e)) | Answer::Read(r, Err(e)) => {
                    if test {
                        self.test_answers.push((r, member, Err(e.clone())));
                    }
                    (r, Err(e))
                }
                Answer::Membership(r, result) => {
                    if test {
                        self.test_change_answer(member, r, result);
                    } else {
                        self.admin_answer(member, r, result);
                    }
                    continue;
                }
            };
            self.settle(request, result);
        }
    }

    /// The client whose request out is `request`, if it still waits for it.
    fn waiting(&self, request: u64) -> Option<u64> {
        let c = self.out.get(&request)?.client;
        let client = self.clients.get(c as usize)?;
        (client.pending.map(|(r, _)| r) == Some(request)).then_some(c)
    }

    /// Client `c` reads member `m`'s machine, which applied its index.
    fn app_read(&mut self, m: u64, c: u64) {
        let Some(chain) = self.member(m).machine() else {
            return self.fail(format!("member {m} answered a read while down"));
        };
        let chain = machine::lock_chain(&chain);
        if let Err(f) = self.app.read(c, &chain.inner, self.now) {
            drop(chain);
            self.fail(f);
        }
    }

    fn acked_write(
        &mut self,
        m: u64,
        request: u64,
        index: LogIndex,
        term: Term,
    ) -> Result<(), flotilla_host::NodeError> {
        let holders: Vec<NodeId> = self
            .members
            .iter()
            .filter(|x| x.holds_durably(index, term))
            .map(|x| NodeId(x.id))
            .collect();
        let ledger = machine::lock(&self.ledger);
        let early =
            quorum::ack_violation(&ledger, &self.commits, index, &holders, (NodeId(m), true));
        drop(ledger);
        if let Some(why) = early {
            self.fail(format!(
                "member {m} acknowledged the write at {index} (term {term}): {why}"
            ));
        }
        let expected = self.out.get(&request).and_then(|o| o.command.clone());
        let applied = machine::lock(&self.ledger)
            .entries
            .get(&index)
            .map(|(_, d, _)| d.clone());
        if expected.is_none() || applied != expected {
            self.fail(format!(
                "member {m} acknowledged request {request} at {index}, which holds {applied:?}, not {expected:?}"
            ));
        }
        self.acked_max = self.acked_max.max(index);
        self.report.acked_writes += 1;
        if self.now >= self.faults_end {
            self.report.acked_after_faults += 1;
        }
        Ok(())
    }

    fn answered_read(
        &mut self,
        m: u64,
        request: u64,
        index: LogIndex,
    ) -> Result<(), flotilla_host::NodeError> {
        let floor = self
            .out
            .get(&request)
            .map_or(LogIndex(0), |o| o.acked_floor);
        let applied = self
            .member(m)
            .host()
            .map_or(LogIndex(0), |h| h.raw().status().applied);
        if index < floor || applied < index {
            self.fail(format!(
                "member {m} answered read {request} at {index}: entries up to {floor} were committed before it began, and the member applied {applied}"
            ));
        }
        let removed_at = machine::lock(&self.ledger).removed_at.get(&m).copied();
        if let Some(r) = removed_at {
            self.fail(format!(
                "member {m} answered read {request} at {index} after applying its removal at {r}"
            ));
        }
        self.report.reads += 1;
        Ok(())
    }

    /// The client of `request` goes on.
    fn settle(&mut self, request: u64, result: Result<(), flotilla_host::NodeError>) {
        let Some(out) = self.out.remove(&request) else {
            return;
        };
        // A request no client waits for (one a test proposed itself).
        let c = out.client;
        let pending = self.clients.get(c as usize).and_then(|x| x.pending);
        if pending.map(|(r, _)| r) != Some(request) {
            return;
        }
        match result {
            // Now and then a client moves to another member, as clients
            // behind a balancer do: writes and reads through followers
            // are forwarded to the leader.
            Ok(()) if self.rng.range(0, 8) == 0 => {
                let members = self.hosts();
                let client = &mut self.clients[c as usize];
                client.pending = None;
                client.target = 1 + self.rng.range(0, members);
            }
            Ok(()) => self.clients[c as usize].pending = None,
            Err(flotilla_host::NodeError::NotLeader { leader_hint }) => {
                self.next_target(c, leader_hint)
            }
            Err(_) => self.next_target(c, None),
        }
        let think = self.rng.range(0, 5 * MS);
        self.wake(c, think);
    }
}
