//! Elections (§5.2, §5.4.1) with the pre-vote round of §9.6 of the thesis:
//! campaigning, answering vote requests, counting answers.
//!
//! A pre-vote asks "would you vote for me in term T+1?" without anyone
//! changing term, so a node that was partitioned away cannot depose a
//! healthy leader by coming back with a raised term.

use crate::message::{MessageBody, VoteRequest};
use crate::quorum::{VoteResult, vote_result};
use crate::raft::{CampaignKind, Raft};
use crate::types::{NodeId, Role, Term};

impl Raft {
    /// Starts a (pre-)election. At the last term there is none: no term
    /// follows it (peers cannot bring a node there, see
    /// `StepError::TermTooFar`, but a corrupt disk might).
    pub(crate) fn campaign(&mut self, kind: CampaignKind) {
        if self.term.get() == u64::MAX {
            return;
        }
        if kind == CampaignKind::PreVote {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
        self.campaign_transfer = kind == CampaignKind::Transfer;
        if self.record_vote(self.id, true) {
            return;
        }
        self.request_votes();
    }

    /// Asks every voter that has not answered yet. Called when a campaign
    /// starts and again every heartbeat interval while it runs, so a lost
    /// request or answer costs a heartbeat interval, not a whole election
    /// timeout (requests are idempotent: a voter grants the same candidate
    /// again in the same term).
    pub(crate) fn request_votes(&mut self) {
        let pre = self.role == Role::PreCandidate;
        let vote_term = if pre { self.term.next() } else { self.term };
        let request = VoteRequest {
            pre,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            transfer: self.campaign_transfer,
        };
        let voters: Vec<NodeId> = self
            .conf
            .voters
            .iter()
            .chain(&self.conf.outgoing)
            .copied()
            .collect();
        let mut sent = Vec::with_capacity(voters.len());
        for id in voters {
            if id != self.id && !sent.contains(&id) && !self.votes.contains_key(&id) {
                sent.push(id);
                self.send_with_term(id, vote_term, MessageBody::Vote(request.clone()));
            }
        }
    }

    /// Answers a vote or pre-vote request of a candidate in `term`.
    pub(crate) fn handle_vote_request(&mut self, from: NodeId, term: Term, req: &VoteRequest) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (req.pre && term > self.term);
        if can_vote && self.log.is_up_to_date(req.last_index, req.last_term) {
            // A pre-vote is answered in the candidate's future term, so the
            // answer is counted, but nothing about this node changes.
            self.send_with_term(
                from,
                term,
                MessageBody::VoteResp {
                    pre: req.pre,
                    granted: true,
                },
            );
            if !req.pre {
                self.election_elapsed = 0;
                self.vote = Some(from);
            }
        } else {
            let body = MessageBody::VoteResp {
                pre: req.pre,
                granted: false,
            };
            self.send(from, body);
        }
    }

    /// Counts an answer to this node's campaign.
    pub(crate) fn handle_vote_response(&mut self, from: NodeId, pre: bool, granted: bool) {
        let expected = if pre {
            Role::PreCandidate
        } else {
            Role::Candidate
        };
        if self.role == expected {
            self.record_vote(from, granted);
        }
    }

    /// Records a vote and acts on the outcome; true if the campaign ended.
    fn record_vote(&mut self, from: NodeId, granted: bool) -> bool {
        self.votes.entry(from).or_insert(granted);
        match vote_result(&self.conf, &self.votes) {
            VoteResult::Won => {
                if self.role == Role::PreCandidate {
                    self.campaign(CampaignKind::Election);
                } else {
                    self.become_leader();
                }
                true
            }
            VoteResult::Lost => {
                let term = self.term;
                self.become_follower(term, None);
                true
            }
            VoteResult::Pending => false,
        }
    }
}
