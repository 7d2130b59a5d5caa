//! Unsafe defaults the command line refuses or warns about (issue 14,
//! points 14 and 15): `run` never starts under the documented token hash
//! key, a short key is refused, and `check-config` says when no proxy is
//! trusted.

use std::process::{Command, Output};

fn tokenwatch(dir: &std::path::Path, args: &[&str], key: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tokenwatch"));
    c.current_dir(dir)
        .args(args)
        .env_remove("TOKENWATCH_HASH_KEY");
    if let Some(k) = key {
        c.env("TOKENWATCH_HASH_KEY", k);
    }
    c.output().unwrap()
}

/// A config `run` accepts up to the point of connecting: a broker nobody
/// listens on (the key is checked before any connection).
const RUN_TOML: &str = r#"
[kafka]
brokers = "127.0.0.1:1"
group_id = "cli-defaults"
topics = [{ name = "in", format = "envoy" }]
"#;

#[test]
fn run_refuses_the_documented_hash_key_and_short_keys() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("run.toml"), RUN_TOML).unwrap();
    let out = tokenwatch(d.path(), &["run", "--config", "run.toml"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("needs a secret token hash key") && err.contains("TOKENWATCH_HASH_KEY"),
        "{err}"
    );
    let out = tokenwatch(d.path(), &["run", "--config", "run.toml"], Some("short"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("at least 16 random bytes"), "{err}");
    // A key by reference in the config is read from its file, not taken
    // literally (and, being too short, refused with the same advice).
    std::fs::write(d.path().join("hash.key"), "tiny\n").unwrap();
    std::fs::write(
        d.path().join("ref.toml"),
        format!("[input]\ntoken_hash_key = \"file:hash.key\"\n{RUN_TOML}"),
    )
    .unwrap();
    let out = tokenwatch(d.path(), &["run", "--config", "ref.toml"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the token hash key is 4 bytes"), "{err}");
}

const REPLAY: &[&str] = &[
    "replay",
    "envoy.jsonl",
    "--no-progress",
    "--findings",
    "/dev/null",
];

#[test]
fn replay_uses_the_documented_key_and_says_so() {
    let d = tempfile::tempdir().unwrap();
    let sample = std::fs::read("tests/data/samples/envoy.jsonl").unwrap();
    std::fs::write(d.path().join("envoy.jsonl"), sample).unwrap();
    let out = tokenwatch(d.path(), REPLAY, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("built-in documented key"), "{err}");
    // The sample carries X-Forwarded-For and nothing is trusted: the
    // summary says each client is the peer.
    assert!(
        err.contains("carry X-Forwarded-For but input.trusted_proxies is empty"),
        "{err}"
    );
    let out = tokenwatch(d.path(), REPLAY, Some("a-real-key-0123456789abcdef"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("built-in documented key"), "{err}");
}

#[test]
fn check_config_warns_when_no_proxy_is_trusted() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("a.toml"), "[input]\nformat = \"envoy\"\n").unwrap();
    let out = tokenwatch(d.path(), &["check-config", "a.toml"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("input.trusted_proxies is empty"), "{err}");
    std::fs::write(
        d.path().join("b.toml"),
        "[input]\ntrusted_proxies = [\"10.20.0.0/16\"]\n",
    )
    .unwrap();
    let out = tokenwatch(d.path(), &["check-config", "b.toml"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("trusted_proxies is empty"), "{err}");
}
