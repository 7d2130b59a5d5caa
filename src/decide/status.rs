//! Where an action (revoke, alert, resolve) is in its life, as stored and
//! as the dashboard filters by it: a closed set, so a typo is a compile
//! error and an unknown stored value is seen, not treated as "other".
//!
//! ```text
//! decided ──► pending ──► dispatched ──► done | failed
//!    │           ▲             └───────► no_endpoint (nothing in scope)
//!    ├──► awaiting_approval ──► pending (approved) | rejected
//!    └──► observed | skipped | digest   (never executed)
//! ```

use serde::{Deserialize, Serialize};

/// One state of an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// To be carried out by the dispatcher.
    Pending,
    /// Handed to its endpoints; deliveries under way.
    Dispatched,
    /// At least one endpoint delivered it.
    Done,
    /// Every endpoint gave up.
    Failed,
    /// Observe mode or a tripped fuse: what would have been done.
    Observed,
    /// A protected subject or client: waits for a person.
    AwaitingApproval,
    /// A person said no.
    Rejected,
    /// Never done (never-act list).
    Skipped,
    /// Folded into an alert digest (alert storm).
    Digest,
    /// No configured endpoint was in scope.
    NoEndpoint,
}

impl ActionStatus {
    /// Every state, in lifecycle order.
    pub const ALL: [ActionStatus; 10] = [
        ActionStatus::Pending,
        ActionStatus::Dispatched,
        ActionStatus::Done,
        ActionStatus::Failed,
        ActionStatus::Observed,
        ActionStatus::AwaitingApproval,
        ActionStatus::Rejected,
        ActionStatus::Skipped,
        ActionStatus::Digest,
        ActionStatus::NoEndpoint,
    ];

    /// As stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Pending => "pending",
            ActionStatus::Dispatched => "dispatched",
            ActionStatus::Done => "done",
            ActionStatus::Failed => "failed",
            ActionStatus::Observed => "observed",
            ActionStatus::AwaitingApproval => "awaiting_approval",
            ActionStatus::Rejected => "rejected",
            ActionStatus::Skipped => "skipped",
            ActionStatus::Digest => "digest",
            ActionStatus::NoEndpoint => "no_endpoint",
        }
    }

    /// Every state's name, for filters.
    // Evaluated at compile time: an index out of range fails the build.
    #[allow(clippy::indexing_slicing)]
    pub const NAMES: [&'static str; 10] = {
        let mut names = [""; 10];
        let mut i = 0;
        while i < 10 {
            names[i] = ActionStatus::ALL[i].as_str();
            i += 1;
        }
        names
    };

    /// From its stored name.
    pub fn parse(name: &str) -> Option<ActionStatus> {
        ActionStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_serde_s_and_parse_back() {
        for s in ActionStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(ActionStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ActionStatus::NAMES.len(), ActionStatus::ALL.len());
        assert_eq!(ActionStatus::parse("Pending"), None);
    }
}
