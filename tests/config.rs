//! Configuration: the shipped rules.toml is valid and equals the built-in
//! defaults, and known-bad configs fail with the key and line we promise
//! (fixtures in tests/data/bad-configs, expectations in expected.txt).

use std::path::Path;

use tokenwatch::config;

#[test]
fn shipped_rules_toml_is_valid_and_documents_the_defaults() {
    let cfg = config::load(Path::new("rules.toml")).expect("rules.toml is valid");
    let d = config::Config::default();
    assert_eq!(
        format!("{:?}", cfg.detectors),
        format!("{:?}", d.detectors),
        "rules.toml and Default agree"
    );
    assert_eq!(format!("{:?}", cfg.engine), format!("{:?}", d.engine));
    assert_eq!(format!("{:?}", cfg.input), format!("{:?}", d.input));
    assert_eq!(cfg.identity, d.identity);
    assert_eq!(cfg.store, d.store);
    assert_eq!(cfg.policy, d.policy);
    assert_eq!(cfg.response, d.response);
    assert_eq!(cfg.dashboard, d.dashboard);
}

#[test]
fn bad_configs_name_key_and_line() {
    let dir = Path::new("tests/data/bad-configs");
    let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut seen = 0;
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let errs = config::load_str(&text, &name).expect_err("must fail");
        let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        for want in expected
            .lines()
            .filter(|l| l.starts_with(&format!("{name}:")))
        {
            seen += 1;
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "{name}: expected `{want}` in {got:#?}"
            );
        }
    }
    assert_eq!(
        seen,
        expected.lines().count(),
        "every expectation was checked"
    );
}

/// `KafkaConfig::default()` is what a `[kafka]` section that says only its
/// brokers and topics gets: one set of defaults, not a second one by hand.
#[test]
fn kafka_defaults_are_the_ones_a_minimal_section_gets() {
    let cfg = tokenwatch::config::load_str(
        "[kafka]\nbrokers = \"b:9092\"\ntopics = [{ name = \"gw\", format = \"envoy\" }]\n",
        "minimal.toml",
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let parsed = cfg.kafka.expect("a kafka section");
    let default = tokenwatch::config::KafkaConfig {
        brokers: "b:9092".into(),
        topics: parsed.topics.clone(),
        ..Default::default()
    };
    assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    assert_eq!(default.group_id, "tokenwatch");
    assert_eq!(default.commit_interval_ms, 2000);
}
