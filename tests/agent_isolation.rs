//! Agent isolation enforced by IAM itself: the trust policies `byollm aws-setup` generates are
//! loaded into a fake STS that evaluates them with its own IAM evaluator, and the real gateway
//! mints session tags into its tokens. An agent-restricted caller can neither mint a token nor
//! obtain credentials that another agent's role, or the team's role, accepts.

use std::collections::HashMap;

use base64::Engine;
use byollm_testkit::harness::{Gateway, Harness, sha256_hex};
use byollm_testkit::support::{FakeSts, FakeStsOptions, TrustedRole, iam_allows};
use reqwest::Method;
use serde_json::{Value, json};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

const ISSUER: &str = "https://issuer.example.com";
const ACCOUNT: &str = "111111111111";
const TEAM_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme";
const REVIEWER_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme-reviewer";
const DEPLOYER_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme-deployer";
/// A role of team acme whose trust policy was generated without session tags.
const UNTAGGED_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme-untagged";
const LEGACY_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-legacy";

/// Unrestricted caller of team acme, allowed to mint tokens.
const TEAM_KEY: &str = "byollm_test_key_team_0123456789abcdef";
/// May act as the agent `reviewer` only, and may mint tokens.
const REVIEWER_MINTER_KEY: &str = "byollm_test_key_reviewer_minter_0123456789";
/// May act as the agent `reviewer` only; no tokens (the default).
const REVIEWER_KEY: &str = "byollm_test_key_reviewer_0123456789abcdef";
/// Team legacy, which mints no session tags.
const LEGACY_KEY: &str = "byollm_test_key_legacy_0123456789abcdef";

fn config(sts_url: &str) -> String {
    format!(
        r#"
[[callers]]
name = "team-worker"
key_sha256 = "{team}"
team = "acme"
mint_tokens = true

[[callers]]
name = "reviewer-minter"
key_sha256 = "{minter}"
team = "acme"
agents = ["reviewer"]
mint_tokens = true

[[callers]]
name = "reviewer-worker"
key_sha256 = "{reviewer}"
team = "acme"
agents = ["reviewer"]

[[callers]]
name = "legacy-worker"
key_sha256 = "{legacy}"
team = "legacy"

[sts]
endpoint_url = "{sts_url}"

[[teams]]
uid = "acme"
role_arn = "{TEAM_ROLE}"
session_tags = true

[[teams.agents]]
name = "reviewer"
role_arn = "{REVIEWER_ROLE}"

[[teams.agents]]
name = "deployer"
role_arn = "{DEPLOYER_ROLE}"

[[teams]]
uid = "legacy"
role_arn = "{LEGACY_ROLE}"

# Nothing listens here: a model call that got past the gateway's checks would fail with a 5xx.
[bedrock]
endpoint_url = "http://127.0.0.1:9"

[models.sonnet]
id = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
[models.opus]
id = "global.anthropic.claude-opus-4-7"
[models.haiku]
id = "us.anthropic.claude-haiku-4-5-20251001-v1:0"

[routing.teams.acme]
models = ["sonnet", "opus", "haiku"]
[routing.teams.acme.agents.reviewer]
models = ["haiku"]
[routing.teams.acme.agents.deployer]
models = ["opus"]
"#,
        team = sha256_hex(TEAM_KEY),
        minter = sha256_hex(REVIEWER_MINTER_KEY),
        reviewer = sha256_hex(REVIEWER_KEY),
        legacy = sha256_hex(LEGACY_KEY),
    )
}

struct Setup {
    sts: FakeSts,
    gateway: Gateway,
    http: reqwest::Client,
}

/// The trust policy `byollm aws-setup` prints for the gateway's own config.
fn generated_trust_policy(gateway: &Gateway, team: &str, agent: Option<&str>) -> Value {
    let mut args = vec!["aws-setup", "--team", team, "--account-id", ACCOUNT];
    if let Some(agent) = agent {
        args.extend(["--agent", agent]);
    }
    let (code, stdout, stderr) = gateway.cli(&args);
    assert_eq!(code, 0, "{stderr}");
    let output: Value = serde_json::from_str(&stdout).unwrap();
    output["trust_policy"].clone()
}

/// The generator with session tags off, for team acme (as a customer who set up the role before
/// turning session tags on would have it).
fn untagged_policy(team: &str) -> Value {
    use byollm::ops::aws_setup::{SetupInput, SubjectScope, generate};
    let input = SetupInput {
        issuer_url: ISSUER.into(),
        audience: "sts.amazonaws.com".into(),
        team_uid: byollm::principal::Uid::parse(team).unwrap(),
        scope: SubjectScope::Team,
        model_ids: vec!["anthropic.claude-3-5-haiku-20241022-v1:0".into()],
        regions: vec!["us-east-1".into()],
        profile_models: Default::default(),
        account_id: Some(ACCOUNT.into()),
        role_name: "byollm-untagged".into(),
        max_session_secs: 3600,
        agent: None,
        session_tags: false,
    };
    generate(&input).unwrap().trust_policy
}

impl Setup {
    async fn start() -> Setup {
        let sts = FakeSts::start(FakeStsOptions::default()).await;
        let gateway = BYOLLM.start_with_issuer(&config(&sts.url()), ISSUER);
        // The account registered the issuer as its OIDC provider; AWS fetches its documents,
        // here from the gateway on loopback.
        sts.set_providers(vec![ISSUER.into()]);
        sts.route_issuer(ISSUER, &gateway.url);
        let legacy_policy = generated_trust_policy(&gateway, "legacy", None);
        assert_eq!(legacy_policy["Statement"][0]["Action"], "sts:AssumeRoleWithWebIdentity");
        sts.set_roles(vec![
            TrustedRole::with_policy(TEAM_ROLE, generated_trust_policy(&gateway, "acme", None)),
            TrustedRole::with_policy(REVIEWER_ROLE, generated_trust_policy(&gateway, "acme", Some("reviewer"))),
            TrustedRole::with_policy(DEPLOYER_ROLE, generated_trust_policy(&gateway, "acme", Some("deployer"))),
            TrustedRole::with_policy(UNTAGGED_ROLE, untagged_policy("acme")),
            TrustedRole::with_policy(LEGACY_ROLE, legacy_policy),
        ]);
        Setup { sts, gateway, http: reqwest::Client::new() }
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        let response =
            self.http.post(format!("{}{path}", self.gateway.url)).bearer_auth(key).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// `POST /v1/tokens`: the token, or the error code.
    async fn mint(&self, key: &str, agent: Option<&str>, run: &str) -> Result<String, String> {
        let mut body = json!({"actor": "service_account", "principal": "ci-bot", "run_id": run});
        if let Some(agent) = agent {
            body["agent"] = agent.into();
        }
        match self.post("/v1/tokens", key, body).await {
            (200, token) => Ok(token["token"].as_str().unwrap().to_owned()),
            (_, error) => Err(error["error"]["code"].as_str().unwrap().to_owned()),
        }
    }

    /// `POST /v1/credentials`: the role STS issued them for, or the error code.
    async fn credentials(&self, key: &str, agent: Option<&str>, run: &str) -> Result<String, String> {
        let mut body = json!({"actor": "service_account", "principal": "ci-bot", "run_id": run});
        if let Some(agent) = agent {
            body["agent"] = agent.into();
        }
        match self.post("/v1/credentials", key, body).await {
            (200, credentials) => {
                let akid = credentials["AccessKeyId"].as_str().unwrap();
                let issued = self.sts.issued().into_iter().find(|c| c.access_key_id == akid).expect("issued by STS");
                Ok(issued.role_arn)
            }
            (_, error) => Err(error["error"]["code"].as_str().unwrap().to_owned()),
        }
    }

    /// A worker holding `token` calls STS itself: `Ok(())` or the AWS error code.
    async fn assume(&self, role: &str, token: &str) -> Result<(), String> {
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role),
            ("RoleSessionName", "worker-probe"),
            ("WebIdentityToken", token),
        ];
        let response = self.http.post(self.sts.url()).form(&form).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        if status == 200 {
            return Ok(());
        }
        let code = text.split("<Code>").nth(1).and_then(|rest| rest.split("</Code>").next()).unwrap_or("?");
        Err(code.to_owned())
    }

    /// Which of the account's roles accept `token`.
    async fn accepting_roles(&self, token: &str) -> Vec<&'static str> {
        let mut accepted = Vec::new();
        for role in [TEAM_ROLE, REVIEWER_ROLE, DEPLOYER_ROLE, UNTAGGED_ROLE, LEGACY_ROLE] {
            match self.assume(role, token).await {
                Ok(()) => accepted.push(role),
                Err(code) => assert_eq!(code, "AccessDenied", "{role}"),
            }
        }
        accepted
    }
}

#[tokio::test]
async fn an_agent_restricted_caller_gets_nothing_another_agents_role_or_the_team_role_accepts() {
    let setup = Setup::start().await;

    // Tokens. The restricted caller may mint only for its agent, and IAM then accepts its token
    // for that agent's role alone, whatever run it names.
    assert_eq!(setup.mint(REVIEWER_MINTER_KEY, Some("deployer"), "r1").await, Err("agent_not_allowed".into()));
    assert_eq!(setup.mint(REVIEWER_MINTER_KEY, None, "r1").await, Err("agent_required".into()));
    assert_eq!(setup.mint(REVIEWER_MINTER_KEY, Some(""), "r1").await, Err("invalid_run_field".into()));
    for run in ["r1", "r2"] {
        let token = setup.mint(REVIEWER_MINTER_KEY, Some("reviewer"), run).await.unwrap();
        assert_eq!(setup.accepting_roles(&token).await, [REVIEWER_ROLE], "run {run}");
    }
    // Without the permission, no token at all.
    assert_eq!(setup.mint(REVIEWER_KEY, Some("reviewer"), "r1").await, Err("token_minting_not_allowed".into()));

    // Credentials: the same, through the gateway's own STS calls.
    assert_eq!(setup.credentials(REVIEWER_KEY, Some("deployer"), "c1").await, Err("agent_not_allowed".into()));
    assert_eq!(setup.credentials(REVIEWER_KEY, None, "c1").await, Err("agent_required".into()));
    let calls = setup.sts.calls();
    assert_eq!(setup.credentials(REVIEWER_KEY, Some("reviewer"), "c1").await, Ok(REVIEWER_ROLE.into()));
    assert_eq!(setup.sts.calls(), calls + 1);
    let issued = setup.sts.issued().last().cloned().unwrap();
    let tags: HashMap<String, String> = issued.session_tags.iter().cloned().collect();
    assert_eq!(tags.get("team").map(String::as_str), Some("acme"));
    assert_eq!(tags.get("agent").map(String::as_str), Some("reviewer"));
    assert_eq!(tags.get("run").map(String::as_str), Some("c1"));
    assert_eq!(tags.get("principal").map(String::as_str), Some("ci-bot"));
    assert_eq!(issued.transitive_tag_keys.len(), tags.len());
    assert!(issued.source_identity.as_deref().is_some_and(|s| s.starts_with("acme.ci-bot.")), "{issued:?}");

    // The unrestricted caller: the team role for no agent, each agent's role for that agent, and
    // never one for the other.
    let team_token = setup.mint(TEAM_KEY, None, "t1").await.unwrap();
    assert_eq!(setup.accepting_roles(&team_token).await, [TEAM_ROLE]);
    let deployer_token = setup.mint(TEAM_KEY, Some("deployer"), "t1").await.unwrap();
    assert_eq!(setup.accepting_roles(&deployer_token).await, [DEPLOYER_ROLE]);
    assert_eq!(setup.credentials(TEAM_KEY, None, "t2").await, Ok(TEAM_ROLE.into()));
    assert_eq!(setup.credentials(TEAM_KEY, Some("deployer"), "t2").await, Ok(DEPLOYER_ROLE.into()));

    // A team without session tags keeps working with its untagged trust policy; its tokens carry
    // no tags, so no tag-checking role accepts them.
    assert_eq!(setup.credentials(LEGACY_KEY, None, "l1").await, Ok(LEGACY_ROLE.into()));
    let claims = |token: &str| -> Value {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    let legacy_sts_token = setup.sts.requests().last().unwrap().web_identity_token.clone().unwrap();
    assert!(claims(&legacy_sts_token).get("https://aws.amazon.com/tags").is_none());
    assert!(claims(&team_token)["https://aws.amazon.com/tags"]["principal_tags"]["team"] == json!(["acme"]));
}

#[tokio::test]
async fn the_fakes_iam_evaluator_refuses_what_aws_refuses() {
    // Tagged tokens need sts:TagSession in the trust policy: the untagged role of team acme
    // matches sub and aud, and still refuses them (checked above: UNTAGGED_ROLE never accepts).
    let provider = "arn:aws:iam::111111111111:oidc-provider/issuer.example.com";
    let policy = untagged_policy("acme");
    let mut context: HashMap<String, Vec<String>> = HashMap::new();
    context.insert("issuer.example.com:sub".into(), vec!["scoped_principal:acme/user:a".into()]);
    context.insert("issuer.example.com:aud".into(), vec!["sts.amazonaws.com".into()]);
    assert!(iam_allows(&policy, provider, &["sts:AssumeRoleWithWebIdentity"], &context));
    assert!(!iam_allows(&policy, provider, &["sts:AssumeRoleWithWebIdentity", "sts:TagSession"], &context));
    assert!(!iam_allows(
        &policy,
        "arn:aws:iam::111111111111:oidc-provider/other.example.com",
        &["sts:AssumeRoleWithWebIdentity"],
        &context
    ));
    let mut other_team = context.clone();
    other_team.insert("issuer.example.com:sub".into(), vec!["scoped_principal:acmeco/user:a".into()]);
    assert!(!iam_allows(&policy, provider, &["sts:AssumeRoleWithWebIdentity"], &other_team));

    // Operators, as IAM defines them.
    let statement = |condition: Value| {
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Federated": provider}, "Action": "sts:*", "Condition": condition,
        }]})
    };
    let tagged = |agent: Option<&str>| {
        let mut context = context.clone();
        context.insert("aws:requesttag/team".into(), vec!["acme".into()]);
        if let Some(agent) = agent {
            context.insert("aws:requesttag/agent".into(), vec![agent.into()]);
        }
        context
    };
    let action = ["sts:TagSession"];
    let cases = [
        (json!({"Null": {"aws:RequestTag/agent": "true"}}), None, true),
        (json!({"Null": {"aws:RequestTag/agent": "true"}}), Some("reviewer"), false),
        (json!({"Null": {"aws:RequestTag/agent": "false"}}), None, false),
        (json!({"StringEquals": {"aws:RequestTag/Agent": "reviewer"}}), Some("reviewer"), true),
        (json!({"StringEquals": {"aws:RequestTag/agent": "reviewer"}}), Some("Reviewer"), false),
        (json!({"StringEquals": {"aws:RequestTag/agent": "reviewer"}}), None, false),
        (json!({"StringEquals": {"aws:RequestTag/agent": ["deployer", "reviewer"]}}), Some("reviewer"), true),
        (json!({"StringEqualsIfExists": {"aws:RequestTag/agent": "reviewer"}}), None, true),
        (json!({"StringNotEquals": {"aws:RequestTag/agent": "reviewer"}}), None, true),
        (json!({"StringNotEquals": {"aws:RequestTag/agent": "reviewer"}}), Some("reviewer"), false),
        (json!({"StringLike": {"aws:RequestTag/agent": "rev*"}}), Some("reviewer"), true),
        (json!({"StringLike": {"aws:RequestTag/agent": "rev?"}}), Some("reviewer"), false),
        (json!({"NumericEquals": {"aws:RequestTag/agent": "1"}}), Some("1"), false),
        (json!({"StringEquals": {"aws:RequestTag/team": "acme", "aws:RequestTag/agent": "x"}}), Some("y"), false),
    ];
    for (condition, agent, expected) in cases {
        let allowed = iam_allows(&statement(condition.clone()), provider, &action, &tagged(agent));
        assert_eq!(allowed, expected, "{condition} with agent {agent:?}");
    }
    // An explicit Deny wins over an Allow.
    let mut policy = statement(json!({}));
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Effect": "Deny", "Principal": {"Federated": provider}, "Action": "sts:TagSession",
    }));
    assert!(!iam_allows(&policy, provider, &action, &tagged(None)));
    assert!(iam_allows(&policy, provider, &["sts:AssumeRoleWithWebIdentity"], &tagged(None)));
}

/// `(status, body)` of a call with the run's identity in headers (`agent`: `None` leaves the
/// header out).
async fn call(
    setup: &Setup,
    method: Method,
    path: &str,
    key: &str,
    agent: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = setup
        .http
        .request(method, format!("{}{path}", setup.gateway.url))
        .bearer_auth(key)
        .header("x-byollm-actor", "service_account")
        .header("x-byollm-principal", "ci-bot")
        .header("x-byollm-run-id", "m1");
    if let Some(agent) = agent {
        request = request.header("x-byollm-agent", agent);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Model lists and model calls on every surface: an agent-restricted caller sees and reaches only
/// its own agent's models, however it names another's, and refusals cost no STS call.
#[tokio::test]
async fn an_agent_restricted_caller_lists_and_reaches_only_its_agents_models() {
    let setup = Setup::start().await;
    let ids = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };

    // Model lists: the agent's own, never another agent's or the team's.
    let (status, list) = call(&setup, Method::GET, "/v1/models", REVIEWER_KEY, Some("reviewer"), &[], None).await;
    assert_eq!((status, ids(&list)), (200, vec!["haiku".to_owned()]));
    let (status, list) = call(&setup, Method::GET, "/v1/models", TEAM_KEY, None, &[], None).await;
    assert_eq!((status, ids(&list)), (200, vec!["haiku".to_owned(), "opus".into(), "sonnet".into()]));
    for (agent, extra, expected) in [
        (Some("deployer"), &[][..], (403, "agent_not_allowed")),
        (None, &[][..], (403, "agent_required")),
        (Some(""), &[][..], (400, "invalid_run_field")),
        (Some("reviewer"), &[("x-byollm-team", "legacy")][..], (403, "team_not_allowed")),
    ] {
        let (status, error) = call(&setup, Method::GET, "/v1/models", REVIEWER_KEY, agent, extra, None).await;
        assert_eq!(
            (status, error["error"]["code"].as_str().unwrap_or_default()),
            expected,
            "{agent:?} {extra:?}: {error}"
        );
        let (status, _) = call(&setup, Method::GET, "/v1/models/opus", REVIEWER_KEY, agent, extra, None).await;
        assert_eq!(status, expected.0, "{agent:?} {extra:?}");
    }
    let (status, _) = call(&setup, Method::GET, "/v1/models/opus", REVIEWER_KEY, Some("reviewer"), &[], None).await;
    assert_eq!(status, 404);
    // The Bedrock profile list: the agent's models only.
    let (status, profiles) =
        call(&setup, Method::GET, "/inference-profiles", REVIEWER_KEY, Some("reviewer"), &[], None).await;
    let profile_ids: Vec<&str> = profiles["inferenceProfileSummaries"]
        .as_array()
        .unwrap_or_else(|| panic!("{profiles}"))
        .iter()
        .map(|p| p["inferenceProfileId"].as_str().unwrap())
        .collect();
    assert_eq!((status, profile_ids), (200, vec!["us.anthropic.claude-haiku-4-5-20251001-v1:0"]));
    let (status, _) = call(
        &setup,
        Method::GET,
        "/inference-profiles/global.anthropic.claude-opus-4-7",
        REVIEWER_KEY,
        Some("reviewer"),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&setup, Method::GET, "/inference-profiles", REVIEWER_KEY, Some("deployer"), &[], None).await;
    assert_eq!(status, 403);
    let twice = "/inference-profiles?type=APPLICATION&type=SYSTEM_DEFINED";
    let (status, error) = call(&setup, Method::GET, twice, REVIEWER_KEY, Some("reviewer"), &[], None).await;
    assert_eq!((status, error["message"].is_string()), (400, true), "Bedrock's error shape: {error}");

    // Model calls for the deployer's model, on every surface and under every name: refused before
    // any STS call.
    let calls = setup.sts.calls();
    let chat = json!({"model": "opus", "messages": [{"role": "user", "content": "hi"}]});
    let messages = json!({"model": "opus", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let bedrock = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let mut attempts: Vec<(String, Value)> = vec![
        ("/v1/chat/completions".into(), chat),
        ("/v1/messages".into(), messages.clone()),
        ("/v1/messages/count_tokens".into(), messages),
    ];
    for id in [
        "opus",
        "global.anthropic.claude-opus-4-7",
        "us.anthropic.claude-opus-4-7",
        "anthropic.claude-opus-4-7",
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A111111111111%3Ainference-profile%2Fglobal.anthropic.claude-opus-4-7",
        "global.anthropic.claude-opus-4-7%2F..%2F..%2Fus.anthropic.claude-haiku-4-5-20251001-v1%3A0",
        "..%2Fopus",
        "%6Fpus",
    ] {
        for operation in ["invoke", "invoke-with-response-stream", "converse", "converse-stream", "count-tokens"] {
            attempts.push((format!("/model/{id}/{operation}"), bedrock.clone()));
        }
    }
    for (path, body) in attempts {
        for agent in [Some("reviewer"), Some("deployer"), None] {
            let (status, error) = call(&setup, Method::POST, &path, REVIEWER_KEY, agent, &[], Some(body.clone())).await;
            assert_eq!(status, 403, "{path} as {agent:?}: {error}");
        }
        let (status, error) = call(&setup, Method::POST, &path, REVIEWER_KEY, Some(""), &[], Some(body.clone())).await;
        assert_eq!(status, 400, "{path} with an empty agent: {error}");
    }
    assert_eq!(setup.sts.calls(), calls, "no STS call for a refused model call");

    // Run eviction: only what the caller could have obtained.
    assert_eq!(setup.credentials(TEAM_KEY, Some("deployer"), "shared").await, Ok(DEPLOYER_ROLE.into()));
    assert_eq!(setup.credentials(TEAM_KEY, None, "shared").await, Ok(TEAM_ROLE.into()));
    let (status, ended) = call(&setup, Method::DELETE, "/v1/runs/shared", REVIEWER_KEY, None, &[], None).await;
    assert_eq!((status, ended["evicted"].as_u64()), (200, Some(0)), "{ended}");
    let (status, ended) = call(&setup, Method::DELETE, "/v1/runs/shared", LEGACY_KEY, None, &[], None).await;
    assert_eq!((status, ended["evicted"].as_u64()), (200, Some(0)), "{ended}");
    let (status, ended) = call(&setup, Method::DELETE, "/v1/runs/shared", TEAM_KEY, None, &[], None).await;
    assert_eq!((status, ended["evicted"].as_u64()), (200, Some(2)), "{ended}");
}
