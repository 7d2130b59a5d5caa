//! `tokenwatch replay --actions`: what the response policy would do to a
//! dataset, end to end through the CLI (the bundled mini dataset).

use std::collections::BTreeMap;
use std::process::Command;

fn replay_actions(config: Option<&str>) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("actions.jsonl");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenwatch"));
    cmd.arg("replay");
    for f in std::fs::read_dir("replay/datasets/mini").unwrap() {
        let p = f.unwrap().path();
        if p.to_string_lossy().ends_with(".jsonl.gz") {
            cmd.arg(p);
        }
    }
    if let Some(c) = config {
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, c).unwrap();
        cmd.arg("--config").arg(path);
    }
    let st = cmd
        .args([
            "--geoip-city",
            "replay/geo/city.mmdb",
            "--geoip-asn",
            "replay/geo/asn.mmdb",
        ])
        .args(["--findings", "/dev/null", "--no-progress", "--actions"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn by_default_revocations_are_only_observed_one_per_incident() {
    let actions = replay_actions(None);
    let revokes: Vec<_> = actions.iter().filter(|a| a["kind"] == "revoke").collect();
    assert!(
        revokes.len() >= 5,
        "the mini dataset has attacks: {actions:?}"
    );
    let mut per_incident = BTreeMap::new();
    for r in &revokes {
        assert_eq!(r["state"]["state"], "observe", "{r}");
        *per_incident
            .entry(r["incident_id"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert!(per_incident.values().all(|n| *n == 1), "{per_incident:?}");
    assert!(
        actions
            .iter()
            .any(|a| a["kind"] == "alert" && a["state"]["state"] == "execute")
    );
}

#[test]
fn an_enforcing_rule_with_a_small_budget_trips_its_fuse() {
    let config = r#"
[policy]
max_revocations_per_minute = 1
max_revocations_per_hour = 1

[[policy.rules]]
name = "all"
min_severity = "low"
actions = ["revoke", "alert"]
mode = "enforce"
"#;
    let actions = replay_actions(Some(config));
    let executed = actions
        .iter()
        .filter(|a| a["kind"] == "revoke" && a["state"]["state"] == "execute")
        .count();
    assert_eq!(executed, 1, "nothing revoked beyond the budget");
    assert!(
        actions.iter().any(|a| a["summary"]
            .as_str()
            .unwrap()
            .contains("SAFETY FUSE TRIPPED")),
        "a loud alert says the fuse tripped"
    );
}

#[test]
fn hash_password_makes_an_argon2id_hash_the_dashboard_accepts() {
    use std::io::Write;
    let run = |pw: &str| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
            .arg("hash-password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{pw}").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("a long enough passphrase");
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let cfg = tokenwatch::config::DashboardConfig {
        users: vec![tokenwatch::config::UserConfig {
            name: "alice".into(),
            role: tokenwatch::config::Role::Responder,
            password_hash: hash,
        }],
        ..Default::default()
    };
    let auth = tokenwatch::web::Auth::new(&cfg, Vec::new(), false).unwrap();
    assert_eq!(
        auth.check_password("alice", "a long enough passphrase", 0),
        Some(tokenwatch::config::Role::Responder)
    );
    assert_eq!(
        auth.check_password("alice", "a long enough passphrasE", 0),
        None
    );
    let short = run("short");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12 characters"));
}
