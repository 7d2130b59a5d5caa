//! Every detector in one list, built from `[detectors]`: the engine runs
//! it, the dashboard's rules page and `check-config` show it. Adding a
//! detector is its config section, its rule (a [`Detector`]), its
//! [`FindingKind`] and one line here.

use crate::config::{DetectorsConfig, Mode, Severity};
use crate::detect::FindingKind;
use crate::detect::detectors::{
    BulkSiphon, Detector, Enumeration, ImpossibleTravel, SuspiciousNetwork, TokenReplay,
};

/// One detector with the settings every detector has.
pub struct Entry {
    pub detector: Box<dyn Detector>,
    pub enabled: bool,
    pub mode: Mode,
    pub severity: Severity,
    pub cooldown_secs: u64,
}

impl Entry {
    pub fn kind(&self) -> FindingKind {
        self.detector.kind()
    }
}

/// `$section` is a detector's config section, `$rule` its tuple struct.
macro_rules! entry {
    ($section:expr, $rule:ident) => {
        Entry {
            detector: Box::new($rule($section.clone())),
            enabled: $section.enabled,
            mode: $section.mode,
            severity: $section.severity,
            cooldown_secs: $section.cooldown_secs,
        }
    };
}

/// The detectors, in [`FindingKind::ALL`] order.
pub fn entries(d: &DetectorsConfig) -> Vec<Entry> {
    vec![
        entry!(d.token_replay, TokenReplay),
        entry!(d.impossible_travel, ImpossibleTravel),
        entry!(d.suspicious_network, SuspiciousNetwork),
        entry!(d.bulk_siphon, BulkSiphon),
        entry!(d.enumeration, Enumeration),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_kind_in_order() {
        let kinds: Vec<FindingKind> = entries(&DetectorsConfig::default())
            .iter()
            .map(Entry::kind)
            .collect();
        assert_eq!(kinds, FindingKind::ALL.to_vec());
    }
}
