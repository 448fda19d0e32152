//! Client-side operations on a simulated cluster beyond the course's
//! `Start`: linearizable reads, membership changes and leadership transfer.

use flotilla_raft::{ConfChange, LogIndex, ProposeError, Role, TransferError};

use crate::cluster::Cluster;

impl Cluster {
    /// The node index of a live node that believes it leads, if any (the
    /// one with the highest term).
    pub fn leader(&self) -> Option<usize> {
        (0..self.n())
            .filter_map(|i| {
                self.nodes[i]
                    .state()
                    .filter(|&(_, l)| l)
                    .map(|(t, _)| (t, i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Proposes several commands at node `idx` in one batch (one Ready, so
    /// they travel in the same append messages). Returns how many were
    /// accepted (0 if it does not lead).
    pub fn start_batch(
        &mut self,
        idx: usize,
        cmds: impl IntoIterator<Item = bytes::Bytes>,
    ) -> usize {
        let Some(raft) = self.nodes[idx].raft.as_mut() else {
            return 0;
        };
        let before = raft.status().last_index;
        if raft.propose_batch(cmds).is_err() {
            return 0;
        }
        let accepted = (raft.status().last_index.get() - before.get()) as usize;
        self.drain(idx);
        accepted
    }

    /// Asks node `idx` for a linearizable read with request id `ctx`. The
    /// answer is checked when it comes (see `driver.rs`) and lands in the
    /// node's `reads` or `dropped_reads`. Returns false if the node is down.
    pub fn read(&mut self, idx: usize, ctx: u64) -> bool {
        self.read_batch(idx, [ctx])
    }

    /// Asks node `idx` for several reads in one batch (one Ready, so they
    /// share one leadership-confirmation round).
    pub fn read_batch(&mut self, idx: usize, ctxs: impl IntoIterator<Item = u64>) -> bool {
        let floor = self.committed.len();
        let Some(raft) = self.nodes[idx].raft.as_mut() else {
            return false;
        };
        for ctx in ctxs {
            self.pending_reads.insert((idx, ctx), floor);
            raft.read_index(ctx);
        }
        self.drain(idx);
        true
    }

    /// Proposes a membership change at node `idx`.
    pub fn propose_conf_change(
        &mut self,
        idx: usize,
        cc: &ConfChange,
    ) -> Result<LogIndex, ProposeError> {
        let raft = self.nodes[idx]
            .raft
            .as_mut()
            .ok_or(ProposeError::NotLeader { leader_hint: None })?;
        let index = raft.propose_conf_change(cc)?;
        self.drain(idx);
        Ok(index)
    }

    /// Asks leader `idx` to hand leadership to node index `to`.
    pub fn transfer_leader(&mut self, idx: usize, to: usize) -> Result<(), TransferError> {
        let target = self.nodes[to].id;
        let raft = self.nodes[idx]
            .raft
            .as_mut()
            .ok_or(TransferError::NotLeader { leader_hint: None })?;
        raft.transfer_leader(target)?;
        self.drain(idx);
        Ok(())
    }

    /// One line per node: role, term, commit, applied and membership, for
    /// failure reports.
    pub fn status_dump(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let line = match &n.raft {
                None => format!("\n  n{}: down (applied {})", n.id, n.app.last_applied),
                Some(r) => {
                    let s = r.status();
                    format!(
                        "\n  n{}: {} term={} leader={:?} commit={} applied={} last={} voters={:?} outgoing={:?} learners={:?}{}",
                        s.id,
                        s.role,
                        s.term,
                        s.leader,
                        s.commit,
                        n.app.last_applied,
                        s.last_index,
                        s.conf_state.voters,
                        s.conf_state.outgoing,
                        s.conf_state.learners,
                        if self.connected(Cluster::idx(s.id)) {
                            ""
                        } else {
                            " (disconnected)"
                        }
                    )
                }
            };
            out.push_str(&line);
        }
        out
    }

    /// The role of node `idx`, if it runs.
    pub fn role(&self, idx: usize) -> Option<Role> {
        self.nodes[idx].raft.as_ref().map(|r| r.status().role)
    }

    /// Node `idx`'s [`flotilla_raft::RawNode::recently_active`], if it runs.
    pub fn recently_active(&self, idx: usize) -> Option<Vec<flotilla_raft::NodeId>> {
        self.nodes[idx].raft.as_ref()?.recently_active()
    }
}
