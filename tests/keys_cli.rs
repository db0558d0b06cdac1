//! `byollm keys remove` and `byollm keys revoke` through the real binary: what they refuse, what
//! they change in the key directory, and that their `--help` states the rules.

use byollm_testkit::harness::Harness;
use serde_json::Value;

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

fn manifest(dir: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("keyset.json")).unwrap()).unwrap()
}

fn kid_in(manifest: &Value, state: &str) -> Option<String> {
    manifest["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == state)
        .map(|k| k["kid"].as_str().unwrap().to_owned())
}

fn keys(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let mut all = vec!["keys"];
    all.extend_from_slice(args);
    let dir = dir.to_str().unwrap();
    all.extend_from_slice(&["--dir", dir]);
    BYOLLM.run_cli(&all, None)
}

#[test]
fn remove_refuses_the_active_key_and_a_young_retired_key() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("jwks");
    assert_eq!(keys(&["generate"], &dir).0, 0);
    let before = manifest(&dir);
    let active = kid_in(&before, "active").unwrap();
    let next = kid_in(&before, "next").unwrap();

    let (code, _, stderr) = keys(&["remove", &active], &dir);
    assert_eq!(code, 1);
    assert!(stderr.contains("keys rotate") && stderr.contains("keys revoke"), "{stderr}");
    assert_eq!(manifest(&dir), before, "nothing changed");

    // Rotating needs --force here (the next key is seconds old); the old active key is then retired
    // and still in use, so removing it needs --force too.
    assert_eq!(keys(&["rotate", "--force"], &dir).0, 0);
    let (code, _, stderr) = keys(&["remove", &active], &dir);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    let (code, stdout, stderr) = keys(&["remove", &active, "--force"], &dir);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains(&active));
    assert!(!dir.join(format!("{active}.pem")).exists());
    assert_eq!(kid_in(&manifest(&dir), "active"), Some(next));

    let (code, _, stderr) = keys(&["remove", "../keyset"], &dir);
    assert_eq!(code, 1);
    assert!(stderr.contains("no key") && stderr.contains("keys list"), "{stderr}");
    assert!(dir.join("keyset.json").exists());
}

#[test]
fn revoke_promotes_next_and_refuses_when_nothing_could_sign() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("jwks");
    assert_eq!(keys(&["generate"], &dir).0, 0);
    let before = manifest(&dir);
    let active = kid_in(&before, "active").unwrap();
    let next = kid_in(&before, "next").unwrap();

    let (code, _, stderr) = keys(&["revoke", &active], &dir);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(&format!("{next} is now the active key")), "{stderr}");
    assert!(stderr.contains("revoke role sessions"), "{stderr}");
    let after = manifest(&dir);
    assert_eq!(kid_in(&after, "active"), Some(next.clone()));
    let new_next = kid_in(&after, "next").unwrap();
    assert!(!after.to_string().contains(&active));
    assert!(!dir.join(format!("{active}.pem")).exists());

    // Without a next key there is nothing to promote.
    assert_eq!(keys(&["remove", &new_next], &dir).0, 0);
    let (code, _, stderr) = keys(&["revoke", &next], &dir);
    assert_eq!(code, 1);
    assert!(stderr.contains("only key that can sign"), "{stderr}");
    assert!(dir.join(format!("{next}.pem")).exists());
}

#[test]
fn help_states_the_rules() {
    // clap wraps help to the terminal width: compare with whitespace collapsed.
    let squeeze = |text: String| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let (code, remove, _) = BYOLLM.run_cli(&["keys", "remove", "--help"], None);
    let remove = squeeze(remove);
    assert_eq!(code, 0);
    for rule in ["Refused: the active key", "retired_grace_secs", "--force", "keys revoke"] {
        assert!(remove.contains(rule), "keys remove --help lacks {rule:?}:\n{remove}");
    }
    let (code, revoke, _) = BYOLLM.run_cli(&["keys", "revoke", "--help"], None);
    let revoke = squeeze(revoke);
    assert_eq!(code, 0);
    for rule in ["next key active at once", "refused when there is no next key", "does not document", "fresh key set"] {
        assert!(revoke.contains(rule), "keys revoke --help lacks {rule:?}:\n{revoke}");
    }
}
