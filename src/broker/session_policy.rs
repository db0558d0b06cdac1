//! The session policy of credentials that leave the gateway (`/v1/credentials*`), per run scope:
//! passed as `Policy` to `AssumeRoleWithWebIdentity`, it narrows the role's permissions (never
//! widens them) to `bedrock:InvokeModel*` on what the scope's routing allows on Bedrock: every
//! Bedrock route of each model the team and agent may use (its model or profile id, in its region,
//! from the account of its role), worded by [`crate::bedrock_iam`], the same rule as the role's
//! permissions policy. A worker holding such credentials can invoke nothing else.
//!
//! STS accepts at most 2,048 characters of policy: the exact form when it fits, else the compact
//! form (model-family wildcards in any region, still only through the allowed profiles), else
//! none: [`build`] refuses ([`PolicyError::TooLong`]) and the export fails naming what to change;
//! exported credentials are never silently widened. `sts.session_policy = false` exports the role's
//! own permissions instead, an explicit choice warned about at start. [`log_scopes`] checks every
//! configured scope at start and on each routing reload.
//!
//! Must never: grant a model the scope's routing does not allow, or know HTTP (the handler passes
//! the scope's routes in).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::aws::RoleArn;
use crate::bedrock_iam::{self, Form, ModelIdError, Target};
use crate::config::Config;
use crate::models::ModelConfig;
use crate::routing::{BedrockRoute, RouteScope, RoutingPolicy};

/// STS's limit on a session policy's plaintext, in characters (`bedrock_iam.toml`).
pub fn max_chars() -> usize {
    bedrock_iam::facts().max_session_policy_chars
}

/// A session policy ready for STS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPolicy {
    /// The document, compact JSON.
    pub document: Arc<str>,
    /// SHA-256 of the document: what the credential cache keys exported credentials by.
    pub digest: [u8; 32],
    pub form: Form,
}

impl SessionPolicy {
    fn new(document: String, form: Form) -> SessionPolicy {
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, document.as_bytes());
        let mut digest = [0u8; 32];
        digest.copy_from_slice(hash.as_ref());
        SessionPolicy { document: document.into(), digest, form }
    }

    pub fn chars(&self) -> usize {
        self.document.chars().count()
    }

    /// One line for people (logs, `byollm doctor`).
    pub fn describe(&self) -> String {
        match self.form {
            Form::Exact => format!("exact ({} characters)", self.chars()),
            Form::Compact => format!(
                "compact: model-family wildcards in any region ({} characters; the exact list exceeds STS's {})",
                self.chars(),
                max_chars()
            ),
        }
    }
}

/// One Bedrock route a scope may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRoute {
    /// The public model it serves.
    pub model: String,
    pub route: BedrockRoute,
    /// The foundation model the `[models]` entry serves (its catalog family), for an application
    /// inference profile.
    pub wraps: Option<String>,
}

/// Every Bedrock route that `team` (and `agent`) may use under `routing`.
pub fn scope_routes(config: &Config, routing: &RoutingPolicy, team: &str, agent: Option<&str>) -> Vec<ScopeRoute> {
    routing
        .bedrock_routes(RouteScope { team: Some(team), agent })
        .into_iter()
        .map(|(model, route)| ScopeRoute {
            model: model.to_owned(),
            route,
            wraps: config.models.get(model).and_then(ModelConfig::entry).map(|entry| entry.base_id.clone()),
        })
        .collect()
}

/// What `routes` invoke for a run in `region` with a role of `account`: a route's own region and
/// role win.
pub fn targets(routes: &[ScopeRoute], region: &str, account: &str) -> Vec<Target> {
    let mut targets: Vec<Target> = routes
        .iter()
        .map(|r| Target {
            id: r.route.model_id.clone(),
            region: r.route.region.clone().unwrap_or_else(|| region.to_owned()),
            account: r.route.role.as_ref().map_or(account, RoleArn::account_id).to_owned(),
            wraps: r.wraps.clone(),
        })
        .collect();
    targets.sort();
    targets.dedup();
    targets
}

/// Why no session policy can scope a run's exported credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The routing policy allows the scope no model on Bedrock (or none callable from its region).
    NoModels,
    /// A model or profile id that cannot be put in a policy.
    Model(ModelIdError),
    /// Even the compact form is longer than STS accepts.
    TooLong { chars: usize },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::NoModels => f.write_str("the routing policy allows no model on Bedrock"),
            PolicyError::Model(error) => write!(f, "{error}"),
            PolicyError::TooLong { chars } => write!(
                f,
                "the models the routing policy allows need a {chars}-character session policy even with model-family wildcards, over the {} STS accepts",
                max_chars()
            ),
        }
    }
}

impl PolicyError {
    /// What the operator changes to fix it.
    pub fn fix(&self) -> &'static str {
        match self {
            PolicyError::NoModels => "list a model with a Bedrock route in its [routing] models",
            PolicyError::Model(_) => {
                "fix the [models] id or the route's profile, or set sts.session_policy = false to export the role's own permissions (scope the role with byollm aws-setup)"
            }
            PolicyError::TooLong { .. } => {
                "allow it fewer models (or fewer profiles and regions) in [routing], or set sts.session_policy = false to export the role's own permissions (scope the role with byollm aws-setup --agent)"
            }
        }
    }
}

/// The document without `Sid`s: they help people reading a role's policy, and a session policy
/// spends its characters on resources.
fn render(statements: Vec<Value>) -> String {
    let statements = statements
        .into_iter()
        .map(|mut statement| {
            if let Some(map) = statement.as_object_mut() {
                map.remove("Sid");
            }
            statement
        })
        .collect();
    bedrock_iam::document(statements).to_string()
}

/// The session policy for `targets`: exact when it fits, else compact when that fits, else
/// [`PolicyError::TooLong`].
pub fn build(targets: &[Target]) -> Result<SessionPolicy, PolicyError> {
    let exact = bedrock_iam::statements(targets, Form::Exact).map_err(PolicyError::Model)?;
    if exact.statements.is_empty() {
        return Err(PolicyError::NoModels);
    }
    if exact.exact {
        let document = render(exact.statements);
        if document.chars().count() <= max_chars() {
            return Ok(SessionPolicy::new(document, Form::Exact));
        }
    }
    let compact = bedrock_iam::statements(targets, Form::Compact).map_err(PolicyError::Model)?;
    let document = render(compact.statements);
    let chars = document.chars().count();
    if chars <= max_chars() {
        Ok(SessionPolicy::new(document, Form::Compact))
    } else {
        Err(PolicyError::TooLong { chars })
    }
}

/// Most policies [`PolicyCache`] keeps.
pub const MAX_CACHED: usize = 1024;

/// Built policies (or refusals) by the targets they cover, so a request pays for a lookup rather
/// than a build (hundreds of microseconds in a debug build: JSON, family patterns, SHA-256). At
/// most [`MAX_CACHED`], forgotten all at once when full: configured scopes are far fewer, and
/// after a routing reload the old entries are simply never asked for again.
#[derive(Default)]
pub struct PolicyCache {
    entries: Mutex<HashMap<Vec<Target>, Result<SessionPolicy, PolicyError>>>,
}

impl PolicyCache {
    /// [`build`] for `targets`, once per distinct list.
    pub fn get_or_build(&self, targets: Vec<Target>) -> Result<SessionPolicy, PolicyError> {
        if let Some(found) = self.entries().get(&targets) {
            return found.clone();
        }
        let built = build(&targets);
        let mut entries = self.entries();
        if entries.len() >= MAX_CACHED {
            entries.clear();
        }
        entries.insert(targets, built.clone());
        built
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Vec<Target>, Result<SessionPolicy, PolicyError>>> {
        match self.entries.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session policy for a run of `team` (and `agent`) in `region` with a role of `account`.
pub fn for_scope(
    config: &Config,
    routing: &RoutingPolicy,
    team: &str,
    agent: Option<&str>,
    region: &str,
    account: &str,
) -> Result<SessionPolicy, PolicyError> {
    build(&targets(&scope_routes(config, routing, team, agent), region, account))
}

/// Every scope credentials can be exported for: each team with a role, and each of its agents
/// (team, agent, region, role).
fn scopes(config: &Config) -> Vec<(&str, Option<&str>, &str, &RoleArn)> {
    let mut out = Vec::new();
    for team in &config.teams {
        let region = team.region.as_deref().unwrap_or(&config.bedrock.region);
        if let Some(role) = &team.role_arn {
            out.push((team.uid.as_str(), None, region, role));
        }
        for agent in &team.agents {
            out.push((team.uid.as_str(), Some(agent.name.as_str()), region, &agent.role_arn));
        }
    }
    out
}

/// Say, for every configured scope, when its exported credentials will be scoped only by
/// model-family wildcards (a warning) or refused (an error), and when scoping is off altogether.
pub fn log_scopes(config: &Config, routing: &RoutingPolicy) {
    if !config.sts.session_policy {
        tracing::warn!(
            "sts.session_policy = false: credentials exported by /v1/credentials carry every permission of the role, not only the models its routing allows"
        );
        return;
    }
    for (team, agent, region, role) in scopes(config) {
        let agent_label = agent.unwrap_or("-");
        match for_scope(config, routing, team, agent, region, role.account_id()) {
            Ok(policy) if policy.form == Form::Compact => tracing::warn!(
                team,
                agent = agent_label,
                chars = policy.chars(),
                "the exact list of models this scope's routing allows exceeds STS's session policy limit: its exported credentials are scoped by model-family wildcards in any region"
            ),
            Ok(_) | Err(PolicyError::NoModels) => {}
            Err(error) => tracing::error!(
                team,
                agent = agent_label,
                "/v1/credentials will refuse this scope: {error}; {}",
                error.fix()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ACCOUNT: &str = "111111111111";

    fn target(id: &str, region: &str) -> Target {
        Target { id: id.into(), region: region.into(), account: ACCOUNT.into(), wraps: None }
    }

    fn parsed(policy: &SessionPolicy) -> Value {
        serde_json::from_str(&policy.document).unwrap()
    }

    fn config(routing: &str) -> (Config, RoutingPolicy) {
        let text = format!(
            r#"
dev = true
[[teams]]
uid = "acme"
region = "us-east-1"
role_arn = "arn:aws:iam::111111111111:role/byollm-acme"
[[teams.agents]]
name = "writer"
role_arn = "arn:aws:iam::111111111111:role/byollm-acme-writer"
[[teams.agents]]
name = "reader"
role_arn = "arn:aws:iam::111111111111:role/byollm-acme-reader"
[models.sonnet]
id = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
[models.opus]
id = "us.anthropic.claude-opus-4-1-20250805-v1:0"
[models.tuned]
id = "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/tuned1"
family = "claude-sonnet-4-6"
{routing}
"#
        );
        let config = Config::from_toml(&text).unwrap();
        let secrets = crate::routing::policy::MapSecrets(Default::default());
        let routing = RoutingPolicy::from_config(&config, crate::routing::Mode::Hosted, &secrets).unwrap();
        (config, routing)
    }

    #[test]
    fn each_scope_gets_only_what_its_routing_allows() {
        let (config, routing) = config(
            r#"
[routing.teams.acme.agents.writer]
models = ["sonnet"]
[routing.teams.acme.agents.reader]
models = ["opus", "tuned"]
routes.opus = [{ bedrock = { region = "us-west-2", role = "arn:aws:iam::222222222222:role/other" } }]
"#,
        );
        let writer = for_scope(&config, &routing, "acme", Some("writer"), "us-east-1", ACCOUNT).unwrap();
        assert_eq!(writer.form, Form::Exact);
        let text = writer.document.to_string();
        assert!(
            text.contains("global.anthropic.claude-sonnet-4-5") && !text.contains("opus") && !text.contains("tuned")
        );
        assert!(!text.contains("Sid"), "{text}");

        let reader = for_scope(&config, &routing, "acme", Some("reader"), "us-east-1", ACCOUNT).unwrap();
        let value = parsed(&reader);
        let direct: Vec<&str> =
            value["Statement"][0]["Resource"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        // The route's region and its role's account; the application profile exactly, with the
        // model its family names behind it.
        assert_eq!(
            direct,
            [
                "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/tuned1",
                "arn:aws:bedrock:us-west-2:222222222222:inference-profile/us.anthropic.claude-opus-4-1-20250805-v1:0",
            ]
        );
        assert!(!reader.document.contains("sonnet-4-5") && reader.document.contains("claude-sonnet-4-6"));
        assert!(!reader.document.contains("foundation-model/*"), "{}", reader.document);
        assert_ne!(writer.digest, reader.digest);

        // The team itself (no agent layer): every model.
        let team = for_scope(&config, &routing, "acme", None, "us-east-1", ACCOUNT).unwrap();
        for id in ["sonnet-4-5", "opus-4-1", "tuned1"] {
            assert!(team.document.contains(id), "{id}");
        }
    }

    #[test]
    fn the_same_targets_give_the_same_policy_and_a_change_another() {
        let a = build(&[target("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "us-east-1")]).unwrap();
        let b = build(&[target("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "us-east-1")]).unwrap();
        let c = build(&[target("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "eu-west-1")]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.digest, c.digest);
    }

    #[test]
    fn a_global_profile_is_exact_with_its_conditions() {
        let policy = build(&[target("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "us-east-1")]).unwrap();
        assert_eq!(policy.form, Form::Exact);
        let value = parsed(&policy);
        let profile =
            "arn:aws:bedrock:us-east-1:111111111111:inference-profile/global.anthropic.claude-sonnet-4-5-20250929-v1:0";
        assert_eq!(
            value["Statement"],
            json!([
                {"Effect": "Allow", "Action": ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"], "Resource": [profile]},
                {"Effect": "Allow", "Action": ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                 "Resource": ["arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0"],
                 "Condition": {"StringEquals": {"bedrock:InferenceProfileArn": [profile]}}},
                {"Effect": "Allow", "Action": ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                 "Resource": ["arn:aws:bedrock:::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0"],
                 "Condition": {"StringEquals": {"aws:RequestedRegion": "unspecified", "bedrock:InferenceProfileArn": [profile]}}},
            ])
        );
    }

    #[test]
    fn a_geographic_profile_reaches_its_model_in_its_geography_only_through_it() {
        let policy = build(&[target("us.anthropic.claude-haiku-4-5-20251001-v1:0", "us-east-2")]).unwrap();
        let value = parsed(&policy);
        assert_eq!(
            value["Statement"][1]["Resource"],
            json!(["arn:aws:bedrock:us-*::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0"])
        );
        assert_eq!(
            value["Statement"][1]["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"],
            json!([
                "arn:aws:bedrock:us-east-2:111111111111:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0"
            ])
        );
        // Called from outside its geography it cannot be invoked at all: nothing to export.
        assert_eq!(
            build(&[target("us.anthropic.claude-haiku-4-5-20251001-v1:0", "eu-west-1")]),
            Err(PolicyError::NoModels)
        );
    }

    #[test]
    fn the_default_models_fall_back_to_the_compact_form() {
        let targets: Vec<Target> =
            crate::models::default_models().values().map(|m| target(&m.id, "us-east-1")).collect();
        let exact = render(bedrock_iam::statements(&targets, Form::Exact).unwrap().statements);
        assert!(exact.chars().count() > max_chars(), "the test needs an exact form that does not fit");
        let policy = build(&targets).unwrap();
        assert_eq!(policy.form, Form::Compact);
        assert!(policy.chars() <= max_chars());
        let value = parsed(&policy);
        // Every model's profile exactly (any region), its family only through a profile.
        for model in crate::models::default_models().values() {
            let profile = format!("arn:aws:bedrock:*:111111111111:inference-profile/{}", model.id);
            assert!(value["Statement"][0]["Resource"].as_array().unwrap().contains(&json!(profile)), "{profile}");
        }
        assert!(value["Statement"][1]["Condition"]["StringLike"]["bedrock:InferenceProfileArn"].is_array());
        assert!(!policy.document.contains("foundation-model/*\""), "{}", policy.document);
        assert!(policy.describe().starts_with("compact"));
    }

    #[test]
    fn past_the_compact_form_the_export_is_refused_never_widened() {
        let targets: Vec<Target> =
            (0..40).map(|i| target(&format!("us.anthropic.claude-model-{i:02}-20250101-v1:0"), "us-east-1")).collect();
        let error = build(&targets).unwrap_err();
        assert!(matches!(error, PolicyError::TooLong { chars } if chars > max_chars()), "{error:?}");
        assert!(error.to_string().contains("2048") && error.fix().contains("sts.session_policy = false"));
        // An id no policy can name is refused too, not widened.
        let error = build(&[target("arn:aws:bedrock:us-east-1::foundation-model/a.b", "us-east-1")]).unwrap_err();
        assert!(matches!(error, PolicyError::Model(_)), "{error:?}");
        assert_eq!(build(&[]), Err(PolicyError::NoModels));
    }

    #[test]
    fn the_policy_cache_builds_once_per_target_list_and_stays_bounded() {
        let cache = PolicyCache::default();
        let one = vec![target("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "us-east-1")];
        let first = cache.get_or_build(one.clone()).unwrap();
        assert_eq!(cache.get_or_build(one.clone()).unwrap(), first);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get_or_build(Vec::new()), Err(PolicyError::NoModels), "refusals are kept too");
        for i in 0..MAX_CACHED + 10 {
            let _ = cache.get_or_build(vec![target(&format!("anthropic.model-{i}"), "us-east-1")]);
            assert!(cache.len() <= MAX_CACHED);
        }
        assert_eq!(cache.get_or_build(one).unwrap(), first);
    }

    #[test]
    fn an_opaque_application_profile_is_never_called_exact() {
        let arn = "arn:aws:bedrock:us-east-1:111111111111:application-inference-profile/abc";
        let policy = build(&[target(arn, "us-east-1")]).unwrap();
        assert_eq!(policy.form, Form::Compact);
        let value = parsed(&policy);
        assert_eq!(value["Statement"][1]["Resource"], json!(["arn:aws:bedrock:*::foundation-model/*"]));
        assert_eq!(value["Statement"][1]["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"], json!([arn]));
    }
}
