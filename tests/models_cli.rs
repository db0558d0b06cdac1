//! `byollm models` through the binary: the catalog, the served models with their overrides, and a
//! warning naming an id the catalog does not know.

use byollm_testkit::harness::Harness;

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

#[test]
fn models_prints_the_catalog_and_the_routing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("byollm.toml");
    std::fs::write(
        &config,
        "dev = true\n[models.\"fast\"]\nid = \"us.anthropic.claude-haiku-4-5-20251001-v1:0\"\nmax_output_tokens = 8000\n\
         [models.\"odd\"]\nid = \"us.anthropic.claude-future-9\"\n",
    )
    .unwrap();
    let mut command = BYOLLM.command();
    command.arg("models").arg("--config").arg(&config);
    let output = command.output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
    let line =
        |start: &str| text.lines().find(|line| line.starts_with(start)).unwrap_or_else(|| panic!("{start}: {text}"));
    assert!(line("claude-fable-5-2 ").contains("anthropic.claude-fable-5-2"));
    assert!(line("claude-opus-4-7 ").contains("adaptive only"));
    let fast = line("fast ");
    assert!(fast.contains("claude-haiku-4-5") && fast.contains("max_output_tokens = 8000"), "{fast}");
    assert!(line("odd ").contains("conservative"));
    assert!(text.contains("warning: model \"odd\": us.anthropic.claude-future-9 matches no catalog entry"), "{text}");
}
