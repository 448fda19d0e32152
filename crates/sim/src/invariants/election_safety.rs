//! Election Safety (§5.2, Figure 3): at most one leader can be elected in
//! a given term.

use std::collections::BTreeMap;

use flotilla_raft::{NodeId, Term};

use super::Violation;

/// Every leader seen, by term.
#[derive(Debug, Default)]
pub struct ElectionSafety {
    leaders: BTreeMap<Term, NodeId>,
}

impl ElectionSafety {
    /// Records that `node` leads `term`.
    pub fn observe_leader(&mut self, term: Term, node: NodeId) -> Result<(), Violation> {
        match self.leaders.get(&term) {
            Some(&other) if other != node => Err(Violation {
                invariant: "election safety (§5.2)",
                detail: format!("nodes {other} and {node} both led term {term}"),
            }),
            Some(_) => Ok(()),
            None => {
                self.leaders.insert(term, node);
                Ok(())
            }
        }
    }

    /// How many terms had a leader.
    pub fn terms_with_leader(&self) -> usize {
        self.leaders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_leaders_in_one_term_is_a_violation() {
        let mut e = ElectionSafety::default();
        e.observe_leader(Term(1), NodeId(1)).unwrap();
        e.observe_leader(Term(1), NodeId(1)).unwrap();
        e.observe_leader(Term(2), NodeId(2)).unwrap();
        assert!(e.observe_leader(Term(2), NodeId(3)).is_err());
    }
}
