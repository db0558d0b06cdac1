use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::StatusCode;

use super::failover::{
    AttemptOutcome, HealthKey, all_failed, by_status, class_of_direct, classify_anthropic, classify_bedrock,
    classify_openai, skip_period,
};
use super::policy::MapSecrets;
use super::*;
use crate::config::Config;

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const HASH2: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";
const SONNET: &str = "global.anthropic.claude-sonnet-4-5-20250929-v1:0";
const HAIKU: &str = "global.anthropic.claude-haiku-4-5-20251001-v1:0";

fn base_config(routing: &str) -> String {
    format!(
        r#"
dev = true
[[callers]]
name = "acme-worker"
key_sha256 = "{HASH}"
team = "acme"
[[callers]]
name = "other-worker"
key_sha256 = "{HASH2}"
team = "other"
[[teams]]
uid = "acme"
[[teams.agents]]
name = "reviewer"
role_arn = "arn:aws:iam::123456789012:role/byollm-acme-reviewer"
[models.claude-sonnet-4-5]
id = "{SONNET}"
[models.claude-haiku-4-5]
id = "{HAIKU}"
{routing}
"#
    )
}

fn secrets() -> MapSecrets {
    MapSecrets(BTreeMap::from([
        ("ANTHROPIC_KEY".to_owned(), "sk-ant-api03-secret-value".to_owned()),
        ("OPENROUTER_KEY".to_owned(), "sk-or-v1-secret-value".to_owned()),
    ]))
}

fn load_mode(routing: &str, mode: Mode) -> Result<RoutingPolicy, Vec<(String, String)>> {
    let config = Config::from_toml(&base_config(routing)).expect("base config is valid");
    RoutingPolicy::from_config(&config, mode, &secrets())
        .map_err(|errors| errors.into_iter().map(|e| (e.path, e.message)).collect())
}

fn load(routing: &str) -> RoutingPolicy {
    load_mode(routing, Mode::Hosted).unwrap_or_else(|errors| panic!("policy should load: {errors:?}"))
}

fn scope<'a>(team: &'a str, agent: Option<&'a str>) -> RouteScope<'a> {
    RouteScope { team: Some(team), agent }
}

/// `label=upstream model` of each route.
fn routes_of(policy: &RoutingPolicy, scope: RouteScope, model: &str) -> Vec<String> {
    policy
        .resolve(scope, model)
        .map(|r| r.routes.iter().map(|route| format!("{}={}", route.label, route.upstream.upstream_model())).collect())
        .unwrap_or_else(|error| vec![format!("{error:?}")])
}

const POLICY: &str = r#"
[routing.anthropic]
api_key_env = "ANTHROPIC_KEY"

[routing.endpoints.openrouter]
base_url = "https://openrouter.ai/api/v1"
api_key_env = "OPENROUTER_KEY"
models = ["z-ai/glm-4.6"]

[routing.default.routes]
"claude-haiku-4-5" = [{ bedrock = {} }, { openai = { endpoint = "openrouter", model = "anthropic/claude-haiku-4.5" } }]

[routing.teams.acme]
models = ["claude-sonnet-4-5", "claude-haiku-4-5", "z-ai/glm-4.6"]
[routing.teams.acme.routes]
"claude-sonnet-4-5" = [
  { bedrock = { profile = "eu.anthropic.claude-sonnet-4-5-20250929-v1:0", region = "eu-west-1" } },
  { bedrock = {} },
  { anthropic = { model = "claude-sonnet-4-5-20250929" } },
]
[routing.teams.acme.agents.reviewer]
models = ["claude-sonnet-4-5"]
routes."claude-sonnet-4-5" = [{ anthropic = {} }]

[routing.teams.other]
provider_only = true
"#;

#[test]
fn without_a_policy_every_model_has_its_bedrock_route() {
    let policy = load("");
    assert_eq!(routes_of(&policy, scope("acme", None), "claude-sonnet-4-5"), [format!("bedrock={SONNET}")]);
    assert_eq!(routes_of(&policy, RouteScope::default(), "claude-haiku-4-5"), [format!("bedrock={HAIKU}")]);
    assert_eq!(policy.allowed_models(scope("acme", None)), ["claude-haiku-4-5", "claude-sonnet-4-5"]);
    assert_eq!(
        policy.resolve(scope("acme", None), "gpt-4o").unwrap_err(),
        RouteError::UnknownModel { model: "gpt-4o".into() }
    );
    assert_eq!(policy.anthropic.base_url.as_ref().map(url::Url::as_str), Some("https://api.anthropic.com/"));
    assert!(policy.anthropic.key.is_none());
}

#[test]
fn resolution_follows_agent_then_team_then_defaults() {
    let policy = load(POLICY);
    let cases: Vec<(RouteScope, &str, Vec<String>)> = vec![
        (
            scope("acme", None),
            "claude-sonnet-4-5",
            vec![
                "bedrock=eu.anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
                format!("bedrock#2={SONNET}"),
                "anthropic=claude-sonnet-4-5-20250929".into(),
            ],
        ),
        // The agent's own routes; the anthropic model defaults to the public name.
        (scope("acme", Some("reviewer")), "claude-sonnet-4-5", vec!["anthropic=claude-sonnet-4-5".into()]),
        // The agent narrows the team's models.
        (
            scope("acme", Some("reviewer")),
            "claude-haiku-4-5",
            vec!["NotAllowed { model: \"claude-haiku-4-5\", team: Some(\"acme\"), agent: Some(\"reviewer\") }".into()],
        ),
        // An agent without its own layer inherits the team's.
        (
            scope("acme", Some("builder")),
            "claude-haiku-4-5",
            vec![format!("bedrock={HAIKU}"), "openai:openrouter=anthropic/claude-haiku-4.5".into()],
        ),
        // The defaults' routes for a team without its own.
        (
            scope("acme", None),
            "claude-haiku-4-5",
            vec![format!("bedrock={HAIKU}"), "openai:openrouter=anthropic/claude-haiku-4.5".into()],
        ),
        // A model only an endpoint serves.
        (scope("acme", None), "z-ai/glm-4.6", vec!["openai:openrouter=z-ai/glm-4.6".into()]),
        // Provider-only keeps Bedrock routes only.
        (scope("other", None), "claude-haiku-4-5", vec![format!("bedrock={HAIKU}")]),
        (scope("other", None), "z-ai/glm-4.6", vec!["NoRoute { model: \"z-ai/glm-4.6\" }".into()]),
        // A team the policy does not name gets the defaults.
        (scope("newteam", None), "claude-sonnet-4-5", vec![format!("bedrock={SONNET}")]),
    ];
    for (scope, model, expected) in cases {
        assert_eq!(routes_of(&policy, scope, model), expected, "{scope:?} {model}");
    }
    let other = policy.resolve(scope("other", None), "claude-haiku-4-5").unwrap();
    assert!(other.provider_only);
    assert_eq!(other.dropped, 1);
    let sonnet = policy.resolve(scope("acme", None), "claude-sonnet-4-5").unwrap();
    let Upstream::Bedrock(first) = &sonnet.routes[0].upstream else { panic!("bedrock first") };
    assert_eq!(first.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        policy.allowed_models(scope("acme", Some("reviewer"))),
        ["claude-sonnet-4-5"],
        "agent models intersect the team's"
    );
}

#[test]
fn the_bedrock_routes_of_a_scope_are_those_of_the_models_it_may_use() {
    let policy = load(POLICY);
    let ids = |scope| -> Vec<(String, String, Option<String>)> {
        policy
            .bedrock_routes(scope)
            .into_iter()
            .map(|(model, route)| (model.to_owned(), route.model_id, route.region))
            .collect()
    };
    assert_eq!(
        ids(scope("acme", None)),
        [
            ("claude-haiku-4-5".to_owned(), HAIKU.to_owned(), None),
            (
                "claude-sonnet-4-5".into(),
                "eu.anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
                Some("eu-west-1".into())
            ),
            ("claude-sonnet-4-5".into(), SONNET.into(), None),
        ]
    );
    // The reviewer may use sonnet, through the Anthropic API only: nothing on Bedrock.
    assert!(ids(scope("acme", Some("reviewer"))).is_empty());
    assert_eq!(ids(scope("other", None)).len(), 2, "provider-only keeps the Bedrock routes");
}

#[test]
fn secrets_are_resolved_and_never_printed() {
    let policy = load(POLICY);
    assert_eq!(policy.anthropic.key.as_ref().map(|k| k.expose()), Some("sk-ant-api03-secret-value"));
    assert_eq!(policy.endpoints["openrouter"].http.key.as_ref().map(|k| k.expose()), Some("sk-or-v1-secret-value"));
    let debug = format!("{policy:?}");
    assert!(!debug.contains("secret-value"), "{debug}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, "sk-from-file\n").unwrap();
    let policy = load(&format!("[routing.anthropic]\napi_key_file = {:?}\n", file.display().to_string()));
    assert_eq!(policy.anthropic.key.as_ref().map(|k| k.expose()), Some("sk-from-file"));
}

#[test]
fn every_bad_field_is_reported_by_path() {
    let text = r#"
[routing]
surprise = 1
[routing.failover]
skip_secs = 0
[routing.anthropic]
api_key_env = "MISSING_VAR"
api_key_file = "/nonexistent"
base_url = "http://api.anthropic.com"
[routing.endpoints.local]
base_url = "https://169.254.169.254/v1"
[routing.endpoints.nourl]
api_key_env = "OPENROUTER_KEY"
[routing.endpoints.both]
per_request = true
base_url = "https://example.com/v1"
[routing.endpoints.leaky]
per_request = true
api_key_env = "OPENROUTER_KEY"
[routing.endpoints.clash]
base_url = "https://example.com/v1"
models = ["claude-sonnet-4-5"]
[routing.teams.acme]
models = ["claude-sonnet-4-5", "gpt-9"]
colour = "red"
[routing.teams.acme.routes]
"claude-sonnet-4-5" = [
  { bedrock = { region = "Mars", role = "arn:aws:iam::1:role/x", profile = "not a model" } },
  { openai = { endpoint = "nowhere" } },
  { anthropic = {}, bedrock = {} },
  { azure = {} },
]
"claude-haiku-4-5" = []
"unknown-model" = [{ bedrock = {} }]
[routing.teams.acme.agents.reviewer]
provider_only = true
models = ["claude-haiku-4-5"]
[routing.endpoints.glm]
base_url = "https://api.z.ai/v1"
models = ["glm-4.6"]
[routing.default.routes]
"glm-4.6" = [{ bedrock = { profile = "global.anthropic.claude-sonnet-4-5-20250929-v1:0" } }]
[routing.teams.acme.agents.ghost]
[routing.teams.ghost-team]
[routing.teams.other]
provider_only = true
models = ["claude-sonnet-4-5"]
routes."claude-sonnet-4-5" = [{ anthropic = {} }]
"#;
    let errors = load_mode(text, Mode::Hosted).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|(path, _)| path.as_str()).collect();
    for expected in [
        "routing.surprise",
        "routing.failover.skip_secs",
        "routing.anthropic.api_key_file",
        "routing.anthropic.base_url",
        "routing.endpoints.local.base_url",
        "routing.endpoints.nourl.base_url",
        "routing.endpoints.both.base_url",
        "routing.endpoints.leaky.api_key_env",
        "routing.endpoints.clash.models",
        "routing.teams.acme.models",
        "routing.teams.acme.colour",
        "routing.teams.acme.routes.claude-sonnet-4-5[0].bedrock.region",
        "routing.teams.acme.routes.claude-sonnet-4-5[0].bedrock.role",
        "routing.teams.acme.routes.claude-sonnet-4-5[0].bedrock.profile",
        "routing.teams.acme.routes.claude-sonnet-4-5[1].openai.endpoint",
        "routing.teams.acme.routes.claude-sonnet-4-5[2]",
        "routing.teams.acme.routes.claude-sonnet-4-5[3]",
        "routing.teams.acme.routes.claude-haiku-4-5",
        "routing.teams.acme.routes.unknown-model",
        "routing.teams.acme.agents.reviewer.provider_only",
        "routing.teams.acme.agents.ghost",
        "routing.teams.ghost-team",
        "routing.teams.other.routes.claude-sonnet-4-5",
        "routing.default.routes.\"glm-4.6\"[0].bedrock",
    ] {
        assert!(paths.contains(&expected), "missing {expected} in {errors:#?}");
    }
    let metadata = errors.iter().find(|(p, _)| p == "routing.endpoints.local.base_url").unwrap();
    assert!(metadata.1.contains("metadata"), "{metadata:?}");
    assert!(!errors.iter().any(|(_, message)| message.contains("secret-value")));
}

#[test]
fn endpoints_take_extra_fields_and_caller_chosen_ones_answer_less_by_default() {
    let policy = load(
        r#"
[routing.endpoints.openrouter]
base_url = "https://openrouter.ai/api/v1"
extra_fields = ["provider", "top_k"]
[routing.endpoints.plain]
base_url = "https://example.com/v1"
max_response_bytes = 2048
[routing.endpoints.byo]
per_request = true
"#,
    );
    let openrouter = &policy.endpoints["openrouter"];
    assert!(openrouter.fields.allows("provider") && openrouter.fields.allows("top_k"));
    assert!(openrouter.fields.allows("messages") && !openrouter.fields.allows("models"));
    let plain = &policy.endpoints["plain"];
    assert!(!plain.fields.allows("provider"), "extra fields are per endpoint");
    assert_eq!(openrouter.http.max_response_bytes, policy::DEFAULT_MAX_RESPONSE_BYTES);
    assert_eq!(plain.http.max_response_bytes, 2048);
    assert_eq!(policy.endpoints["byo"].http.max_response_bytes, policy::PER_REQUEST_MAX_RESPONSE_BYTES);
    assert_eq!(policy.anthropic.max_response_bytes, policy::DEFAULT_MAX_RESPONSE_BYTES);

    let too_many: Vec<String> = (0..=policy::MAX_EXTRA_FIELDS).map(|i| format!("\"f{i}\"")).collect();
    let text = format!(
        r#"
[routing.anthropic]
max_response_bytes = 268435456
[routing.endpoints.bad]
base_url = "https://example.com/v1"
extra_fields = ["ok", "", "has space", "quote\"", "{long}"]
[routing.endpoints.many]
base_url = "https://example.com/v1"
extra_fields = [{too_many}]
[routing.endpoints.kind]
base_url = "https://example.com/v1"
extra_fields = "provider"
"#,
        long = "x".repeat(65),
        too_many = too_many.join(", ")
    );
    let errors = load_mode(&text, Mode::Hosted).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "routing.anthropic.max_response_bytes",
            "routing.endpoints.bad.extra_fields[1]",
            "routing.endpoints.bad.extra_fields[2]",
            "routing.endpoints.bad.extra_fields[3]",
            "routing.endpoints.bad.extra_fields[4]",
            "routing.endpoints.kind.extra_fields",
            "routing.endpoints.many.extra_fields",
        ],
        "{errors:#?}"
    );
    assert!(errors[0].1.contains("server.max_answer_bytes_in_flight"), "{:?}", errors[0]);

    // A smaller answer budget lowers the defaults with it, rather than refusing them.
    let config = Config::from_toml(&format!(
        "{}\n[server]\nmax_answer_bytes_in_flight = 4194304\n",
        base_config("[routing.endpoints.e]\nbase_url = \"https://example.com/v1\"\n")
    ))
    .unwrap();
    let policy = RoutingPolicy::from_config(&config, Mode::Hosted, &secrets()).unwrap();
    assert_eq!(policy.endpoints["e"].http.max_response_bytes, 4 << 20);
    assert_eq!(policy.anthropic.max_response_bytes, 4 << 20);
}

#[test]
fn agent_models_must_be_among_the_teams() {
    let errors = load_mode(
        "[routing.teams.acme]\nmodels = [\"claude-sonnet-4-5\"]\n[routing.teams.acme.agents.reviewer]\nmodels = [\"claude-haiku-4-5\"]\n",
        Mode::Hosted,
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "routing.teams.acme.agents.reviewer.models");
}

#[test]
fn upstream_addresses_follow_the_mode() {
    let loopback = "[routing.endpoints.ollama]\nbase_url = \"http://127.0.0.1:11434/v1\"\nmodels = [\"llama3.1:8b\"]\n";
    let errors = load_mode(loopback, Mode::Hosted).unwrap_err();
    assert_eq!(errors[0].0, "routing.endpoints.ollama.base_url");
    let policy = load_mode(loopback, Mode::Local).unwrap();
    assert_eq!(routes_of(&policy, RouteScope::default(), "llama3.1:8b"), ["openai:ollama=llama3.1:8b"]);

    let internal = "[routing.endpoints.litellm]\nbase_url = \"http://10.0.0.7:4000\"\nallow_http = true\nallow_private_network = true\n";
    assert!(load_mode(internal, Mode::Hosted).is_ok());
    let metadata = "[routing.endpoints.x]\nbase_url = \"http://169.254.169.254\"\nallow_http = true\nallow_private_network = true\n";
    for mode in [Mode::Hosted, Mode::Local] {
        assert_eq!(load_mode(metadata, mode).unwrap_err()[0].0, "routing.endpoints.x.base_url", "{mode:?}");
    }
}

#[test]
fn failure_table_is_valid_data() {
    let text = include_str!("failures.toml");
    let value: toml::Table = toml::from_str(text).unwrap();
    assert!(value["bedrock"].as_table().unwrap().len() >= 15);
    // Every class named in the file is one the code knows.
    for section in ["bedrock", "anthropic", "openai_status"] {
        for (code, class) in value[section].as_table().unwrap() {
            let parsed: Result<FailureClass, _> = class.clone().try_into();
            assert!(parsed.is_ok(), "{section}.{code} = {class}");
        }
    }
}

#[test]
fn failures_are_classed_from_the_data() {
    use FailureClass::*;
    let bedrock = [
        ("AccessDeniedException", 403, AccessDenied),
        ("accessDeniedException", 403, AccessDenied),
        ("com.amazon.coral.service#ThrottlingException", 429, Throttled),
        ("ServiceQuotaExceededException", 400, Quota),
        ("ResourceNotFoundException", 404, ModelUnavailable),
        ("ModelNotReadyException", 429, ModelUnavailable),
        ("InternalServerException", 500, Upstream),
        ("ServiceUnavailableException", 503, Upstream),
        ("ModelTimeoutException", 408, Timeout),
        ("ExpiredTokenException", 403, Credentials),
        ("ValidationException", 400, Request),
        ("SomethingNewException", 502, Upstream),
        ("SomethingNewException", 400, Request),
    ];
    for (code, status, expected) in bedrock {
        assert_eq!(classify_bedrock(code, status), expected, "{code}");
    }
    let anthropic = [
        ("overloaded_error", 529, Upstream),
        ("rate_limit_error", 429, Throttled),
        ("authentication_error", 401, Credentials),
        ("permission_error", 403, AccessDenied),
        ("not_found_error", 404, ModelUnavailable),
        ("billing_error", 402, Quota),
        ("invalid_request_error", 400, Request),
        ("request_too_large", 413, Request),
        ("new_error", 503, Upstream),
    ];
    for (kind, status, expected) in anthropic {
        assert_eq!(classify_anthropic(kind, status), expected, "{kind}");
    }
    for (status, expected) in [
        (400, Request),
        (401, Credentials),
        (402, Quota),
        (404, ModelUnavailable),
        (422, Request),
        (429, Throttled),
        (500, Upstream),
        (504, Timeout),
        (418, Request),
        (599, Upstream),
    ] {
        assert_eq!(classify_openai(status), expected, "{status}");
    }
    assert!(!Request.fails_over());
    for class in
        [Credentials, AccessDenied, ModelUnavailable, Throttled, Quota, Upstream, Timeout, Unreachable, Refused]
    {
        assert!(class.fails_over() && class.counts_against_route(), "{class:?}");
    }
    assert!(ClientKey.fails_over() && !ClientKey.counts_against_route());
    // An STS outage: another route may get credentials, but this one is not at fault.
    assert!(StsUnavailable.fails_over() && !StsUnavailable.counts_against_route());
    // No room to buffer an answer: the next route would need the same room.
    assert!(!Busy.fails_over() && !Busy.counts_against_route());
    assert_eq!(classify_bedrock("ServerBusy", 503), Busy);
    assert_eq!(class_of_direct(&crate::upstream::direct::DirectError::Busy), Busy);
    assert_eq!(by_status(409), Request);
}

#[test]
fn skip_periods_double_jitter_and_stay_bounded() {
    let settings = FailoverSettings {
        skip_after: 3,
        skip_base: Duration::from_secs(10),
        skip_max: Duration::from_secs(60),
        max_tracked: 10,
    };
    assert_eq!(skip_period(&settings, 2, 0.9), Duration::ZERO);
    assert_eq!(skip_period(&settings, 3, 0.0), Duration::from_secs(5));
    assert_eq!(skip_period(&settings, 3, 1.0), Duration::from_secs(10));
    assert_eq!(skip_period(&settings, 4, 1.0), Duration::from_secs(20));
    assert_eq!(skip_period(&settings, 5, 1.0), Duration::from_secs(40));
    assert_eq!(skip_period(&settings, 6, 1.0), Duration::from_secs(60));
    assert_eq!(skip_period(&settings, u32::MAX, 1.0), Duration::from_secs(60));
    for draw in 0..100 {
        let period = skip_period(&settings, 4, f64::from(draw) / 100.0);
        assert!(period >= Duration::from_secs(10) && period <= Duration::from_secs(20), "{period:?}");
    }
    let unit = failover::jitter_unit();
    assert!((0.0..1.0).contains(&unit));
}

fn route(label: &str) -> Route {
    Route { label: label.into(), upstream: Upstream::Anthropic(AnthropicRoute { model: "m".into() }) }
}

fn labels(plan: &failover::Plan) -> (Vec<&str>, Vec<&str>) {
    (
        plan.routes.iter().map(|r| r.label.as_str()).collect(),
        plan.skipped.iter().map(|(r, _)| r.label.as_str()).collect(),
    )
}

#[test]
fn a_route_that_keeps_failing_is_skipped_for_a_while() {
    let settings = FailoverSettings {
        skip_after: 2,
        skip_base: Duration::from_secs(10),
        skip_max: Duration::from_secs(60),
        max_tracked: 100,
    };
    let health = RouteHealth::new(settings);
    let acme = scope("acme", None);
    let now = Instant::now();
    let routes = vec![route("bedrock"), route("anthropic")];
    let key = |s: RouteScope, label: &str| HealthKey::new(s, "m", label);

    health.record(key(acme, "bedrock"), Some(FailureClass::Throttled), now, 0.5);
    assert_eq!(labels(&health.plan(acme, "m", routes.clone(), now)), (vec!["bedrock", "anthropic"], vec![]));
    // Request-caused failures do not count, nor does a key the request brought.
    health.record(key(acme, "bedrock"), Some(FailureClass::Request), now, 0.5);
    health.record(key(acme, "bedrock"), Some(FailureClass::ClientKey), now, 0.5);
    health.record(key(acme, "bedrock"), Some(FailureClass::ClientKey), now, 0.5);
    assert_eq!(labels(&health.plan(acme, "m", routes.clone(), now)).1, Vec::<&str>::new());
    health.record(key(acme, "bedrock"), Some(FailureClass::AccessDenied), now, 0.5);
    let plan = health.plan(acme, "m", routes.clone(), now);
    assert_eq!(labels(&plan), (vec!["anthropic"], vec!["bedrock"]));
    assert_eq!(plan.skipped[0].1, Duration::from_millis(7500));
    // Another team's routes are not affected.
    assert_eq!(labels(&health.plan(scope("other", None), "m", routes.clone(), now)).1, Vec::<&str>::new());
    // After the period, the route is tried again.
    let later = now + Duration::from_secs(8);
    assert_eq!(labels(&health.plan(acme, "m", routes.clone(), later)).0, ["bedrock", "anthropic"]);
    // When every route is skipped, the one coming back first is still tried.
    health.record(key(acme, "anthropic"), Some(FailureClass::Upstream), now, 0.9);
    health.record(key(acme, "anthropic"), Some(FailureClass::Upstream), now, 0.9);
    assert_eq!(labels(&health.plan(acme, "m", routes.clone(), now)), (vec!["bedrock"], vec!["anthropic"]));
    // A success clears the state.
    health.record(key(acme, "bedrock"), None, now, 0.0);
    assert_eq!(labels(&health.plan(acme, "m", routes, now)), (vec!["bedrock"], vec!["anthropic"]));
    assert_eq!(health.tracked(), 1);
}

#[test]
fn failure_state_is_bounded() {
    let settings = FailoverSettings {
        skip_after: 1,
        skip_base: Duration::from_secs(10),
        skip_max: Duration::from_secs(10),
        max_tracked: 3,
    };
    let health = RouteHealth::new(settings);
    let now = Instant::now();
    for index in 0..10 {
        let team = format!("team{index}");
        health.record(HealthKey::new(scope(&team, None), "m", "bedrock"), Some(FailureClass::Upstream), now, 0.0);
    }
    assert_eq!(health.tracked(), 3);
    // Once their periods are over, old entries make room.
    let later = now + Duration::from_secs(11);
    health.record(HealthKey::new(scope("fresh", None), "m", "bedrock"), Some(FailureClass::Upstream), later, 0.0);
    assert_eq!(health.tracked(), 1);
}

fn failed(route: &str, error: ApiError, class: FailureClass) -> Attempt {
    Attempt { route: route.into(), upstream_model: "m".into(), outcome: AttemptOutcome::Failed { class, error } }
}

#[test]
fn when_every_route_fails_one_error_lists_each_attempt() {
    let denied = ApiError::forbidden("bedrock_access_denied", "the AWS identity may not call bedrock:InvokeModel");
    let throttled =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorKind::RateLimit, "bedrock_throttled", "slow down")
            .with_retry_after(2);
    let overloaded = ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Upstream, "anthropic_overloaded", "Overloaded");

    // One route: its own error, as before routing existed (plus the provider-only note).
    let single =
        all_failed("claude-sonnet-4-5", &[failed("bedrock", denied.clone(), FailureClass::AccessDenied)], true);
    assert_eq!((single.status, single.code), (StatusCode::FORBIDDEN, "bedrock_access_denied"));
    assert!(
        single.message.contains("bedrock:InvokeModel") && single.message.contains("provider-only"),
        "{}",
        single.message
    );

    let attempts = [
        failed("bedrock", denied, FailureClass::AccessDenied),
        failed("anthropic", overloaded.clone(), FailureClass::Upstream),
        Attempt {
            route: "openai:openrouter".into(),
            upstream_model: "m".into(),
            outcome: AttemptOutcome::Skipped { remaining: Duration::from_secs(12) },
        },
    ];
    let error = all_failed("claude-sonnet-4-5", &attempts, false);
    assert_eq!((error.status, error.code), (StatusCode::BAD_GATEWAY, "all_routes_failed"));
    assert_eq!(
        error.message,
        "every route for model \"claude-sonnet-4-5\" failed: bedrock: 403 bedrock_access_denied (the AWS identity may not call bedrock:InvokeModel); anthropic: 502 anthropic_overloaded (Overloaded); openai:openrouter: skipped, failing recently (retried in 12s)"
    );

    let limited = ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorKind::RateLimit, "anthropic_rate_limited", "later")
        .with_retry_after(7);
    let error = all_failed(
        "m",
        &[failed("bedrock", throttled, FailureClass::Throttled), failed("anthropic", limited, FailureClass::Throttled)],
        false,
    );
    assert_eq!(
        (error.status, error.code, error.retry_after),
        (StatusCode::TOO_MANY_REQUESTS, "all_routes_throttled", Some(7))
    );

    // STS was out for every route: a 503 to retry; with any other failure among them, a 502.
    let sts = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Upstream, "sts_unavailable", "down");
    let both = [
        failed("bedrock", sts(), FailureClass::StsUnavailable),
        failed("bedrock#2", sts(), FailureClass::StsUnavailable),
    ];
    let error = all_failed("m", &both, false);
    assert_eq!(
        (error.status, error.code, error.retry_after),
        (StatusCode::SERVICE_UNAVAILABLE, "sts_unavailable", Some(2))
    );
    let mixed = [
        failed("bedrock", sts(), FailureClass::StsUnavailable),
        failed("anthropic", overloaded, FailureClass::Upstream),
    ];
    assert_eq!(all_failed("m", &mixed, false).code, "all_routes_failed");
}

#[test]
fn a_new_policy_replaces_the_old_one_whole() {
    let routing = Routing::new(load(""));
    let before = routing.policy();
    assert_eq!(routes_of(&before, scope("acme", None), "claude-sonnet-4-5"), [format!("bedrock={SONNET}")]);
    routing.replace(load(POLICY));
    assert_eq!(
        routes_of(&routing.policy(), scope("acme", Some("reviewer")), "claude-sonnet-4-5"),
        ["anthropic=claude-sonnet-4-5"]
    );
    // A request that started before keeps its policy.
    assert_eq!(routes_of(&before, scope("acme", Some("reviewer")), "claude-sonnet-4-5"), [format!("bedrock={SONNET}")]);
}

#[test]
fn a_failover_walks_the_routes_and_stops_on_a_request_fault() {
    let routing = Routing::new(load(POLICY));
    let acme = scope("acme", None);
    let denied = ApiError::forbidden("bedrock_access_denied", "no");
    let invalid = ApiError::invalid_request("messages", "bedrock_validation_error", "bad");

    let mut failover = routing.start(acme, "claude-sonnet-4-5").unwrap();
    assert_eq!(failover.pending().count(), 3);
    let first = failover.next_route().unwrap();
    assert_eq!(failover.failed(&first, FailureClass::AccessDenied, denied), None, "fails over");
    let second = failover.next_route().unwrap();
    assert_eq!(second.label, "bedrock#2");
    let stop = failover.failed(&second, FailureClass::Request, invalid.clone());
    assert_eq!(stop, Some(invalid), "the request's own fault is returned as it is, not retried");
    assert_eq!(failover.attempts().len(), 2);

    let mut failover = routing.start(acme, "claude-sonnet-4-5").unwrap();
    while let Some(route) = failover.next_route() {
        let error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Upstream, "down", "down");
        assert!(failover.failed(&route, FailureClass::Upstream, error).is_none());
    }
    assert_eq!(failover.exhausted().code, "all_routes_failed");
    assert!(routing.start(acme, "gpt-4o").is_err());
}

#[test]
fn each_surface_uses_the_routes_of_a_kind_it_can_serve() {
    let routing = Routing::new(load(POLICY));
    let acme = scope("acme", None);
    let labels = |failover: &Failover<'_>| failover.pending().map(|r| r.label.clone()).collect::<Vec<_>>();

    // Chat: every route. Messages: Bedrock and the Anthropic API. Bedrock-only: Bedrock.
    let chat = routing.start_on(acme, "claude-haiku-4-5", Surface::Chat).unwrap();
    assert_eq!(labels(&chat), ["bedrock", "openai:openrouter"]);
    let sonnet = routing.start_on(acme, "claude-sonnet-4-5", Surface::Messages).unwrap();
    assert_eq!(labels(&sonnet), ["bedrock", "bedrock#2", "anthropic"]);
    let native = routing.start_on(acme, "claude-sonnet-4-5", Surface::BedrockOnly).unwrap();
    assert_eq!(labels(&native), ["bedrock", "bedrock#2"]);

    // Routes set aside by the caller (a native call's geography) are listed as unsupported.
    let mut native = routing.start_on(acme, "claude-sonnet-4-5", Surface::BedrockOnly).unwrap();
    assert!(native.set_aside(|route| route.label == "bedrock", "wider"));
    assert_eq!(labels(&native), ["bedrock#2"]);
    assert!(!native.set_aside(|_| true, "wider"), "nothing left");
    let error = native.exhausted();
    let summaries: Vec<_> = native.attempts().iter().map(|a| (a.route.as_str(), a.outcome.summary().0)).collect();
    assert_eq!(summaries, [("anthropic", "unsupported"), ("bedrock", "unsupported"), ("bedrock#2", "unsupported")]);
    assert!(error.message.contains("bedrock#2: not used (wider)"), "{}", error.message);

    // A route set aside is listed with its reason, after the tried ones; a single tried route's
    // own error stays the answer, with a note.
    let mut messages = routing.start_on(acme, "claude-haiku-4-5", Surface::Messages).unwrap();
    assert_eq!(labels(&messages), ["bedrock"]);
    let route = messages.next_route().unwrap();
    let denied = ApiError::forbidden("bedrock_access_denied", "no access");
    assert!(messages.failed(&route, FailureClass::AccessDenied, denied).is_none());
    assert!(messages.next_route().is_none());
    let error = messages.exhausted();
    assert_eq!(error.code, "bedrock_access_denied");
    assert!(error.message.contains("route openai:openrouter not used: the Messages API"), "{}", error.message);
    let summaries: Vec<_> = messages.attempts().iter().map(|a| (a.route.as_str(), a.outcome.summary().0)).collect();
    assert_eq!(summaries, [("bedrock", "access_denied"), ("openai:openrouter", "unsupported")]);

    // No route of a usable kind: refused before any call, in the surface's words.
    let reviewer = scope("acme", Some("reviewer"));
    let refused = routing.start_on(reviewer, "claude-sonnet-4-5", Surface::BedrockOnly).err().unwrap();
    assert_eq!(refused, RouteError::NotOnSurface { model: "claude-sonnet-4-5".into(), surface: Surface::BedrockOnly });
    assert_eq!(ApiError::from(refused).code, "no_bedrock_route");
    let endpoint_only = routing.start_on(acme, "z-ai/glm-4.6", Surface::Messages).err().unwrap();
    assert_eq!(ApiError::from(endpoint_only).code, "no_route_for_api");

    // What GET /v1/models lists, per surface.
    let policy = routing.policy();
    assert_eq!(
        policy.allowed_models_on(acme, Surface::Chat),
        ["claude-haiku-4-5", "claude-sonnet-4-5", "z-ai/glm-4.6"]
    );
    assert_eq!(policy.allowed_models_on(acme, Surface::Messages), ["claude-haiku-4-5", "claude-sonnet-4-5"]);
    assert_eq!(policy.allowed_models_on(reviewer, Surface::BedrockOnly), Vec::<String>::new());
    assert_eq!(policy.allowed_models_on(reviewer, Surface::Messages), ["claude-sonnet-4-5"]);
}

#[test]
fn prompt_caching_is_on_by_default_and_set_per_team_agent_and_model() {
    use crate::models::CacheTtl::{FiveMinutes, OneHour};
    let policy = load("");
    assert_eq!(policy.prompt_cache(scope("acme", None), "claude-sonnet-4-5"), Some(FiveMinutes));
    assert_eq!(policy.prompt_cache(RouteScope::default(), "claude-haiku-4-5"), Some(FiveMinutes));

    let policy = load(
        r#"
[routing.default]
prompt_cache_ttl = "1h"
[routing.default.per_model."claude-haiku-4-5"]
prompt_cache = "off"
[routing.teams.acme]
prompt_cache = "off"
[routing.teams.acme.per_model."claude-sonnet-4-5"]
prompt_cache = "auto"
prompt_cache_ttl = "5m"
[routing.teams.acme.agents.reviewer]
prompt_cache = "auto"
[routing.teams.other.per_model."claude-sonnet-4-5"]
prompt_cache_ttl = "5m"
"#,
    );
    let acme = scope("acme", None);
    let reviewer = scope("acme", Some("reviewer"));
    let other = scope("other", None);
    let cases = [
        // The team is off, but its setting for the model turns it on again, at five minutes.
        (acme, "claude-sonnet-4-5", Some(FiveMinutes)),
        (acme, "claude-haiku-4-5", None),
        // The agent is on; the ttl falls through to the team's model setting, then the defaults.
        (reviewer, "claude-sonnet-4-5", Some(FiveMinutes)),
        (reviewer, "claude-haiku-4-5", Some(OneHour)),
        // Another team: the defaults (1h), but off for Haiku by the defaults' model setting.
        (other, "claude-sonnet-4-5", Some(FiveMinutes)),
        (other, "claude-haiku-4-5", None),
        (RouteScope::default(), "claude-sonnet-4-5", Some(OneHour)),
    ];
    for (scope, model, expected) in cases {
        assert_eq!(policy.prompt_cache(scope, model), expected, "{scope:?} {model}");
    }

    let errors = load_mode(
        r#"
[routing.default]
prompt_cache = "always"
prompt_cache_ttl = "10m"
[routing.teams.acme.per_model."gpt-9"]
prompt_cache = "off"
[routing.teams.acme.per_model."claude-sonnet-4-5"]
routes = []
"#,
        Mode::Hosted,
    )
    .unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|(path, _)| path.as_str()).collect();
    for expected in [
        "routing.default.prompt_cache",
        "routing.default.prompt_cache_ttl",
        "routing.teams.acme.per_model.gpt-9",
        "routing.teams.acme.per_model.claude-sonnet-4-5.routes",
    ] {
        assert!(paths.contains(&expected), "missing {expected} in {errors:#?}");
    }
}
