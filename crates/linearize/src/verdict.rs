//! The checker's answer: [`Verdict`], with a [`Counterexample`] a person can
//! read when the history is not linearizable.
//!
//! Everything here is plain data rendered when the verdict is built, so a
//! verdict outlives the history and prints the same every time.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::history::OpId;

/// Whether a history is linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every partition has a linearization.
    Linearizable,
    /// One partition has none; here is why.
    NotLinearizable(Box<Counterexample>),
    /// The time limit ran out first. Not a pass.
    Unknown(Unresolved),
}

impl Verdict {
    /// True for [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    /// The counterexample of a [`Verdict::NotLinearizable`].
    pub fn counterexample(&self) -> Option<&Counterexample> {
        match self {
            Verdict::NotLinearizable(c) => Some(c),
            _ => None,
        }
    }
}

/// Why a verdict is unknown: which partitions the time ran out on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// The time limit that ran out.
    pub timeout: Option<Duration>,
    /// The partitions left undecided, in history order.
    pub partitions: Vec<String>,
    /// How many partitions there were in all.
    pub total: usize,
}

/// Why a history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample {
    /// The partition (key) that cannot be linearized; `None` for a model
    /// without partitions.
    pub partition: Option<String>,
    /// How many operations that partition has.
    pub partition_len: usize,
    /// A smallest set of operations that cannot be ordered, by call time:
    /// no linearization exists even when every other operation of the
    /// partition is given an unknown outcome (reads dropped, writes allowed
    /// to take effect at any time after their call, or not at all), and
    /// giving any one of these an unknown outcome too would allow one.
    pub core: Vec<OpId>,
    /// The other writes that could take effect while the `core` runs (called
    /// before its last return), which the claim above lets happen anywhere
    /// after their call, or not at all.
    pub context: Vec<OpId>,
    /// False if shrinking stopped at its step budget: `core` is then still a
    /// set that cannot be ordered, but possibly not a smallest one.
    pub minimal: bool,
    /// The longest linearization of a prefix of the partition that the
    /// search found, in order, with the model state after each operation.
    pub prefix: Vec<(OpId, String)>,
    /// The completed operation the search could not place after `prefix`.
    pub blocked: Option<OpId>,
    /// A one-line description of every operation named above.
    pub lines: BTreeMap<OpId, String>,
}

/// How many operations of the longest prefix [`Counterexample`]'s `Display`
/// prints (the last ones, nearest to the failure).
const PREFIX_SHOWN: usize = 12;

impl Counterexample {
    fn line(&self, id: OpId) -> String {
        self.lines
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("#{}", id.0))
    }
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.partition {
            Some(key) => write!(f, "not linearizable: key {key:?}")?,
            None => write!(f, "not linearizable")?,
        }
        writeln!(f, " ({} operations)", self.partition_len)?;
        let shrunk = if self.minimal {
            "none of them can be left out"
        } else {
            "shrinking stopped at its budget: maybe not the smallest"
        };
        writeln!(
            f,
            "these {} operations cannot be ordered ({shrunk}):",
            self.core.len()
        )?;
        for &id in &self.core {
            writeln!(f, "  {}", self.line(id))?;
        }
        if !self.context.is_empty() {
            writeln!(
                f,
                "even if these {} other writes took effect at any time after their call, or not at all:",
                self.context.len()
            )?;
            for &id in &self.context {
                writeln!(f, "  {}", self.line(id))?;
            }
        }
        let skipped = self.prefix.len().saturating_sub(PREFIX_SHOWN);
        write!(
            f,
            "longest linearizable prefix: {} operations",
            self.prefix.len()
        )?;
        if skipped > 0 {
            write!(f, " ({skipped} earlier ones not shown)")?;
        }
        writeln!(f, ", with the state after each:")?;
        for (id, state) in &self.prefix[skipped..] {
            writeln!(f, "  {}  => {state}", self.line(*id))?;
        }
        if let Some(id) = self.blocked {
            writeln!(f, "then no operation can go next to explain:")?;
            writeln!(f, "  {}", self.line(id))?;
        }
        Ok(())
    }
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = self
            .timeout
            .map_or_else(|| "the search budget".to_string(), |t| format!("{t:?}"));
        let names: Vec<String> = self
            .partitions
            .iter()
            .take(5)
            .map(|p| format!("{p:?}"))
            .collect();
        let more = self.partitions.len().saturating_sub(names.len());
        let more = if more > 0 {
            format!(", and {more} more")
        } else {
            String::new()
        };
        let others = if self.partitions.len() < self.total {
            "no violation was found in the others"
        } else {
            "none was decided"
        };
        write!(
            f,
            "UNKNOWN: the time limit ({limit}) ran out with {} of {} partitions undecided ({}{more}); \
             {others}: this is NOT a pass",
            self.partitions.len(),
            self.total,
            names.join(", "),
        )
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => writeln!(f, "linearizable"),
            Verdict::NotLinearizable(c) => write!(f, "{c}"),
            Verdict::Unknown(u) => writeln!(f, "{u}"),
        }
    }
}
