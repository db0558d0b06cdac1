//! The credential broker as workers and AWS see it: the real binary on 127.0.0.1 in front of a fake
//! STS that speaks the query protocol and XML, and verifies every token we send through our own
//! discovery document and JWKS before answering. Where time must move (last-good credentials), the
//! same router runs in process with an injected clock; STS traffic is still real XML over HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::ProvideCredentials;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use byollm::broker::cache::Clock;
use byollm::broker::sts::SdkSts;
use byollm::config::Config;
use byollm::identity::authz::RunRequest;
use byollm::issuer::Issuer;
use byollm::principal::Uid;
use byollm_testkit::harness;
use byollm_testkit::harness::{API_KEY, Gateway, Harness, OTHER_API_KEY, callers_toml, sha256_hex};
use byollm_testkit::support;
use byollm_testkit::support::{FakeSts, FakeStsOptions, StsErrorCode, StsStep, TrustedRole};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

const ACME_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme";
const REVIEWER_ROLE: &str = "arn:aws:iam::111111111111:role/byollm-acme-reviewer";
/// Trusts another team's principals only: AWS refuses acme's tokens.
const STRANGER_ROLE: &str = "arn:aws:iam::111111111111:role/trusts-team-zeta";
/// MaxSessionDuration below our DurationSeconds: AWS answers ValidationError.
const SHORT_ROLE: &str = "arn:aws:iam::111111111111:role/max-session-1800";
const OTHER_ROLE: &str = "arn:aws:iam::222222222222:role/byollm-other";
/// A caller whose team has no role configured.
const LONELY_API_KEY: &str = "byollm_test_key_lonely_0123456789abcdef";
/// A caller of team acme that may act as the agent `reviewer` only (and so, by default, never
/// without an agent).
const REVIEWER_API_KEY: &str = "byollm_test_key_reviewer_0123456789abcdef";

fn fake_roles() -> Vec<TrustedRole> {
    let trusting = |arn: &str, team: &str| {
        TrustedRole::new(arn).sub_like(&[&format!("scoped_principal:{team}/*")]).aud_equals(&["sts.amazonaws.com"])
    };
    vec![
        trusting(ACME_ROLE, "acme"),
        trusting(REVIEWER_ROLE, "acme"),
        trusting(STRANGER_ROLE, "zeta"),
        trusting(SHORT_ROLE, "acme").max_session_duration(1800),
        trusting(OTHER_ROLE, "other"),
    ]
}

/// Callers, STS endpoint and teams, as appended to the harness config.
fn broker_toml(sts_url: &str) -> String {
    format!(
        r#"{callers}
[[callers]]
name = "lonely-worker"
key_sha256 = "{lonely}"
team = "lonely"

[[callers]]
name = "reviewer-worker"
key_sha256 = "{reviewer}"
team = "acme"
agents = ["reviewer"]

[sts]
endpoint_url = "{sts_url}"

[[teams]]
uid = "acme"
role_arn = "{ACME_ROLE}"

[[teams.agents]]
name = "reviewer"
role_arn = "{REVIEWER_ROLE}"

[[teams.agents]]
name = "stranger"
role_arn = "{STRANGER_ROLE}"

[[teams.agents]]
name = "short"
role_arn = "{SHORT_ROLE}"

[[teams]]
uid = "other"
role_arn = "{OTHER_ROLE}"
"#,
        callers = callers_toml(),
        lonely = sha256_hex(LONELY_API_KEY),
        reviewer = sha256_hex(REVIEWER_API_KEY),
    )
}

/// A fake STS and the real gateway, each knowing the other.
struct Setup {
    sts: FakeSts,
    gateway: Gateway,
    http: reqwest::Client,
}

impl Setup {
    async fn start(credential_lifetime: Option<Duration>) -> Setup {
        Setup::start_with_env(credential_lifetime, &[]).await
    }

    async fn start_with_env(credential_lifetime: Option<Duration>, env: &[(&str, &str)]) -> Setup {
        let sts =
            FakeSts::start(FakeStsOptions { roles: fake_roles(), credential_lifetime, ..Default::default() }).await;
        let gateway = BYOLLM.start_with(&broker_toml(&sts.url()), false, env);
        // The gateway picked its port; register its issuer as the account's OIDC provider.
        sts.set_providers(vec![gateway.issuer_host()]);
        Setup { sts, gateway, http: reqwest::Client::new() }
    }

    /// `POST /v1/credentials` (the credential_process shape).
    async fn process(&self, key: Option<&str>, body: Value) -> (u16, Value, HeaderMap) {
        let mut request = self.http.post(format!("{}/v1/credentials", self.gateway.url)).json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (status, response.json().await.unwrap(), headers)
    }

    /// `GET /v1/credentials/container?...` with the bare key, as the AWS container provider sends it.
    async fn container(&self, key: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}/v1/credentials/container", self.gateway.url))
            .query(query)
            .header("authorization", key)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn end_run(&self, key: Option<&str>, run: &str) -> (u16, Value) {
        let mut request = self.http.delete(format!("{}/v1/runs/{run}", self.gateway.url));
        if let Some(key) = key {
            request = request.header("authorization", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    async fn metrics(&self) -> String {
        self.http.get(format!("{}/metrics", self.gateway.url)).send().await.unwrap().text().await.unwrap()
    }

    /// The last request the fake STS saw.
    fn last_request(&self) -> support::StsRequest {
        self.sts.requests().last().cloned().expect("STS saw a request")
    }
}

/// The claims of a JWT, decoded without verifying (the fake STS verified it already).
fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn unix(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn parse_rfc3339(text: &str) -> i64 {
    aws_smithy_types::DateTime::from_str(text, aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_else(|e| panic!("Expiration {text:?} is not RFC 3339: {e}"))
        .secs()
}

/// The value of `counter{label="value"}` in Prometheus text, or 0.
fn counter(metrics: &str, series: &str) -> u64 {
    metrics.lines().find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0)
}

/// Credentials in a response must be exactly one set the fake STS issued; compared without
/// printing them.
fn assert_issued(sts: &FakeSts, access_key_id: &str, secret: &str, token: &str) -> support::IssuedCredentials {
    let issued = sts.issued().into_iter().find(|c| c.access_key_id == access_key_id);
    let issued = issued.unwrap_or_else(|| panic!("{access_key_id} was not issued by STS"));
    assert!(issued.secret_access_key == secret, "the secret access key differs from the one STS issued");
    assert!(issued.session_token == token, "the session token differs from the one STS issued");
    issued
}

/// Nothing secret in the gateway's logs: no issued secret key or session token, no web identity
/// token (or any JWT), no API key.
fn assert_logs_clean(logs: &str, sts: &FakeSts) {
    assert!(logs.contains("byollm ready"), "logs were captured");
    assert!(logs.contains("assumed role with web identity"), "the broker's own lines were captured");
    let mut secrets: Vec<String> =
        vec![API_KEY.into(), OTHER_API_KEY.into(), LONELY_API_KEY.into(), REVIEWER_API_KEY.into()];
    for issued in sts.issued() {
        secrets.push(issued.secret_access_key.clone());
        secrets.push(issued.session_token.clone());
        secrets.push(issued.session_token[..40].to_owned());
    }
    for request in sts.requests() {
        if let Some(token) = request.web_identity_token {
            secrets.extend(token.split('.').map(str::to_owned));
        }
    }
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret leaked into the gateway's logs");
    }
    assert!(!logs.contains("eyJ"), "no JWT in the gateway's logs");
    assert!(!logs.contains("IQoJb3JpZ2lu"), "no session token in the gateway's logs");
}

#[tokio::test]
async fn credentials_for_a_run_come_from_sts_once_and_are_reused_until_the_run_ends() {
    let setup = Setup::start(None).await;
    let alice = json!({"actor": "user", "principal": "alice", "run_id": "run-1"});

    // Success: the credential_process shape, exactly what STS issued.
    let (status, body, _) = setup.process(Some(API_KEY), alice.clone()).await;
    assert_eq!(status, 200, "{}", body["error"]);
    assert_eq!(body["Version"], 1);
    let akid = body["AccessKeyId"].as_str().unwrap().to_owned();
    let issued = assert_issued(
        &setup.sts,
        &akid,
        body["SecretAccessKey"].as_str().unwrap(),
        body["SessionToken"].as_str().unwrap(),
    );
    assert_eq!(parse_rfc3339(body["Expiration"].as_str().unwrap()), unix(issued.expiration));
    assert!(issued.expiration > SystemTime::now() + Duration::from_secs(3500));

    // The request STS saw: the real query protocol, a valid session name, the team's role, and a
    // token for the run's principal that STS verified through our discovery document and JWKS.
    assert_eq!(setup.sts.calls(), 1);
    let request = setup.last_request();
    assert_eq!(request.action.as_deref(), Some("AssumeRoleWithWebIdentity"));
    assert_eq!(request.version.as_deref(), Some("2011-06-15"));
    assert_eq!(request.role_arn.as_deref(), Some(ACME_ROLE));
    assert_eq!(request.duration_seconds.as_deref(), Some("3600"));
    let session = request.role_session_name.clone().unwrap();
    assert!((2..=64).contains(&session.len()), "{session}");
    assert!(session.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b)), "{session}");
    assert!(session.starts_with("alice.run-1."), "{session}");
    assert_eq!(issued.role_session_name, session);
    let claims = jwt_claims(request.web_identity_token.as_deref().unwrap());
    assert_eq!(claims["iss"], setup.gateway.url.as_str());
    assert_eq!(claims["sub"], "scoped_principal:acme/user:alice");
    assert_eq!(claims["aud"], "sts.amazonaws.com");
    assert_eq!(claims["run_id"], "run-1");
    assert_eq!(issued.subject, "scoped_principal:acme/user:alice");
    // Credentials that leave the gateway carry the session policy: Bedrock invocation of the
    // configured models only.
    let policy = issued.session_policy.clone().expect("a session policy");
    assert_eq!(request.policy.as_deref().map(|p| serde_json::from_str::<Value>(p).unwrap()), Some(policy.clone()));
    let allows = |action: &str, arn: &str| {
        policy["Statement"].as_array().unwrap().iter().any(|s| {
            s["Effect"] == "Allow"
                && s["Action"].as_array().unwrap().iter().any(|a| a == action)
                && s["Resource"].as_array().unwrap().iter().any(|r| support::iam_string_like(r.as_str().unwrap(), arn))
        })
    };
    // Every served model, as the ARNs Bedrock authorizes an invocation against: the inference
    // profile (in the caller's account) and the foundation model behind it (region-less for a
    // global profile).
    let mut served = 0;
    for model in byollm::models::default_models().values() {
        let Some((prefix, base)) = model.id.split_once('.').filter(|(p, _)| ["global", "us", "eu", "apac"].contains(p))
        else {
            continue;
        };
        served += 1;
        let profile = format!("arn:aws:bedrock:us-east-1:111111111111:inference-profile/{}", model.id);
        let region = if prefix == "global" { "" } else { "us-west-2" };
        let foundation = format!("arn:aws:bedrock:{region}::foundation-model/{base}");
        for arn in [&profile, &foundation] {
            assert!(
                allows("bedrock:InvokeModel", arn) && allows("bedrock:InvokeModelWithResponseStream", arn),
                "{arn}"
            );
        }
        assert!(!allows("bedrock:CreateModelCustomizationJob", &profile));
    }
    assert!(served > 0, "the default models include inference profiles");
    assert!(!allows("bedrock:InvokeModel", "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0"));
    assert!(!allows("s3:GetObject", "arn:aws:s3:::bucket/key"));

    // Reuse: the same run through the container route is a cache hit, in the container shape.
    let query = [("actor", "user"), ("principal", "alice"), ("run_id", "run-1")];
    let (status, container) = setup.container(API_KEY, &query).await;
    assert_eq!(status, 200, "{}", container["error"]);
    assert_eq!(container["AccessKeyId"], akid.as_str());
    assert_issued(
        &setup.sts,
        &akid,
        container["SecretAccessKey"].as_str().unwrap(),
        container["Token"].as_str().unwrap(),
    );
    assert_eq!(parse_rfc3339(container["Expiration"].as_str().unwrap()), unix(issued.expiration));
    assert!(container.get("SessionToken").is_none() && container.get("Version").is_none());
    assert_eq!(setup.sts.calls(), 1, "a second request for the run makes no STS call");

    // The agent's own role when the agent is configured; an unknown agent is refused, not
    // silently run under the team's role.
    let (status, _, _) = setup
        .process(Some(API_KEY), json!({"actor": "user", "principal": "alice", "agent": "reviewer", "run_id": "run-2"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(setup.last_request().role_arn.as_deref(), Some(REVIEWER_ROLE));
    assert_eq!(jwt_claims(setup.last_request().web_identity_token.as_deref().unwrap())["agent"], "reviewer");
    let (status, body, _) = setup
        .process(Some(API_KEY), json!({"actor": "user", "principal": "alice", "agent": "unlisted", "run_id": "run-2"}))
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_agent")), "{}", body["error"]);
    assert_eq!(setup.sts.calls(), 2);

    // No role for the team at all: 403 before any STS call.
    let (status, body, _) = setup.process(Some(LONELY_API_KEY), json!({"actor": "user", "principal": "bob"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("no_bedrock_role")), "{}", body["error"]);
    assert_eq!(setup.sts.calls(), 2);

    // Single flight: 20 concurrent requests for one run while STS is slow make one STS call.
    setup.sts.set_script(vec![StsStep::Delay(Duration::from_millis(300))]);
    let query = [("actor", "service_account"), ("principal", "ci-bot"), ("run_id", "run-sf")];
    let answers = futures_util::future::join_all((0..20).map(|_| setup.container(API_KEY, &query))).await;
    let keys: Vec<&str> = answers.iter().map(|(_, body)| body["AccessKeyId"].as_str().unwrap_or("none")).collect();
    assert!(answers.iter().all(|(status, _)| *status == 200));
    assert!(keys.iter().all(|k| *k == keys[0]), "every caller got the same credentials");
    assert_eq!(setup.sts.calls(), 3, "20 concurrent callers, one STS call");
    let single_flight_key = keys[0].to_owned();

    // Run end: another team's DELETE evicts nothing; the run's own team's evicts it.
    let (status, body) = setup.end_run(Some(OTHER_API_KEY), "run-sf").await;
    assert_eq!((status, body["evicted"].as_u64()), (200, Some(0)));
    let (_, body) = setup.container(API_KEY, &query).await;
    assert_eq!(body["AccessKeyId"], single_flight_key.as_str());
    assert_eq!(setup.sts.calls(), 3, "still cached after another team's DELETE");
    let (status, body) = setup.end_run(Some(API_KEY), "run-sf").await;
    assert_eq!((status, body["evicted"].as_u64()), (200, Some(1)));
    let (status, body) = setup.container(API_KEY, &query).await;
    assert_eq!(status, 200);
    assert_ne!(body["AccessKeyId"], single_flight_key.as_str());
    assert_eq!(setup.sts.calls(), 4, "after run end, credentials come from STS again");
    assert_eq!(setup.end_run(None, "run-sf").await.0, 401);
    let (status, body) = setup.end_run(Some(API_KEY), "run*sf").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_run_field")));

    // The metrics count STS outcomes, cache hits and misses and refreshes, and name nobody.
    let metrics = setup.metrics().await;
    assert_eq!(counter(&metrics, "byollm_sts_calls_total{outcome=\"ok\"}"), 4, "{metrics}");
    // Lookups that waited on STS: run-1, the reviewer's run-2, the 20 single-flight callers, and
    // the one after the run ended (the unknown agent was refused before the cache).
    assert_eq!(counter(&metrics, "byollm_credential_cache_total{result=\"miss\"}"), 23, "{metrics}");
    // Answered from the cache: the container call for run-1, the one after the other team's DELETE.
    assert_eq!(counter(&metrics, "byollm_credential_cache_total{result=\"hit\"}"), 2, "{metrics}");
    assert_eq!(counter(&metrics, "byollm_credential_refreshes_total{result=\"ok\"}"), 4, "{metrics}");
    for uid in ["acme", "alice", "ci-bot", "run-1", "run-sf", "reviewer", "111111111111", "ASIA"] {
        assert!(!metrics.contains(uid), "{uid} appears in the metrics");
    }
    assert_logs_clean(&setup.gateway.logs_with("assumed role with web identity"), &setup.sts);
}

#[tokio::test]
async fn the_session_policy_has_an_off_switch() {
    let setup = Setup::start_with_env(None, &[("BYOLLM_STS__SESSION_POLICY", "false")]).await;
    let (status, body, _) = setup.process(Some(API_KEY), json!({"actor": "user", "principal": "alice"})).await;
    assert_eq!(status, 200, "{}", body["error"]);
    assert!(setup.last_request().policy.is_none());
    assert!(setup.sts.issued()[0].session_policy.is_none());
}

#[tokio::test]
async fn no_team_can_reach_another_teams_principals_agents_or_roles() {
    let setup = Setup::start(None).await;
    // (API key, body, status, code)
    let cases: Vec<(Option<&str>, Value, u16, &str)> = vec![
        (Some(OTHER_API_KEY), json!({"team": "acme", "actor": "user", "principal": "alice"}), 403, "team_not_allowed"),
        (
            Some(OTHER_API_KEY),
            json!({"team": "acme", "actor": "user", "principal": "alice", "agent": "reviewer"}),
            403,
            "team_not_allowed",
        ),
        (Some(API_KEY), json!({"team": "other", "actor": "user", "principal": "carol"}), 403, "team_not_allowed"),
        // There is no way to name a role: only a principal, whose team's configuration decides.
        (
            Some(OTHER_API_KEY),
            json!({"actor": "user", "principal": "carol", "role_arn": ACME_ROLE}),
            400,
            "invalid_json",
        ),
        (Some(API_KEY), json!({"actor": "user", "principal": "a/b"}), 400, "invalid_uid"),
        (Some(API_KEY), json!({"actor": "user", "principal": "acme/*"}), 400, "invalid_uid"),
        (Some(API_KEY), json!({"team": "acme/user:x", "actor": "user", "principal": "a"}), 400, "invalid_uid"),
        (Some(API_KEY), json!({"actor": "robot", "principal": "a"}), 400, "invalid_actor"),
        (Some(API_KEY), json!({"actor": "user", "principal": "a", "agent": "x y"}), 400, "invalid_run_field"),
        (Some(API_KEY), json!({"actor": "user", "principal": "a", "run_id": "r/1"}), 400, "invalid_run_field"),
        (None, json!({"actor": "user", "principal": "alice"}), 401, "missing_api_key"),
        (Some("byollm_not_a_key"), json!({"actor": "user", "principal": "alice"}), 401, "invalid_api_key"),
    ];
    for (key, body, status, code) in cases {
        let (got, error, _) = setup.process(key, body.clone()).await;
        assert_eq!((got, error["error"]["code"].as_str()), (status, Some(code)), "{body}: {}", error["error"]);
    }
    type ContainerCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let container_cases: Vec<ContainerCase> = vec![
        (OTHER_API_KEY, vec![("team", "acme"), ("actor", "user"), ("principal", "alice")], 403, "team_not_allowed"),
        (API_KEY, vec![("actor", "user"), ("principal", "a:b")], 400, "invalid_uid"),
        (API_KEY, vec![("actor", "user")], 400, "missing_principal"),
        (API_KEY, vec![("actor", "user"), ("principal", "a"), ("agent", "")], 400, "invalid_run_field"),
        (API_KEY, vec![("actor", "user"), ("principal", "a"), ("role_arn", ACME_ROLE)], 400, "invalid_query"),
    ];
    for (key, query, status, code) in container_cases {
        let (got, error) = setup.container(key, &query).await;
        assert_eq!((got, error["error"]["code"].as_str()), (status, Some(code)), "{query:?}: {}", error["error"]);
    }
    assert_eq!(setup.sts.calls(), 0, "no refused request reached STS");

    // Team `other` naming acme's agent is refused: agents resolve within the caller's team only.
    let (status, body, _) =
        setup.process(Some(OTHER_API_KEY), json!({"actor": "user", "principal": "carol", "agent": "reviewer"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_agent")), "{}", body["error"]);
    assert_eq!(setup.sts.calls(), 0);
    // And acme's cached credentials are never served to `other` for the same principal and run.
    let acme = json!({"actor": "user", "principal": "dave", "run_id": "shared"});
    let other = json!({"actor": "user", "principal": "dave", "run_id": "shared"});
    let (_, acme_body, _) = setup.process(Some(API_KEY), acme).await;
    let (_, other_body, _) = setup.process(Some(OTHER_API_KEY), other).await;
    assert_ne!(acme_body["AccessKeyId"], other_body["AccessKeyId"]);
    assert_eq!(setup.sts.calls(), 2);
    assert_logs_clean(&setup.gateway.logs_with("assumed role with web identity"), &setup.sts);
}

#[tokio::test]
async fn an_agent_restricted_caller_acts_only_as_its_agent_on_every_route() {
    let setup = Setup::start(None).await;
    let alice = |extra: Value| {
        let mut body = json!({"actor": "user", "principal": "alice", "run_id": "shared"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    // Credentials: another agent, or none, is refused before any STS call.
    for (extra, code) in [
        (json!({"agent": "stranger"}), "agent_not_allowed"),
        (json!({"agent": "unconfigured"}), "agent_not_allowed"),
        (json!({}), "agent_required"),
        (json!({"agent": ""}), "invalid_run_field"),
    ] {
        let (status, body, _) = setup.process(Some(REVIEWER_API_KEY), alice(extra.clone())).await;
        let expected = if code == "invalid_run_field" { 400 } else { 403 };
        assert_eq!((status, body["error"]["code"].as_str()), (expected, Some(code)), "{extra}: {}", body["error"]);
    }
    let query = [("actor", "user"), ("principal", "alice"), ("run_id", "shared")];
    let (status, body) = setup.container(REVIEWER_API_KEY, &query).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("agent_required")));
    // Chat: identity headers go through the same function; present but empty is not absent.
    let chat = |agent: Option<&'static str>| {
        let mut request = setup
            .http
            .post(format!("{}/v1/chat/completions", setup.gateway.url))
            .bearer_auth(REVIEWER_API_KEY)
            .header("x-byollm-actor", "user")
            .header("x-byollm-principal", "alice");
        if let Some(agent) = agent {
            request = request.header("x-byollm-agent", agent);
        }
        async move {
            let response = request.json(&json!({"model": "claude-sonnet-4-5", "messages": []})).send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }
    };
    for (agent, status, code, param) in [
        (Some("stranger"), 403, "agent_not_allowed", None),
        (None, 403, "agent_required", None),
        (Some(""), 400, "invalid_run_field", Some("x-byollm-agent")),
    ] {
        let (got, body) = chat(agent).await;
        assert_eq!((got, body["error"]["code"].as_str()), (status, Some(code)), "{agent:?}: {}", body["error"]);
        assert_eq!(body["error"]["param"].as_str(), param);
    }
    assert_eq!(setup.sts.calls(), 0, "no refused request reached STS");

    // Its own agent works, under the agent's role.
    let (status, mine, _) = setup.process(Some(REVIEWER_API_KEY), alice(json!({"agent": "reviewer"}))).await;
    assert_eq!(status, 200, "{}", mine["error"]);
    assert_eq!(setup.last_request().role_arn.as_deref(), Some(REVIEWER_ROLE));
    // The team's unrestricted caller runs the same run under the team role, and as the reviewer.
    let (status, team, _) = setup.process(Some(API_KEY), alice(json!({}))).await;
    assert_eq!(status, 200, "{}", team["error"]);
    let (_, shared, _) = setup.process(Some(API_KEY), alice(json!({"agent": "reviewer"}))).await;
    assert_eq!(shared["AccessKeyId"], mine["AccessKeyId"], "same run, agent and principal: one cache entry");
    assert_eq!(setup.sts.calls(), 2);

    // Run end: the restricted caller ends only what it could have been authorized for (the
    // reviewer's entry), never the team-role entry of the same run.
    let (status, body) = setup.end_run(Some(REVIEWER_API_KEY), "shared").await;
    assert_eq!((status, body["evicted"].as_u64()), (200, Some(1)));
    let (_, again, _) = setup.process(Some(API_KEY), alice(json!({}))).await;
    assert_eq!(again["AccessKeyId"], team["AccessKeyId"], "the team-role entry survived");
    assert_eq!(setup.sts.calls(), 2);
    let (status, body) = setup.end_run(Some(API_KEY), "shared").await;
    assert_eq!((status, body["evicted"].as_u64()), (200, Some(1)));
    assert_logs_clean(&setup.gateway.logs_with("assumed role with web identity"), &setup.sts);
}

#[tokio::test]
async fn every_sts_failure_gets_its_documented_status_and_code() {
    let setup = Setup::start(None).await;
    let host = setup.gateway.issuer_host();
    let unreachable = "Couldn't retrieve verification key from your identity provider,  please reference \
                       AssumeRoleWithWebIdentity documentation for requirements";
    enum Arrange {
        Script(Vec<StsStep>),
        Providers(Vec<String>),
        Audiences(Vec<String>),
        Nothing,
    }
    // (what to change, agent, status, code, STS calls made)
    let cases = vec![
        // AWS's own checks against the trust policy, the account's providers and the role.
        (Arrange::Nothing, Some("stranger"), 403, "sts_trust_policy_mismatch", 1),
        (Arrange::Providers(vec![]), None, 424, "sts_oidc_provider_missing", 1),
        (Arrange::Audiences(vec!["not-sts".into()]), None, 424, "sts_oidc_audience_mismatch", 1),
        (Arrange::Nothing, Some("short"), 424, "sts_invalid_parameters", 1),
        // Failures a fake issuer cannot provoke on demand, as AWS reports them.
        (
            Arrange::Script(vec![StsStep::FailWith(StsErrorCode::InvalidIdentityToken, unreachable.into()); 3]),
            None,
            502,
            "sts_issuer_unreachable",
            3,
        ),
        (
            Arrange::Script(StsStep::fail_times(StsErrorCode::IdpCommunicationError, 3)),
            None,
            502,
            "sts_issuer_unreachable",
            3,
        ),
        (Arrange::Script(vec![StsStep::Fail(StsErrorCode::ExpiredToken)]), None, 502, "sts_token_expired", 1),
        (
            Arrange::Script(vec![StsStep::FailWith(
                StsErrorCode::InvalidIdentityToken,
                "The web identity token signature is invalid".into(),
            )]),
            None,
            424,
            "sts_invalid_identity_token",
            1,
        ),
        (Arrange::Script(vec![StsStep::Fail(StsErrorCode::RegionDisabled)]), None, 424, "sts_region_disabled", 1),
        (Arrange::Script(StsStep::fail_times(StsErrorCode::Throttling, 3)), None, 429, "sts_throttled", 3),
        (Arrange::Script(StsStep::fail_times(StsErrorCode::ServiceUnavailable, 3)), None, 503, "sts_unavailable", 3),
        (Arrange::Script(StsStep::fail_times(StsErrorCode::InternalFailure, 3)), None, 503, "sts_unavailable", 3),
    ];
    for (index, (arrange, agent, status, code, calls)) in cases.into_iter().enumerate() {
        match arrange {
            Arrange::Script(steps) => setup.sts.set_script(steps),
            Arrange::Providers(providers) => setup.sts.set_providers(providers),
            Arrange::Audiences(audiences) => setup.sts.set_audiences(audiences),
            Arrange::Nothing => {}
        }
        let before = setup.sts.calls();
        let run = format!("err-{index}");
        let mut body = json!({"actor": "user", "principal": "alice", "run_id": run});
        if let Some(agent) = agent {
            body["agent"] = agent.into();
        }
        let (got, error, headers) = setup.process(Some(API_KEY), body).await;
        assert_eq!((got, error["error"]["code"].as_str()), (status, Some(code)), "case {index}: {}", error["error"]);
        assert_eq!(setup.sts.calls() - before, calls, "case {index} ({code}): STS calls");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("AWS said"), "{message}");
        if status == 429 {
            assert_eq!(headers["retry-after"], "2");
        }
        setup.sts.set_providers(vec![host.clone()]);
        setup.sts.set_audiences(vec!["sts.amazonaws.com".into()]);
    }
    // The messages name what to check.
    let (_, error, _) = setup
        .process(Some(API_KEY), json!({"actor": "user", "principal": "alice", "agent": "stranger", "run_id": "x"}))
        .await;
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains(STRANGER_ROLE) && message.contains("scoped_principal:acme/*"), "{message}");
    assert!(message.contains(&format!("{host}:aud")), "{message}");

    // A transient failure, then success: retried inside one request, one answer.
    setup.sts.set_script(vec![StsStep::Fail(StsErrorCode::Throttling), StsStep::Normal]);
    let before = setup.sts.calls();
    let (status, body, _) =
        setup.process(Some(API_KEY), json!({"actor": "user", "principal": "alice", "run_id": "retry"})).await;
    assert_eq!(status, 200, "{}", body["error"]);
    assert_eq!(setup.sts.calls() - before, 2);
    assert_eq!(setup.sts.requests().last().unwrap().access_key_id.as_deref(), body["AccessKeyId"].as_str());

    let metrics = setup.metrics().await;
    for (outcome, count) in [
        ("trust_policy_mismatch", 2),
        ("oidc_provider_missing", 1),
        ("oidc_audience_mismatch", 1),
        ("invalid_token", 1),
        ("issuer_unreachable", 6),
        ("token_expired", 1),
        ("invalid_parameters", 1),
        ("region_disabled", 1),
        ("throttled", 4),
        ("upstream_error", 6),
        ("ok", 1),
    ] {
        let series = format!("byollm_sts_calls_total{{outcome=\"{outcome}\"}}");
        assert_eq!(counter(&metrics, &series), count, "{series} in\n{metrics}");
    }
    assert_eq!(counter(&metrics, "byollm_credential_refreshes_total{result=\"error\"}"), 13, "{metrics}");
    assert!(!metrics.contains("alice") && !metrics.contains("acme"));
    assert_logs_clean(&setup.gateway.logs_with("assumed role with web identity"), &setup.sts);
}

#[tokio::test]
async fn short_lived_credentials_are_refreshed_on_the_next_request() {
    // Two-second credentials: the refresh point (75% of the lifetime, and never within five
    // minutes of expiry) has passed as soon as they arrive.
    let setup = Setup::start(Some(Duration::from_secs(2))).await;
    let query = [("actor", "service_account"), ("principal", "ci-bot"), ("run_id", "short")];
    let (status, first) = setup.container(API_KEY, &query).await;
    assert_eq!(status, 200, "{}", first["error"]);
    let expires = parse_rfc3339(first["Expiration"].as_str().unwrap());
    assert!(expires <= unix(SystemTime::now()) + 3, "two-second credentials");
    let (status, second) = setup.container(API_KEY, &query).await;
    assert_eq!(status, 200);
    assert_ne!(first["AccessKeyId"], second["AccessKeyId"]);
    assert_eq!(setup.sts.calls(), 2);
    let metrics = setup.metrics().await;
    assert_eq!(counter(&metrics, "byollm_credential_refreshes_total{result=\"ok\"}"), 2, "{metrics}");
    assert_eq!(counter(&metrics, "byollm_credential_cache_total{result=\"hit\"}"), 0, "{metrics}");
    assert_logs_clean(&setup.gateway.logs_with("assumed role with web identity"), &setup.sts);
}

// ---------------------------------------------------------------------------------------------
// A real AWS SDK as the worker.

/// The credentials an SDK provider returned, reduced to what can be printed and compared.
fn fingerprint(credentials: &aws_credential_types::Credentials) -> String {
    format!(
        "{} {} {} {}",
        credentials.access_key_id(),
        sha256_hex(credentials.secret_access_key()),
        sha256_hex(credentials.session_token().unwrap_or_default()),
        credentials.expiry().map(unix).unwrap_or_default()
    )
}

fn issued_fingerprint(issued: &support::IssuedCredentials) -> String {
    format!(
        "{} {} {} {}",
        issued.access_key_id,
        sha256_hex(&issued.secret_access_key),
        sha256_hex(&issued.session_token),
        unix(issued.expiration)
    )
}

const SDK_CHILD: &str = "BYOLLM_TEST_SDK_CHILD";

/// Runs only as a child of [`the_aws_sdk_container_provider_gets_credentials_from_the_broker`],
/// which sets the container-credentials variables in the child's environment alone.
#[tokio::test]
#[ignore = "run as a child process by the_aws_sdk_container_provider_gets_credentials_from_the_broker"]
async fn sdk_container_child() {
    if std::env::var_os(SDK_CHILD).is_none() {
        return;
    }
    let ecs = aws_config::ecs::EcsCredentialsProvider::builder().build();
    let credentials = ecs.provide_credentials().await.expect("the container provider got credentials");
    println!("\nsdk-credentials ECS {}", fingerprint(&credentials));
    // A stock worker: the default chain, configured by nothing but the two variables.
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).region("us-east-1").load().await;
    let provider = config.credentials_provider().expect("a default credentials provider");
    let credentials = provider.provide_credentials().await.expect("the default chain got credentials");
    println!("\nsdk-credentials DEFAULT {}", fingerprint(&credentials));
}

#[tokio::test]
async fn the_aws_sdk_container_provider_gets_credentials_from_the_broker() {
    let setup = Setup::start(None).await;
    let home = tempfile::tempdir().unwrap();
    let uri = format!(
        "{}/v1/credentials/container?actor=service_account&principal=ci-bot&agent=reviewer&run_id=sdk-1",
        setup.gateway.url
    );
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child.args(["sdk_container_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"]);
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") || name.starts_with("BYOLLM_") {
            child.env_remove(name);
        }
    }
    child
        .env(SDK_CHILD, "1")
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri)
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", API_KEY);
    // Blocking wait off the runtime: the fake STS runs on this test's runtime.
    let output = tokio::time::timeout(Duration::from_secs(60), tokio::task::spawn_blocking(move || child.output()))
        .await
        .expect("the SDK child finished within 60 s")
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let issued = setup.sts.issued();
    assert_eq!(issued.len(), 1, "both providers were served from one STS call");
    assert_eq!(issued[0].role_arn, REVIEWER_ROLE);
    let expected = issued_fingerprint(&issued[0]);
    for provider in ["ECS", "DEFAULT"] {
        let line = stdout.lines().find_map(|l| l.strip_prefix(&format!("sdk-credentials {provider} ")));
        assert_eq!(line, Some(expected.as_str()), "{provider}: {stdout}");
    }
    assert_logs_clean(&setup.gateway.logs_with("assumed role with web identity"), &setup.sts);
}

#[tokio::test]
async fn the_aws_sdk_credential_process_provider_gets_credentials_from_the_broker() {
    use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
    let setup = Setup::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    // The key stays out of the config file and the process list: curl reads the header from a file.
    let header = dir.path().join("byollm-auth-header");
    std::fs::write(&header, format!("Authorization: Bearer {API_KEY}\n")).unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[profile worker]\ncredential_process = curl -sSf -H @{} -H 'Content-Type: application/json' -d '{{\"actor\":\"service_account\",\"principal\":\"ci-bot\",\"run_id\":\"proc-1\"}}' {}/v1/credentials\n",
            header.display(),
            setup.gateway.url
        ),
    )
    .unwrap();
    let files = EnvConfigFiles::builder().with_file(EnvConfigFileKind::Config, &config).build();
    let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
        .profile_files(files)
        .profile_name("worker")
        .build();
    let credentials = tokio::time::timeout(Duration::from_secs(30), provider.provide_credentials())
        .await
        .unwrap()
        .expect("credential_process got credentials");
    let issued = setup.sts.issued();
    assert_eq!(issued.len(), 1);
    assert_eq!(fingerprint(&credentials), issued_fingerprint(&issued[0]));
    assert_eq!(issued[0].role_arn, ACME_ROLE);

    // A refused request makes the process fail, and the SDK reports it.
    let refused = dir.path().join("refused");
    std::fs::write(&refused, "Authorization: Bearer byollm_not_a_key\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "[profile worker]\ncredential_process = curl -sSf -H @{} -H 'Content-Type: application/json' -d '{{\"actor\":\"user\",\"principal\":\"x\"}}' {}/v1/credentials\n",
            refused.display(),
            setup.gateway.url
        ),
    )
    .unwrap();
    let files = EnvConfigFiles::builder().with_file(EnvConfigFileKind::Config, &config).build();
    let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
        .profile_files(files)
        .profile_name("worker")
        .build();
    assert!(provider.provide_credentials().await.is_err());
    assert_eq!(setup.sts.calls(), 1);
    assert_logs_clean(&setup.gateway.logs_with("assumed role with web identity"), &setup.sts);
}

// ---------------------------------------------------------------------------------------------
// In process, with an injected clock: what the binary cannot be made to live through quickly.

/// The real time plus an offset tests move.
#[derive(Default)]
struct ShiftedClock(AtomicI64);

impl ShiftedClock {
    fn advance_to(&self, secs: i64) {
        self.0.store(secs, Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> SystemTime {
        let offset = self.0.load(Ordering::SeqCst);
        SystemTime::now() + Duration::from_secs(offset.max(0) as u64)
    }
}

struct InProcess {
    state: byollm::AppState,
    url: String,
    clock: Arc<ShiftedClock>,
    sts: FakeSts,
    _task: support::ServerTask,
    _dir: tempfile::TempDir,
}

/// The gateway's router on 127.0.0.1 with a shifted clock. `issuer_url`: where tokens claim to
/// come from (default: this server); `sts_url`: where STS is (default: the fake).
async fn in_process(issuer_url: Option<String>, sts_url: Option<String>) -> InProcess {
    let sts = FakeSts::start(FakeStsOptions { roles: fake_roles(), ..Default::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let (listener, url) = support::bind().await;
    let issuer_url = issuer_url.unwrap_or_else(|| url.clone());
    sts.set_providers(vec![issuer_url.clone()]);
    let toml = format!(
        "dev = true\n[issuer]\nurl = \"{issuer_url}\"\n[keys]\ndir = {:?}\nmin_next_age_secs = 0\n{}",
        dir.path().join("jwks").display().to_string(),
        broker_toml(&sts_url.clone().unwrap_or_else(|| sts.url()))
    );
    let config = Config::from_toml(&toml).unwrap();
    let issuer = Issuer::open(&config).unwrap();
    let clock = Arc::new(ShiftedClock::default());
    let sdk = SdkSts::new(&config.sts.region, config.sts.endpoint_url.as_deref());
    let routing = byollm::app::routing_policy(&config, byollm::routing::Mode::Hosted).expect("a valid routing policy");
    let wiring = byollm::app::Wiring::new(Arc::new(config), routing);
    let state = byollm::app::cloud(wiring, issuer, Arc::new(sdk), clock.clone());
    let task = support::serve_on(listener, byollm::router(state.clone()));
    InProcess { state, url, clock, sts, _task: task, _dir: dir }
}

impl InProcess {
    async fn get(&self, run: &str) -> (u16, Value) {
        let response = reqwest::Client::new()
            .get(format!("{}/v1/credentials/container", self.url))
            .query(&[("actor", "user"), ("principal", "alice"), ("run_id", run)])
            .header("authorization", API_KEY)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

#[tokio::test]
async fn requests_during_a_slow_or_failing_refresh_are_answered_from_the_cache() {
    let app = in_process(None, None).await;
    let (status, first) = app.get("lg").await;
    assert_eq!(status, 200, "{}", first["error"]);
    let first_key = first["AccessKeyId"].as_str().unwrap().to_owned();

    // Before the refresh point (75% of an hour): served from the cache.
    app.clock.advance_to(2600);
    assert_eq!(app.get("lg").await.1["AccessKeyId"], first_key.as_str());
    assert_eq!(app.sts.calls(), 1);

    // Past it, STS takes 3 s to answer: every request meanwhile is answered from the cache at
    // once, and one background task refreshes.
    app.clock.advance_to(2800);
    app.sts.set_script(vec![StsStep::Delay(Duration::from_secs(3))]);
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let (status, body) = app.get("lg").await;
        assert_eq!((status, body["AccessKeyId"].as_str()), (200, Some(first_key.as_str())));
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1500), "10 requests took {elapsed:?} while STS took 3 s");
    assert_eq!(app.state.metrics.credential_cache.get("hit"), 11);
    // The refresh lands; its credentials serve from then on, after one STS call in all.
    let mut second_key = first_key.clone();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        second_key = app.get("lg").await.1["AccessKeyId"].as_str().unwrap().to_owned();
        if second_key != first_key {
            break;
        }
    }
    assert_ne!(second_key, first_key, "the background refresh replaced the credentials");
    assert_eq!(app.sts.calls(), 2);

    // Their refresh point: 75% of what is left of their hour at the shifted clock. STS now
    // throttles: the background refresh fails (three attempts), the last good credentials keep
    // serving, and the entry backs off instead of starting an STS round per request.
    app.clock.advance_to(3400);
    app.sts.set_script(StsStep::fail_times(StsErrorCode::Throttling, 3));
    assert_eq!(app.get("lg").await.1["AccessKeyId"], second_key.as_str());
    for _ in 0..100 {
        if app.state.metrics.credential_refreshes.get("error") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.sts.calls(), 5, "the refresh was attempted, three times");
    for _ in 0..5 {
        let (status, stale) = app.get("lg").await;
        assert_eq!((status, stale["AccessKeyId"].as_str()), (200, Some(second_key.as_str())));
    }
    assert_eq!(app.sts.calls(), 5, "no STS round per request while the entry backs off");
    assert_eq!(app.state.metrics.credential_cache.get("stale_served"), 5);

    // After the backoff, a permanent refusal (the customer removed the trust) is not papered
    // over with the old credentials: once it lands, requests get it, without an STS call each.
    app.clock.advance_to(3405);
    app.sts.set_script(vec![StsStep::Fail(StsErrorCode::AccessDenied)]);
    assert_eq!(app.get("lg").await.0, 200, "the refresh runs in the background");
    let mut refused = (0, Value::Null);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        refused = app.get("lg").await;
        if refused.0 != 200 {
            break;
        }
    }
    assert_eq!((refused.0, refused.1["error"]["code"].as_str()), (403, Some("sts_trust_policy_mismatch")));
    assert_eq!(app.get("lg").await.0, 403);
    assert_eq!(app.sts.calls(), 6);
    assert!(app.state.metrics.credential_cache.get("backoff") >= 2);

    // The trust is back and the backoff over: fresh credentials.
    app.clock.advance_to(3410);
    let (status, fresh) = app.get("lg").await;
    assert_eq!(status, 200, "{}", fresh["error"]);
    assert_ne!(fresh["AccessKeyId"], second_key.as_str());
    assert_eq!(app.sts.calls(), 7);
}

#[tokio::test]
async fn readiness_fails_when_the_key_set_has_not_reloaded_for_a_token_lifetime() {
    let app = in_process(None, None).await;
    let health = |path: &'static str| {
        let url = format!("{}{path}", app.url);
        async move {
            let response = reqwest::get(url).await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(health("/healthz").await.0, 200);
    // No successful reload for longer than a token lifetime (300 s).
    app.clock.advance_to(301);
    let (status, body) = health("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (503, Some("stale_keys")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("keys.dir"), "{body}");
    assert_eq!(health("/livez").await.0, 200, "the process itself is alive");
    // A successful reload makes it ready again.
    let now = unix(app.clock.now()) as u64;
    app.state.issuer.reload(now).unwrap();
    assert_eq!(health("/healthz").await.0, 200);
}

#[tokio::test]
async fn an_issuer_sts_cannot_reach_and_an_sts_the_gateway_cannot_reach_are_told_apart() {
    // Tokens claim an issuer where nothing listens: the fake STS really fails to fetch its keys.
    let dead = format!("http://127.0.0.1:{}", harness::free_port());
    let app = in_process(Some(dead), None).await;
    let (status, error) = app.get("r").await;
    assert_eq!((status, error["error"]["code"].as_str()), (502, Some("sts_issuer_unreachable")), "{}", error["error"]);
    assert_eq!(app.sts.calls(), 3, "retried with backoff");
    assert!(app.sts.idp_fetches() >= 3);
    assert!(error["error"]["message"].as_str().unwrap().contains("/.well-known/openid-configuration"));

    // STS itself is unreachable: 503 after the retries.
    let app = in_process(None, Some(format!("http://127.0.0.1:{}", harness::free_port()))).await;
    let (status, error) = app.get("r").await;
    assert_eq!((status, error["error"]["code"].as_str()), (503, Some("sts_unavailable")), "{}", error["error"]);
    assert_eq!(app.state.metrics.sts_calls.get("upstream_error"), 3);
    assert_eq!(app.sts.calls(), 0);
}

// ---------------------------------------------------------------------------------------------
// `byollm doctor` for a team.

#[tokio::test]
async fn doctor_reports_a_teams_sts_exchange_without_secrets() {
    let app = in_process(None, None).await;
    let acme = Uid::parse("acme").unwrap();
    let alice = |agent: Option<&str>| RunRequest {
        actor: Some("user".into()),
        principal: Some("alice".into()),
        agent: agent.map(str::to_owned),
        ..Default::default()
    };

    let report = byollm::ops::doctor::team_report(&app.state.broker, &acme, alice(Some("reviewer")), None).await;
    let text = report.to_string();
    assert!(report.ok, "{text}");
    let issued = app.sts.issued();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].role_arn, REVIEWER_ROLE);
    let akid = &issued[0].access_key_id;
    assert_eq!(report.access_key.as_deref(), Some(format!("****{}", &akid[akid.len() - 4..]).as_str()));
    assert_eq!(report.expires_at.map(unix), Some(unix(issued[0].expiration)));
    assert!(report.time_left().unwrap() > Duration::from_secs(3500));
    assert!(text.contains(REVIEWER_ROLE) && text.contains("OK"), "{text}");
    assert!(!text.contains(akid.as_str()), "the doctor prints only the masked key id");
    assert!(!text.contains(&issued[0].secret_access_key) && !text.contains(&issued[0].session_token));
    assert!(!text.contains("eyJ"));
    assert!(app.sts.requests()[0].role_session_name.as_deref().unwrap().contains("byollm-doctor"));

    // Run again: the doctor asks STS every time rather than trusting a cache.
    assert!(byollm::ops::doctor::team_report(&app.state.broker, &acme, alice(Some("reviewer")), None).await.ok);
    assert_eq!(app.sts.calls(), 2);

    let report = byollm::ops::doctor::team_report(&app.state.broker, &acme, alice(Some("stranger")), None).await;
    let error = report.error.as_ref().expect("an error");
    assert!(!report.ok);
    assert_eq!((error.status, error.code.as_str()), (403, "sts_trust_policy_mismatch"));
    assert!(report.to_string().contains("sts_trust_policy_mismatch") && report.to_string().contains("FAILED"));

    app.sts.set_providers(vec![]);
    let report = byollm::ops::doctor::team_report(&app.state.broker, &acme, alice(None), None).await;
    assert_eq!(report.error.map(|e| e.code), Some("sts_oidc_provider_missing".into()));

    // The doctor authorizes like every entry point: uids and agents are checked, no STS call.
    let lonely = Uid::parse("lonely").unwrap();
    let report = byollm::ops::doctor::team_report(&app.state.broker, &lonely, alice(None), None).await;
    assert_eq!(report.error.map(|e| e.code), Some("no_bedrock_role".into()));
    for (request, code) in [
        (alice(Some("nobody")), "unknown_agent"),
        (alice(Some("")), "invalid_run_field"),
        (RunRequest { principal: Some("a/b".into()), ..alice(None) }, "invalid_uid"),
        (RunRequest { team: Some("other".into()), ..alice(None) }, "team_not_allowed"),
    ] {
        let report = byollm::ops::doctor::team_report(&app.state.broker, &acme, request, None).await;
        assert_eq!(report.error.map(|e| e.code), Some(code.into()));
    }
    assert_eq!(app.sts.calls(), 4);
}
