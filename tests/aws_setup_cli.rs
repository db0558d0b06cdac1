//! `byollm aws-setup` checked against tokens the issuer really mints: the generated trust policy
//! admits the team's tokens and nobody else's.

use base64::Engine;
use byollm_testkit::harness::Harness;
use byollm_testkit::support::iam_string_like as string_like;
use serde_json::Value;

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

fn claims(token: &str) -> Value {
    let payload = token.trim().split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[test]
fn trust_policy_admits_exactly_the_teams_minted_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("byollm.toml");
    std::fs::write(
        &config,
        format!(
            "[issuer]\nurl = \"https://issuer.example.com/byollm\"\n[keys]\ndir = {:?}\n[[teams]]\nuid = \"acme\"\nregion = \"eu-west-1\"\n",
            dir.path().join("jwks").display().to_string()
        ),
    )
    .unwrap();
    assert_eq!(BYOLLM.run_cli(&["keys", "generate"], Some(&config)).0, 0);
    let (code, policies, stderr) =
        BYOLLM.run_cli(&["aws-setup", "--team", "acme", "--account-id", "123456789012"], Some(&config));
    assert_eq!(code, 0, "{stderr}");
    let policies: Value = serde_json::from_str(&policies).unwrap();
    let statement = &policies["trust_policy"]["Statement"][0];
    assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    assert_eq!(
        statement["Principal"]["Federated"],
        "arn:aws:iam::123456789012:oidc-provider/issuer.example.com/byollm"
    );
    let sub_pattern =
        statement["Condition"]["StringLike"]["issuer.example.com/byollm:sub"].as_str().unwrap().to_owned();
    let aud = statement["Condition"]["StringEquals"]["issuer.example.com/byollm:aud"].clone();

    let mint = |team: &str, principal: &str| {
        let (code, token, stderr) = BYOLLM
            .run_cli(&["token", "mint", "--team", team, "--actor", "user", "--principal", principal], Some(&config));
        assert_eq!(code, 0, "{stderr}");
        claims(&token)
    };
    let ours = mint("acme", "alice");
    assert!(string_like(&sub_pattern, ours["sub"].as_str().unwrap()), "{sub_pattern} vs {}", ours["sub"]);
    assert!(aud == ours["aud"] || aud.as_array().is_some_and(|a| a.contains(&ours["aud"])));
    assert_eq!(ours["iss"], "https://issuer.example.com/byollm");
    for other in ["acmeco", "acm", "other"] {
        let theirs = mint(other, "alice");
        assert!(!string_like(&sub_pattern, theirs["sub"].as_str().unwrap()), "{other} must not match");
    }
    // A uid that smuggles `/` would match: the issuer refuses to mint it.
    assert!(string_like(&sub_pattern, "scoped_principal:acme/evil/user:x"));
    let (code, _, stderr) =
        BYOLLM.run_cli(&["token", "mint", "--team", "acme/evil", "--actor", "user", "--principal", "x"], Some(&config));
    assert_eq!(code, 1);
    assert!(stderr.contains("only A-Z"), "{stderr}");

    let (code, tfvars, _) = BYOLLM.run_cli(&["aws-setup", "--team", "acme", "--format", "tfvars"], Some(&config));
    assert_eq!(code, 0);
    assert!(tfvars.contains("issuer_url") && tfvars.contains("\"https://issuer.example.com/byollm\""), "{tfvars}");
    assert!(tfvars.contains("\"eu-west-1\""));
}

#[test]
fn aws_setup_refuses_a_dev_issuer() {
    let (code, _, stderr) = BYOLLM.run_cli(&["aws-setup", "--team", "acme"], None);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("https"), "{stderr}");
}
