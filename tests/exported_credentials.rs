//! Credentials that leave the gateway (`POST /v1/credentials`) carry the session policy of what
//! the run's routing allows on Bedrock, and the role `byollm aws-setup --agent` prints allows no
//! other model. Both are judged by the fake STS's own IAM evaluator and its model of Bedrock's
//! authorization (crates/testkit/src/support/fake_sts.rs: `iam_permits`, `bedrock_allows`; no code shared with
//! byollm's policy builder) against every way of invoking each model: directly in several
//! regions, through each system profile from several regions to several destinations, and
//! through application profiles.

use std::time::Duration;

use byollm_testkit::harness::{Gateway, Harness, sha256_hex};
use byollm_testkit::support::{BedrockCall, FakeSts, FakeStsOptions, TrustedRole, bedrock_allows};
use serde_json::{Value, json};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

const ISSUER: &str = "https://issuer.example.com";
const ACCOUNT: &str = "111111111111";
const TEAM_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme";
const WRITER_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme-writer";
const READER_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme-reader";
const OTHER_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-other";
const BIG_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-big";
const TUNED: &str = "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/tuned1";

const ACME_KEY: &str = "byollm_test_key_acme_0123456789abcdef";
const OTHER_KEY: &str = "byollm_test_key_other_0123456789abcdef";
const BIG_KEY: &str = "byollm_test_key_big_0123456789abcdef";

/// Each served model's foundation model (the tuned application profile wraps Sonnet 4.6).
const MODELS: [(&str, &str); 4] = [
    ("sonnet", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ("opus", "anthropic.claude-opus-4-1-20250805-v1:0"),
    ("haiku", "anthropic.claude-haiku-4-5-20251001-v1:0"),
    ("tuned", "anthropic.claude-sonnet-4-6"),
];
const SOURCES: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];
const DESTINATIONS: [&str; 4] = ["us-east-1", "us-east-2", "us-west-2", "eu-west-1"];

/// acme's agents: the writer may use sonnet, the reader opus (from us-west-2) and the tuned
/// profile; team other only haiku; team big (no routing of its own) every model, among them 25
/// application profiles of unknown models, more than any session policy can hold.
fn config(sts_url: &str, reader_models: &str) -> String {
    let mut big_models = String::new();
    for i in 0..25 {
        big_models.push_str(&format!(
            "[models.app{i:02}]\nid = \"arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/app{i:02}\"\n"
        ));
    }
    format!(
        r#"
[[callers]]
name = "acme-worker"
key_sha256 = "{acme}"
team = "acme"

[[callers]]
name = "other-worker"
key_sha256 = "{other}"
team = "other"

[[callers]]
name = "big-worker"
key_sha256 = "{big}"
team = "big"

[sts]
endpoint_url = "{sts_url}"

[[teams]]
uid = "acme"
region = "us-east-1"
role_arn = "{TEAM_ROLE}"

[[teams.agents]]
name = "writer"
role_arn = "{WRITER_ROLE}"

[[teams.agents]]
name = "reader"
role_arn = "{READER_ROLE}"

[[teams]]
uid = "other"
region = "us-east-1"
role_arn = "{OTHER_ROLE}"

[[teams]]
uid = "big"
region = "us-east-1"
role_arn = "{BIG_ROLE}"

# Nothing listens here: no model call is made.
[bedrock]
endpoint_url = "http://127.0.0.1:9"

[models.sonnet]
id = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
[models.opus]
id = "us.anthropic.claude-opus-4-1-20250805-v1:0"
[models.haiku]
id = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
[models.tuned]
id = "{TUNED}"
family = "claude-sonnet-4-6"
{big_models}
[routing.teams.acme]
models = ["sonnet", "opus", "tuned"]
[routing.teams.acme.agents.writer]
models = ["sonnet"]
[routing.teams.acme.agents.reader]
models = {reader_models}
routes.opus = [{{ bedrock = {{ region = "us-west-2" }} }}]
[routing.teams.other]
models = ["haiku"]
"#,
        acme = sha256_hex(ACME_KEY),
        other = sha256_hex(OTHER_KEY),
        big = sha256_hex(BIG_KEY),
    )
}

/// Every invocation of every model that `policy` lets through, in words.
fn invocations(policy: &Value) -> Vec<String> {
    let mut allowed = Vec::new();
    for (name, model) in MODELS {
        for region in SOURCES {
            if bedrock_allows(policy, BedrockCall::Model { region, model }) {
                allowed.push(format!("{name} directly in {region}"));
            }
            for prefix in ["us", "eu", "global"] {
                let id = format!("{prefix}.{model}");
                let destinations: &[&str] = if prefix == "global" { &["any"] } else { &DESTINATIONS };
                for destination in destinations {
                    let call = BedrockCall::Profile { region, account: ACCOUNT, id: &id, model, destination };
                    if bedrock_allows(policy, call) {
                        allowed.push(format!("{name} through {prefix}. from {region} to {destination}"));
                    }
                }
            }
        }
        for arn in [TUNED, "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/app00"] {
            for destination in DESTINATIONS {
                if bedrock_allows(policy, BedrockCall::Application { arn, model, destination }) {
                    let profile = arn.rsplit('/').next().unwrap_or_default();
                    allowed.push(format!("{name} through {profile} to {destination}"));
                }
            }
        }
    }
    allowed
}

fn through_us_profile(name: &str, from: &str) -> Vec<String> {
    ["us-east-1", "us-east-2", "us-west-2"].iter().map(|to| format!("{name} through us. from {from} to {to}")).collect()
}

fn through_tuned() -> Vec<String> {
    DESTINATIONS.iter().map(|to| format!("tuned through tuned1 to {to}")).collect()
}

struct Setup {
    sts: FakeSts,
    gateway: Gateway,
    http: reqwest::Client,
}

impl Setup {
    async fn start() -> Setup {
        let sts = FakeSts::start(FakeStsOptions::default()).await;
        let gateway = BYOLLM.start_with_issuer(&config(&sts.url(), r#"["opus", "tuned"]"#), ISSUER);
        sts.set_providers(vec![ISSUER.into()]);
        sts.route_issuer(ISSUER, &gateway.url);
        let mut roles = Vec::new();
        for (arn, team, agent) in [
            (TEAM_ROLE, "acme", None),
            (WRITER_ROLE, "acme", Some("writer")),
            (READER_ROLE, "acme", Some("reader")),
            (OTHER_ROLE, "other", None),
        ] {
            roles.push(TrustedRole::with_policy(arn, aws_setup(&gateway, team, agent)["trust_policy"].clone()));
        }
        roles.push(TrustedRole::new(BIG_ROLE));
        sts.set_roles(roles);
        Setup { sts, gateway, http: reqwest::Client::new() }
    }

    /// `POST /v1/credentials` for a run of `key`'s team: (status, body).
    async fn credentials(&self, key: &str, agent: Option<&str>, run: &str) -> (u16, Value) {
        let mut body = json!({"actor": "service_account", "principal": "ci-bot", "run_id": run});
        if let Some(agent) = agent {
            body["agent"] = agent.into();
        }
        let response = self
            .http
            .post(format!("{}/v1/credentials", self.gateway.url))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// The session policy STS limited the credentials of `body` (a 200 answer) by.
    fn session_policy(&self, body: &Value) -> Value {
        let akid = body["AccessKeyId"].as_str().unwrap_or_else(|| panic!("no credentials: {body}"));
        let issued = self.sts.issued().into_iter().find(|c| c.access_key_id == akid).expect("issued by STS");
        issued.session_policy.expect("exported credentials carry a session policy")
    }

    /// What the credentials exported for `agent` of `key`'s team can invoke.
    async fn exported(&self, key: &str, agent: Option<&str>, run: &str) -> Vec<String> {
        let (status, body) = self.credentials(key, agent, run).await;
        assert_eq!(status, 200, "{body}");
        invocations(&self.session_policy(&body))
    }
}

/// `byollm aws-setup` for the gateway's own config: both policies.
fn aws_setup(gateway: &Gateway, team: &str, agent: Option<&str>) -> Value {
    let mut args = vec!["aws-setup", "--team", team, "--account-id", ACCOUNT];
    if let Some(agent) = agent {
        args.extend(["--agent", agent]);
    }
    let (code, stdout, stderr) = gateway.cli(&args);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn exported_credentials_reach_only_the_models_the_runs_routing_allows() {
    let setup = Setup::start().await;

    // The writer: Sonnet through its global profile, from the team's region; not Sonnet's
    // foundation model called directly (in any region), not through another profile, and nothing
    // of the reader's, the team's or another team's.
    let writer = setup.exported(ACME_KEY, Some("writer"), "r1").await;
    assert_eq!(writer, ["sonnet through global. from us-east-1 to any"]);

    // The reader: Opus through its US profile from the region its route names (to the US
    // destinations only), and the tuned application profile's own model through it alone.
    let reader = setup.exported(ACME_KEY, Some("reader"), "r1").await;
    let mut expected = through_us_profile("opus", "us-west-2");
    expected.extend(through_tuned());
    assert_eq!(reader, expected);

    // The team's own runs: every model of the team's list, each route from the team's region.
    let team = setup.exported(ACME_KEY, None, "r1").await;
    let mut expected = vec!["sonnet through global. from us-east-1 to any".to_owned()];
    expected.extend(through_us_profile("opus", "us-east-1"));
    expected.extend(through_tuned());
    assert_eq!(team, expected);

    // Another team: its Haiku, none of acme's models.
    let other = setup.exported(OTHER_KEY, None, "r1").await;
    assert_eq!(other, through_us_profile("haiku", "us-east-1"));

    // The agents' roles as `byollm aws-setup --agent` prints them: the same models. The reader's
    // role lists Opus in every region its routes use (the Terraform and CloudFormation inputs are
    // models × regions), while its session policy keeps each route's own region.
    let role = |agent| aws_setup(&setup.gateway, "acme", Some(agent))["permissions_policy"].clone();
    assert_eq!(invocations(&role("writer")), ["sonnet through global. from us-east-1 to any"]);
    let mut expected = through_us_profile("opus", "us-east-1");
    expected.extend(through_us_profile("opus", "us-west-2"));
    expected.extend(through_tuned());
    assert_eq!(invocations(&role("reader")), expected);
    let team_role = aws_setup(&setup.gateway, "acme", None)["permissions_policy"].clone();
    assert_eq!(invocations(&team_role), team);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_routing_reload_changes_the_policy_and_the_credentials() {
    let setup = Setup::start().await;
    let (status, before) = setup.credentials(ACME_KEY, Some("reader"), "r1").await;
    assert_eq!(status, 200, "{before}");
    let calls = setup.sts.calls();
    // Cached while the policy is the same.
    let (_, again) = setup.credentials(ACME_KEY, Some("reader"), "r1").await;
    assert_eq!((again["AccessKeyId"].clone(), setup.sts.calls()), (before["AccessKeyId"].clone(), calls));

    // The reader loses Opus: the same run now gets new credentials without it.
    let path = setup.gateway.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text.replace("models = [\"opus\", \"tuned\"]\nroutes.opus", "models = [\"tuned\"]\nroutes.opus");
    assert_ne!(text, changed);
    // The reader may keep a route for a model it no longer lists only if it lists it: drop it.
    let changed = changed.replace("routes.opus = [{ bedrock = { region = \"us-west-2\" } }]\n", "");
    std::fs::write(&path, changed).unwrap();
    let reloads = setup.gateway.logs().matches("routing policy reloaded").count();
    setup.gateway.sighup();
    for _ in 0..100 {
        if setup.gateway.logs().matches("routing policy reloaded").count() > reloads {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(setup.gateway.logs().matches("routing policy reloaded").count() > reloads, "{}", setup.gateway.logs());
    let (status, after) = setup.credentials(ACME_KEY, Some("reader"), "r1").await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(setup.sts.calls(), calls + 1, "a new policy is a new STS call");
    assert_ne!(after["AccessKeyId"], before["AccessKeyId"]);
    assert_eq!(invocations(&setup.session_policy(&after)), through_tuned());
    // The writer's credentials are untouched by the reader's change.
    let writer = setup.exported(ACME_KEY, Some("writer"), "r1").await;
    assert_eq!(writer, ["sonnet through global. from us-east-1 to any"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scope_no_session_policy_can_hold_is_refused_and_said_so_loudly() {
    let setup = Setup::start().await;
    let calls = setup.sts.calls();
    let (status, body) = setup.credentials(BIG_KEY, None, "r1").await;
    assert_eq!((status, body["error"]["code"].as_str()), (424, Some("session_policy_too_long")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("team \"big\"") && message.contains("sts.session_policy = false"), "{message}");
    assert_eq!(setup.sts.calls(), calls, "refused before any STS call");
    // Said at start, and by `byollm doctor` for such a run.
    assert!(setup.gateway.logs().contains("/v1/credentials will refuse this scope"), "{}", setup.gateway.logs());
    let (_, stdout, stderr) =
        setup.gateway.cli(&["doctor", "--team", "big", "--actor", "service_account", "--principal", "ci-bot"]);
    assert!(stdout.contains("WARNING: /v1/credentials refuses this run"), "{stdout}\n{stderr}");
    let (_, stdout, _) = setup.gateway.cli(&[
        "doctor",
        "--team",
        "acme",
        "--actor",
        "service_account",
        "--principal",
        "ci-bot",
        "--agent",
        "writer",
    ]);
    assert!(stdout.contains("session policy:") && stdout.contains("exact ("), "{stdout}");
}
