//! `byollm doctor` through the binary: reports the credential source without printing secrets.

use byollm_testkit::harness::Harness;

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

fn doctor(profile: &str, dir: &std::path::Path) -> (i32, String) {
    let mut command = BYOLLM.command();
    command.args(["doctor", "--profile", profile]);
    command
        .env("AWS_CONFIG_FILE", dir.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials"))
        .env("HOME", dir);
    let output = command.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn doctor_reports_a_profile_without_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config"), "[profile dev]\nregion = us-east-1\n[profile work]\nsso_session = corp\n[sso-session corp]\nsso_start_url = https://example.awsapps.com/start\nsso_region = us-east-1\n").unwrap();
    std::fs::write(
        dir.path().join("credentials"),
        "[dev]\naws_access_key_id = AKIADOCTORTEST1234\naws_secret_access_key = doctor-secret-value\n",
    )
    .unwrap();
    let (code, text) = doctor("dev", dir.path());
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1234"), "the key id is shown masked: {text}");
    assert!(!text.contains("AKIADOCTORTEST1234") && !text.contains("doctor-secret-value"), "{text}");

    let (code, text) = doctor("work", dir.path());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("aws sso login --profile work"), "{text}");
}
