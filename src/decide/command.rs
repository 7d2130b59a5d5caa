//! People's acts that reach a running policy: a closed set, stored as JSON
//! in the store's `commands` table by the dashboard and `tokenwatch act`,
//! and applied by the policy itself ([`super::Decider::apply`]). A row that
//! is not one of them is an error the reader reports, never a silent no-op.

use serde::{Deserialize, Serialize};

use crate::config::Mode;

/// One act for the policy's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// A tripped fuse (`"policy"`: the global one) is reset.
    ResetFuse { rule: String },
    /// An incident is resolved: the next finding opens a new one.
    Resolve { incident_id: String },
    /// A rule is switched between observe and enforce.
    SetMode { rule: String, mode: Mode },
}

impl Command {
    /// The command's name, as the `command` column and the logs show it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::ResetFuse { .. } => "reset_fuse",
            Command::Resolve { .. } => "resolve",
            Command::SetMode { .. } => "set_mode",
        }
    }

    /// What it acts on (a rule or an incident), for the logs.
    pub fn target(&self) -> &str {
        match self {
            Command::ResetFuse { rule } | Command::SetMode { rule, .. } => rule,
            Command::Resolve { incident_id } => incident_id,
        }
    }

    /// As stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From a stored row; the error says what the row held.
    pub fn from_json(stored: &str) -> Result<Command, String> {
        serde_json::from_str(stored).map_err(|e| format!("`{stored}` is not a policy command: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips_and_unknown_ones_are_errors() {
        for c in [
            Command::ResetFuse {
                rule: "policy".into(),
            },
            Command::Resolve {
                incident_id: "inc-1".into(),
            },
            Command::SetMode {
                rule: "revoke-replay".into(),
                mode: Mode::Observe,
            },
        ] {
            assert_eq!(Command::from_json(&c.to_json()), Ok(c.clone()));
            assert!(c.to_json().contains(c.name()));
        }
        for bad in [
            r#"{"command":"reboot"}"#,
            r#"{"command":"set_mode","rule":"r","mode":"sometimes"}"#,
            r#"{"command":"reset_fuse"}"#,
            "reset_fuse",
        ] {
            assert!(Command::from_json(bad).is_err(), "{bad}");
        }
    }
}
