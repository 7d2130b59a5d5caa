use std::sync::Arc;

use super::*;
use crate::config::{NeverActConfig, ProtectedConfig};
use crate::detect::FindingKind;
use crate::event::TokenId;

fn finding(
    token: &str,
    subject: Option<&str>,
    kind: FindingKind,
    sev: Severity,
    ts: i64,
) -> Finding {
    Finding {
        id: format!("f-{token}-{ts}-{}", kind.as_str()),
        kind,
        severity: sev,
        score: 80,
        mode: Mode::Enforce,
        token_id: TokenId(Arc::from(token)),
        subject: subject.map(Arc::from),
        client_id: Some(Arc::from("web-app")),
        event_time: String::new(),
        event_ts: ts,
        evidence_first: String::new(),
        evidence_last: String::new(),
        summary: "used from two places".into(),
        client_ip: "20.0.0.1".into(),
        asn: 64500,
        network: "residential",
        country: None,
        city: None,
        route: "/v1/records".into(),
        user_agent: String::new(),
        evidence: serde_json::Value::Null,
        context: None,
        source_ts: None,
        token_exp: None,
    }
}

fn enforcing() -> PolicyConfig {
    let mut p = PolicyConfig::default();
    for r in &mut p.rules {
        r.mode = Mode::Enforce;
    }
    p
}

fn revoke(d: &Decision) -> Option<&ActionRequest> {
    d.actions.iter().find(|a| a.kind == ActionKind::Revoke)
}

fn alert(d: &Decision) -> Option<&ActionRequest> {
    d.actions
        .iter()
        .find(|a| a.kind == ActionKind::Alert && a.rule != "policy")
}

const T0: i64 = 1_767_225_600_000;

#[test]
fn defaults_observe_revocations_and_send_alerts() {
    let mut d = Decider::new(&PolicyConfig::default());
    let out = d.decide(&finding(
        "t1",
        Some("alice"),
        FindingKind::TokenReplay,
        Severity::High,
        T0,
    ));
    assert!(out.opened);
    let r = revoke(&out).expect("a revocation is considered");
    assert_eq!(
        r.state,
        ActionState::Observe("rule stolen-token is in observe mode".into())
    );
    assert!(r.summary.contains("not revoking token t1"), "{}", r.summary);
    let a = alert(&out).expect("an alert");
    assert_eq!(
        a.state,
        ActionState::Execute,
        "the notify rule enforces alerts"
    );
    assert_eq!(a.rule, "notify");
}

#[test]
fn one_incident_per_subject_one_revocation_alerts_on_escalation() {
    let mut d = Decider::new(&enforcing());
    let first = d.decide(&finding(
        "t1",
        Some("alice"),
        FindingKind::TokenReplay,
        Severity::High,
        T0,
    ));
    assert_eq!(revoke(&first).unwrap().state, ActionState::Execute);
    assert_eq!(revoke(&first).unwrap().target, Some(Target::Token));
    let again = d.decide(&finding(
        "t1",
        Some("alice"),
        FindingKind::BulkSiphon,
        Severity::High,
        T0 + 1000,
    ));
    assert!(!again.opened);
    assert_eq!(again.incident.id, first.incident.id);
    assert_eq!(again.incident.findings, 2);
    assert!(revoke(&again).is_none(), "already revoked: not twice");
    assert!(alert(&again).is_none(), "same severity: no second alert");
    let worse = d.decide(&finding(
        "t1",
        Some("alice"),
        FindingKind::ImpossibleTravel,
        Severity::Critical,
        T0 + 2000,
    ));
    assert!(
        alert(&worse)
            .unwrap()
            .summary
            .starts_with("escalated critical")
    );
    assert_eq!(d.open_incidents(), 1);
    assert!(d.resolve(&first.incident.id));
    let reopened = d.decide(&finding(
        "t2",
        Some("alice"),
        FindingKind::TokenReplay,
        Severity::High,
        T0 + 3000,
    ));
    assert!(reopened.opened);
}

#[test]
fn a_false_positive_storm_trips_the_fuse_and_says_so() {
    let mut p = enforcing();
    p.rules[0].max_revocations_per_minute = 3;
    let mut d = Decider::new(&p);
    let mut executed = 0;
    let mut fuse_alerts = 0;
    for i in 0..10 {
        let out = d.decide(&finding(
            &format!("t{i}"),
            Some(&format!("u{i}")),
            FindingKind::TokenReplay,
            Severity::High,
            T0 + i * 1000,
        ));
        let r = revoke(&out).unwrap();
        if r.state == ActionState::Execute {
            executed += 1;
        }
        fuse_alerts += out
            .actions
            .iter()
            .filter(|a| a.rule == "policy" && a.summary.contains("SAFETY FUSE TRIPPED"))
            .count();
        if i >= 4 {
            assert!(
                matches!(&r.state, ActionState::Observe(w) if w.contains("fuse tripped earlier"))
            );
        }
    }
    assert_eq!(executed, 3, "nothing revoked beyond the budget");
    assert_eq!(fuse_alerts, 1, "one loud alert when it trips");
    assert_eq!(d.tripped(), vec!["stolen-token".to_string()]);
    // Still tripped an hour later: only a person resets it.
    let later = d.decide(&finding(
        "t99",
        Some("u99"),
        FindingKind::TokenReplay,
        Severity::High,
        T0 + 7_200_000,
    ));
    assert!(matches!(
        &revoke(&later).unwrap().state,
        ActionState::Observe(_)
    ));
    assert!(d.reset_fuse("stolen-token"));
    let after = d.decide(&finding(
        "t100",
        Some("u100"),
        FindingKind::TokenReplay,
        Severity::High,
        T0 + 7_300_000,
    ));
    assert_eq!(revoke(&after).unwrap().state, ActionState::Execute);
}

#[test]
fn the_global_budget_holds_across_rules() {
    let mut p = enforcing();
    p.max_revocations_per_minute = 2;
    let mut d = Decider::new(&p);
    let kinds = [
        FindingKind::TokenReplay,
        FindingKind::BulkSiphon,
        FindingKind::Enumeration,
    ];
    let executed = (0..3)
        .filter(|i| {
            let out = d.decide(&finding(
                &format!("t{i}"),
                None,
                kinds[*i as usize],
                Severity::High,
                T0 + i * 10,
            ));
            revoke(&out).unwrap().state == ActionState::Execute
        })
        .count();
    assert_eq!(executed, 2);
    assert_eq!(d.tripped(), vec!["policy".to_string()]);
}

#[test]
fn protected_never_act_dry_run_and_expiring_tokens() {
    let mut p = enforcing();
    p.protected = ProtectedConfig {
        subjects: vec!["ceo".into()],
        client_ids: vec![],
    };
    p.never_act = NeverActConfig {
        cidrs: vec!["20.0.0.0/24".parse().unwrap()],
        ..NeverActConfig::default()
    };
    let mut d = Decider::new(&p);
    let mut f = finding(
        "t1",
        Some("ceo"),
        FindingKind::TokenReplay,
        Severity::High,
        T0,
    );
    f.client_ip = "30.0.0.1".into();
    assert!(matches!(
        revoke(&d.decide(&f)).unwrap().state,
        ActionState::AwaitingApproval(_)
    ));

    let f = finding(
        "t2",
        Some("bob"),
        FindingKind::TokenReplay,
        Severity::High,
        T0,
    );
    let out = d.decide(&f);
    assert!(
        matches!(&revoke(&out).unwrap().state, ActionState::Skipped(w) if w.contains("never_act.cidrs"))
    );
    assert!(matches!(
        alert(&out).unwrap().state,
        ActionState::Skipped(_)
    ));

    let mut f = finding(
        "t3",
        Some("carol"),
        FindingKind::TokenReplay,
        Severity::High,
        T0,
    );
    f.client_ip = "30.0.0.1".into();
    f.token_exp = Some(T0 + 60_000);
    let r = d.decide(&f);
    assert_eq!(
        revoke(&r).unwrap().target,
        Some(Target::Grant),
        "expires within the margin"
    );
    assert_eq!(revoke(&r).unwrap().state, ActionState::Execute);

    let mut dry = enforcing();
    dry.dry_run = true;
    let mut d = Decider::new(&dry);
    let mut f = finding(
        "t4",
        Some("dave"),
        FindingKind::TokenReplay,
        Severity::High,
        T0,
    );
    f.client_ip = "30.0.0.1".into();
    let out = d.decide(&f);
    assert_eq!(
        revoke(&out).unwrap().state,
        ActionState::Observe("dry run".into())
    );
    assert_eq!(
        alert(&out).unwrap().state,
        ActionState::Observe("dry run".into())
    );
}

#[test]
fn an_alert_storm_becomes_a_digest_and_decisions_are_deterministic() {
    let p = PolicyConfig::default();
    let run = || {
        let mut d = Decider::new(&p);
        (0..25)
            .map(|i| {
                d.decide(&finding(
                    &format!("t{i}"),
                    None,
                    FindingKind::SuspiciousNetwork,
                    Severity::Medium,
                    T0 + i * 100,
                ))
            })
            .collect::<Vec<_>>()
    };
    let a = run();
    let states: Vec<&ActionState> = a
        .iter()
        .filter_map(|d| alert(d).map(|x| &x.state))
        .collect();
    assert_eq!(
        states
            .iter()
            .filter(|s| ***s == ActionState::Execute)
            .count(),
        10
    );
    assert_eq!(
        states
            .iter()
            .filter(|s| ***s == ActionState::Digest)
            .count(),
        15
    );
    let b = run();
    let ids = |v: &[Decision]| {
        v.iter()
            .flat_map(|d| d.actions.iter().map(|x| x.id.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b));
}

#[test]
fn a_person_switches_a_rule_to_enforce_and_back() {
    let mut d = Decider::new(&PolicyConfig::default());
    assert!(d.set_mode("stolen-token", Mode::Enforce));
    assert!(!d.set_mode("stolen-token", Mode::Enforce), "no change");
    assert!(!d.set_mode("no-such-rule", Mode::Enforce));
    let f = |t: &str, ts| finding(t, Some(t), FindingKind::TokenReplay, Severity::High, ts);
    let out = d.decide(&f("u1", T0));
    assert_eq!(revoke(&out).unwrap().state, ActionState::Execute);
    assert_eq!(out.finding_id, f("u1", T0).id);
    assert!(d.set_mode("stolen-token", Mode::Observe));
    let out = d.decide(&f("u2", T0 + 1_000));
    assert!(matches!(
        revoke(&out).unwrap().state,
        ActionState::Observe(_)
    ));
}
