//! What a customer creates in their AWS account so byollm can invoke Bedrock for one team: the
//! trust policy and least-privilege permissions policy of the IAM role, plus the same inputs as
//! Terraform variables (`infra/aws/terraform`) and CloudFormation parameters
//! (`infra/aws/cloudformation/byollm-role.yaml`, beside the account-level `byollm-oidc-provider.yaml`).
//!
//! [`generate`] is pure: it reads no config file, no environment and no network, so its output
//! can be reviewed before anything is applied; [`models_from_routing`] fills its models from a
//! loaded configuration.
//!
//! # Trust policy
//! One role per team (`byollm-<team>`) and one per named agent (`byollm-<team>-<agent>`).
//! `Federated` is `arn:aws:iam::<account>:oidc-provider/<issuer-host>` where `<issuer-host>` is
//! the issuer URL without `https://` (host plus path, if any); the conditions are
//! `StringEquals <issuer-host>:aud = <audience>` and `StringLike <issuer-host>:sub =
//! <`subject_pattern`>`. The pattern is only safe because a uid can never contain `/`, `:`, `*`
//! or `?` (see [`crate::principal`]).
//!
//! With the team's `session_tags` on, the gateway mints the run into its tokens as session tags
//! and a source identity, and the trust policy lets IAM itself tell agents apart: the actions are
//! `sts:AssumeRoleWithWebIdentity`, `sts:TagSession` and `sts:SetSourceIdentity` (STS refuses a
//! tagged token for a role whose trust policy lacks them), with `StringEquals
//! aws:RequestTag/team = <team>` and, for an agent's role, `StringEquals aws:RequestTag/agent =
//! <agent>`, for the team's role `Null aws:RequestTag/agent = true`: a token minted for another
//! agent, or for none, cannot assume an agent's role, and an agent's token cannot assume the
//! team's role.
//!
//! # Permissions policy
//! Only `bedrock:InvokeModel` and `bedrock:InvokeModelWithResponseStream`, on exactly the
//! resources each model id needs, in the `regions` byollm calls Bedrock in (the source regions):
//! - a foundation model id (`anthropic.claude-…-v1:0`): `arn:aws:bedrock:<region>::foundation-model/<id>`
//!   in every source region;
//! - a geographic inference profile (`us.`, `eu.`, `apac.`, `jp.`, `au.`, `ca.`): the profile
//!   `arn:aws:bedrock:<region>:<account>:inference-profile/<id>` in the source regions of that
//!   geography, plus the foundation model in every region of the geography
//!   (`arn:aws:bedrock:us-*::foundation-model/<model>`), the latter only when the call comes
//!   through one of those profiles (`bedrock:InferenceProfileArn`). AWS chooses, and over time
//!   extends, the destination regions of a profile; a region pattern keeps working when it does,
//!   and the condition means the model cannot be invoked any other way;
//! - a global inference profile (`global.`): the profile in the source regions, the foundation
//!   model in the source regions and the foundation model with an empty region
//!   (`arn:aws:bedrock:::foundation-model/<model>`) with `aws:RequestedRegion = unspecified`, both
//!   only through the profile, as AWS documents for global cross-region inference;
//! - an application inference profile ARN: that ARN, plus the foundation model it wraps (from its
//!   `[models]` entry's family, `profile_models`) only through that profile; when that model is not
//!   known, any foundation model through that profile.
//!
//! These rules live in [`crate::aws::bedrock_iam`], shared with the session policy of exported
//! credentials. `byollm aws-setup` lists the models the team's or agent's routing allows
//! ([`models_from_routing`]), so the role itself cannot invoke more than its routing allows.
//!
//! When `account_id` is `None` the account appears as [`ACCOUNT_PLACEHOLDER`]; replace it before
//! applying the JSON. Terraform and CloudFormation fill in the account themselves.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Value, json};

use crate::aws::bedrock_iam::{self, Form, Kind, ModelIdError, Target};
use crate::broker::session_policy;
use crate::config::Config;
use crate::principal::{ActorType, ScopedPrincipal, Uid};
use crate::routing::policy::PlaceholderSecrets;
use crate::routing::{Mode, RoutingPolicy};

/// Stands for the customer's 12-digit account id when the caller did not give one.
pub const ACCOUNT_PLACEHOLDER: &str = "<ACCOUNT_ID>";
/// Range IAM accepts for a role's `MaxSessionDuration`, in seconds.
pub const MAX_SESSION_RANGE: std::ops::RangeInclusive<u32> = 3600..=43200;

/// Everything the generator needs; nothing is read from elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupInput {
    /// byollm's `[issuer] url`: https, no trailing slash, no query or fragment.
    pub issuer_url: String,
    /// byollm's `[issuer] audience`, normally `sts.amazonaws.com`.
    pub audience: String,
    pub team_uid: Uid,
    pub scope: SubjectScope,
    /// Bedrock model ids, inference profile ids or application inference profile ARNs.
    pub model_ids: Vec<String>,
    /// Regions byollm calls Bedrock in (the team's `region`, and those its routes name), at least
    /// one.
    pub regions: Vec<String>,
    /// Application inference profile ARN (among `model_ids`) → the foundation model id it wraps,
    /// when known (its `[models]` entry's family): only that model is allowed through it, else
    /// any model through it.
    pub profile_models: BTreeMap<String, String>,
    /// The customer's 12-digit AWS account id, if known.
    pub account_id: Option<String>,
    pub role_name: String,
    /// The role's `MaxSessionDuration`, 3600–43200.
    pub max_session_secs: u32,
    /// The named agent this role is for (`[[teams.agents]]`); `None`: the team's own role.
    pub agent: Option<Uid>,
    /// The team mints session tags (`[[teams]] session_tags`): the trust policy allows them and
    /// checks the team and agent tags.
    pub session_tags: bool,
}

/// The default IAM role name: `byollm-<team>`, or `byollm-<team>-<agent>` for an agent's role.
pub fn default_role_name(team: &Uid, agent: Option<&Uid>) -> String {
    match agent {
        Some(agent) => format!("byollm-{team}-{agent}"),
        None => format!("byollm-{team}"),
    }
}

/// Which subjects of the team the role trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectScope {
    /// Every principal of the team: `scoped_principal:<team>/*`.
    Team,
    /// One actor type: `scoped_principal:<team>/<actor>:*`.
    Actor(ActorType),
    /// One principal: `scoped_principal:<team>/<actor>:<uid>`.
    Principal(ActorType, Uid),
}

/// The generated documents.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupOutput {
    pub trust_policy: Value,
    pub permissions_policy: Value,
    /// `terraform.tfvars` for `infra/aws/terraform`.
    pub tfvars: String,
    /// `[{"ParameterKey", "ParameterValue"}]` for `byollm-role.yaml`, as accepted by
    /// `aws cloudformation create-stack --parameters file://…`.
    pub cfn_parameters: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    IssuerUrl { url: String, reason: &'static str },
    Audience,
    NoModels,
    ModelId { id: String, reason: String },
    NoRegions,
    Region(String),
    AccountId(String),
    RoleName(String),
    MaxSession(u32),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::IssuerUrl { url, reason } => write!(f, "issuer url {url:?} {reason}"),
            SetupError::Audience => {
                f.write_str("audience must be 1-255 characters without whitespace (normally sts.amazonaws.com)")
            }
            SetupError::NoModels => f.write_str("no model ids given; list the bedrock model or inference profile ids"),
            SetupError::ModelId { id, reason } => write!(f, "model id {id:?}: {reason}"),
            SetupError::NoRegions => f.write_str("no regions given; list the regions byollm calls bedrock in"),
            SetupError::Region(region) => {
                write!(f, "region {region:?} is not an aws region name such as us-east-1")
            }
            SetupError::AccountId(id) => write!(f, "account id {id:?} must be 12 digits"),
            SetupError::RoleName(name) => {
                write!(f, "role name {name:?} must be 1-64 characters of A-Z, a-z, 0-9 and +=,.@_-")
            }
            SetupError::MaxSession(secs) => write!(
                f,
                "max session duration {secs}s is outside the {}-{} seconds iam allows",
                MAX_SESSION_RANGE.start(),
                MAX_SESSION_RANGE.end()
            ),
        }
    }
}

impl std::error::Error for SetupError {}

/// The `StringLike` pattern for `<issuer-host>:sub` that admits exactly `scope` within `team`.
pub fn subject_pattern(team: &Uid, scope: &SubjectScope) -> String {
    match scope {
        SubjectScope::Team => ScopedPrincipal::team_pattern(team),
        SubjectScope::Actor(actor) => {
            format!("{}{team}/{}:*", crate::principal::SUBJECT_PREFIX, actor.as_str())
        }
        SubjectScope::Principal(actor, uid) => ScopedPrincipal::new(team.clone(), *actor, uid.clone()).to_string(),
    }
}

/// The issuer URL without `https://`: what IAM calls the provider and uses in condition keys.
pub fn issuer_host(issuer_url: &str) -> Result<&str, SetupError> {
    let bad = |reason| SetupError::IssuerUrl { url: issuer_url.to_owned(), reason };
    let rest = issuer_url.strip_prefix("https://").ok_or_else(|| bad("must start with https://"))?;
    if rest.is_empty() {
        return Err(bad("has no host"));
    }
    if rest.ends_with('/') {
        return Err(bad("must not end with a slash (tokens carry it without one)"));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(bad("must not have a query or fragment"));
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain whitespace"));
    }
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if host.contains('@') {
        return Err(bad("must not contain user information"));
    }
    if host.contains(':') {
        return Err(bad("must not contain a port (iam does not accept one)"));
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
        return Err(bad("has a host with characters other than letters, digits, dots and hyphens"));
    }
    if rest.contains("//") {
        return Err(bad("has an empty path segment"));
    }
    Ok(rest)
}

fn is_role_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '=' | ',' | '.' | '@' | '_' | '-'))
}

fn validate(input: &SetupInput) -> Result<(), SetupError> {
    issuer_host(&input.issuer_url)?;
    let aud = &input.audience;
    if aud.is_empty() || aud.len() > 255 || aud.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SetupError::Audience);
    }
    if input.model_ids.is_empty() {
        return Err(SetupError::NoModels);
    }
    if input.regions.is_empty() {
        return Err(SetupError::NoRegions);
    }
    if let Some(region) = input.regions.iter().find(|r| !bedrock_iam::valid_region(r)) {
        return Err(SetupError::Region(region.clone()));
    }
    if let Some(account) = input.account_id.as_ref().filter(|a| !bedrock_iam::valid_account(a)) {
        return Err(SetupError::AccountId(account.clone()));
    }
    if !is_role_name(&input.role_name) {
        return Err(SetupError::RoleName(input.role_name.clone()));
    }
    if !MAX_SESSION_RANGE.contains(&input.max_session_secs) {
        return Err(SetupError::MaxSession(input.max_session_secs));
    }
    for id in &input.model_ids {
        if let Kind::Geographic { region_pattern, .. } = bedrock_iam::classify(id)?
            && !input.regions.iter().any(|region| bedrock_iam::region_matches(&region_pattern, region))
        {
            return Err(SetupError::ModelId {
                id: id.clone(),
                reason: format!(
                    "is a profile for regions {region_pattern} but none of the regions ({}) is one; it can only be invoked from inside its geography",
                    input.regions.join(", ")
                ),
            });
        }
    }
    Ok(())
}

impl From<ModelIdError> for SetupError {
    fn from(error: ModelIdError) -> SetupError {
        SetupError::ModelId { id: error.id, reason: error.reason }
    }
}

/// Every model in every region, from the account: what the role is used for.
fn targets(input: &SetupInput) -> Vec<Target> {
    let account = input.account_id.as_deref().unwrap_or(ACCOUNT_PLACEHOLDER);
    let mut targets = Vec::with_capacity(input.model_ids.len() * input.regions.len());
    for id in &input.model_ids {
        for region in &input.regions {
            targets.push(Target {
                id: id.clone(),
                region: region.clone(),
                account: account.to_owned(),
                wraps: input.profile_models.get(id).cloned(),
            });
        }
    }
    targets
}

fn permissions_policy(input: &SetupInput) -> Result<Value, SetupError> {
    let statements = bedrock_iam::statements(&targets(input), Form::Exact)?;
    Ok(bedrock_iam::document(statements.statements))
}

/// The session tag keys the gateway mints (see `issuer`), as the trust policy checks them.
pub const TAG_TEAM: &str = "aws:RequestTag/team";
pub const TAG_AGENT: &str = "aws:RequestTag/agent";

fn trust_policy(input: &SetupInput, host: &str) -> Value {
    let account = input.account_id.as_deref().unwrap_or(ACCOUNT_PLACEHOLDER);
    let mut equals = serde_json::Map::new();
    equals.insert(format!("{host}:aud"), json!(input.audience));
    let mut condition = serde_json::Map::new();
    let action = if input.session_tags {
        equals.insert(TAG_TEAM.to_owned(), json!(input.team_uid.as_str()));
        match &input.agent {
            Some(agent) => {
                equals.insert(TAG_AGENT.to_owned(), json!(agent.as_str()));
            }
            None => {
                condition.insert("Null".to_owned(), json!({TAG_AGENT: "true"}));
            }
        }
        json!(["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"])
    } else {
        json!("sts:AssumeRoleWithWebIdentity")
    };
    condition.insert("StringEquals".to_owned(), Value::Object(equals));
    condition.insert(
        "StringLike".to_owned(),
        json!({format!("{host}:sub"): subject_pattern(&input.team_uid, &input.scope)}),
    );
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ByollmWebIdentity",
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{account}:oidc-provider/{host}")},
            "Action": action,
            "Condition": condition,
        }],
    })
}

/// An HCL string literal (JSON string escaping is valid HCL, except `${` and `%{`, which our
/// validated inputs cannot contain).
fn hcl_string(value: &str) -> String {
    Value::String(value.to_owned()).to_string()
}

fn hcl_list(values: &[String]) -> String {
    format!("[{}]", values.iter().map(|v| hcl_string(v)).collect::<Vec<_>>().join(", "))
}

fn tfvars(input: &SetupInput) -> String {
    let scope = match &input.scope {
        SubjectScope::Team => "{}".to_owned(),
        SubjectScope::Actor(actor) => format!("{{ actor_type = {} }}", hcl_string(actor.as_str())),
        SubjectScope::Principal(actor, uid) => {
            format!("{{ actor_type = {}, principal_uid = {} }}", hcl_string(actor.as_str()), hcl_string(uid.as_str()))
        }
    };
    let mut out = String::new();
    let mut line = |key: &str, value: String| out.push_str(&format!("{key:<20} = {value}\n"));
    line("issuer_url", hcl_string(&input.issuer_url));
    line("audience", hcl_string(&input.audience));
    line("team_uid", hcl_string(input.team_uid.as_str()));
    line("subject_scope", scope);
    line("model_ids", hcl_list(&input.model_ids));
    line("regions", hcl_list(&input.regions));
    line("role_name", hcl_string(&input.role_name));
    line("max_session_duration", input.max_session_secs.to_string());
    // Only when they differ from the module's defaults (team role, no session tags).
    if input.session_tags {
        line("session_tags", "true".to_owned());
    }
    if let Some(agent) = &input.agent {
        line("agent", hcl_string(agent.as_str()));
    }
    out
}

fn cfn_parameters(input: &SetupInput) -> Result<Value, SetupError> {
    let (mut foundation, mut profiles, mut applications) = (Vec::new(), Vec::new(), Vec::new());
    for id in &input.model_ids {
        match bedrock_iam::classify(id)? {
            Kind::Foundation { model } => foundation.push(model),
            Kind::Geographic { id, .. } | Kind::Global { id, .. } => profiles.push(id),
            Kind::Application { arn } => applications.push(arn),
        }
    }
    let (actor, principal) = match &input.scope {
        SubjectScope::Team => ("", ""),
        SubjectScope::Actor(actor) => (actor.as_str(), ""),
        SubjectScope::Principal(actor, uid) => (actor.as_str(), uid.as_str()),
    };
    let params = [
        ("IssuerUrl", input.issuer_url.clone()),
        // The template names its condition keys after the host and cannot derive it itself.
        ("IssuerHost", issuer_host(&input.issuer_url)?.to_owned()),
        ("Audience", input.audience.clone()),
        ("TeamUid", input.team_uid.to_string()),
        ("SubjectActorType", actor.to_owned()),
        ("SubjectPrincipalUid", principal.to_owned()),
        ("FoundationModelIds", foundation.join(",")),
        ("InferenceProfileIds", profiles.join(",")),
        ("ApplicationInferenceProfileArns", applications.join(",")),
        ("Regions", input.regions.join(",")),
        ("RoleName", input.role_name.clone()),
        ("MaxSessionDuration", input.max_session_secs.to_string()),
    ];
    // Only when they differ from the template's defaults (team role, no session tags).
    let extra = [
        input.session_tags.then(|| ("SessionTags", "true".to_owned())),
        input.agent.as_ref().map(|agent| ("AgentName", agent.to_string())),
    ];
    let params = params.into_iter().chain(extra.into_iter().flatten());
    Ok(Value::Array(params.map(|(k, v)| json!({"ParameterKey": k, "ParameterValue": v})).collect()))
}

/// Fill `input.model_ids`, `regions` and `profile_models` with what the routing policy lets the
/// role's scope (`input.team_uid`, and `input.agent` for an agent's role) use on Bedrock: every
/// Bedrock route of every model it may use, in the route's region (added to `input.regions`, which
/// starts as the team's). Routes that name another role are that role's to grant, and models no
/// region can invoke are skipped; the notes say which and why.
pub fn models_from_routing(config: &Config, input: &mut SetupInput) -> Result<Vec<String>, String> {
    let routing = RoutingPolicy::from_config(config, Mode::Hosted, &PlaceholderSecrets).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
        format!("the [routing] section does not validate: {}", lines.join("; "))
    })?;
    let team = config.team(&input.team_uid);
    let scope_role = match &input.agent {
        Some(agent) => team.and_then(|t| t.agents.iter().find(|a| a.name == agent.as_str())).map(|a| &a.role_arn),
        None => team.and_then(|t| t.role_arn.as_ref()),
    };
    let mut notes = Vec::new();
    let mut candidates: Vec<String> = Vec::new();
    let agent = input.agent.as_ref().map(Uid::as_str);
    for scoped in session_policy::scope_routes(config, &routing, input.team_uid.as_str(), agent) {
        let (model, route) = (&scoped.model, &scoped.route);
        if let Some(role) = route.role.as_ref().filter(|role| Some(*role) != scope_role) {
            notes.push(format!("skipping a route of model {model}: it uses role {role}, whose own policy grants it"));
            continue;
        }
        if let Some(region) = &route.region
            && !input.regions.contains(region)
        {
            input.regions.push(region.clone());
        }
        if !candidates.contains(&route.model_id) {
            candidates.push(route.model_id.clone());
        }
        if let (Ok(Kind::Application { arn }), Some(wraps)) = (bedrock_iam::classify(&route.model_id), &scoped.wraps) {
            input.profile_models.insert(arn, wraps.clone());
        }
    }
    // Keep the models the regions can invoke (a `us.` profile cannot be used from eu-west-1).
    for id in candidates {
        let single = SetupInput { model_ids: vec![id.clone()], ..input.clone() };
        match generate(&single) {
            Ok(_) => input.model_ids.push(id),
            Err(error @ SetupError::ModelId { .. }) => notes.push(format!("skipping model {id}: {error}")),
            // Not the model's fault: the rest of the input is wrong for every model.
            Err(error) => return Err(error.to_string()),
        }
    }
    if input.model_ids.is_empty() {
        let who = match &input.agent {
            Some(agent) => format!("agent {agent} of team {}", input.team_uid),
            None => format!("team {}", input.team_uid),
        };
        return Err(format!("the routing policy lets {who} invoke no model on Bedrock from its regions"));
    }
    Ok(notes)
}

/// Validate `input` and produce the policies and deployment inputs for it.
pub fn generate(input: &SetupInput) -> Result<SetupOutput, SetupError> {
    validate(input)?;
    let host = issuer_host(&input.issuer_url)?;
    Ok(SetupOutput {
        trust_policy: trust_policy(input, host),
        permissions_policy: permissions_policy(input)?,
        tfvars: tfvars(input),
        cfn_parameters: cfn_parameters(input)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IAM `StringLike`: `*` matches any sequence (including `/` and the empty one), `?` exactly
    /// one character, everything else itself; case-sensitive.
    fn string_like(pattern: &str, value: &str) -> bool {
        let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
        // Classic wildcard matcher with backtracking to the last `*`.
        let (mut pi, mut vi, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
        while vi < v.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
                pi += 1;
                vi += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some(pi);
                mark = vi;
                pi += 1;
            } else if let Some(s) = star {
                pi = s + 1;
                mark += 1;
                vi = mark;
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }

    #[test]
    fn with_session_tags_agent_roles_and_the_team_role_are_told_apart_by_tags() {
        let mut team = input("abc", SubjectScope::Team);
        team.session_tags = true;
        let mut agent = team.clone();
        agent.agent = Some(uid("reviewer"));
        let statement = |i: &SetupInput| generate(i).unwrap().trust_policy["Statement"][0].clone();
        let (team_statement, agent_statement) = (statement(&team), statement(&agent));
        for s in [&team_statement, &agent_statement] {
            assert_eq!(
                s["Action"],
                json!(["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"])
            );
            assert_eq!(s["Condition"]["StringEquals"]["aws:RequestTag/team"], "abc");
            assert_eq!(s["Condition"]["StringEquals"]["issuer.example.com:aud"], AUD);
            assert_eq!(s["Condition"]["StringLike"]["issuer.example.com:sub"], "scoped_principal:abc/*");
        }
        assert_eq!(team_statement["Condition"]["Null"], json!({"aws:RequestTag/agent": "true"}));
        assert!(team_statement["Condition"]["StringEquals"].get("aws:RequestTag/agent").is_none());
        assert_eq!(agent_statement["Condition"]["StringEquals"]["aws:RequestTag/agent"], "reviewer");
        assert!(agent_statement["Condition"].get("Null").is_none());
        // The deployment inputs say so too, and only then.
        let out = generate(&agent).unwrap();
        assert!(
            out.tfvars.contains("session_tags         = true\n")
                && out.tfvars.contains("agent                = \"reviewer\"\n")
        );
        assert!(out.cfn_parameters.to_string().contains("\"AgentName\""));
        let plain = generate(&input("abc", SubjectScope::Team)).unwrap();
        assert!(!plain.tfvars.contains("session_tags") && !plain.cfn_parameters.to_string().contains("SessionTags"));
        assert_eq!(default_role_name(&uid("abc"), Some(&uid("reviewer"))), "byollm-abc-reviewer");
        assert_eq!(default_role_name(&uid("abc"), None), "byollm-abc");
    }

    /// Evaluate the trust policy's single statement for a token with `aud` and `sub`.
    fn trusts(policy: &Value, host: &str, aud: &str, sub: &str) -> bool {
        let condition = &policy["Statement"][0]["Condition"];
        let conditions = condition.as_object().unwrap();
        assert_eq!(conditions.len(), 2, "only StringEquals and StringLike are expected");
        let aud_ok = condition["StringEquals"][format!("{host}:aud")].as_str().unwrap() == aud;
        let sub_ok = string_like(condition["StringLike"][format!("{host}:sub")].as_str().unwrap(), sub);
        aud_ok && sub_ok
    }

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    fn input(team: &str, scope: SubjectScope) -> SetupInput {
        SetupInput {
            issuer_url: "https://issuer.example.com".to_owned(),
            audience: "sts.amazonaws.com".to_owned(),
            team_uid: uid(team),
            scope,
            model_ids: vec!["anthropic.claude-3-5-haiku-20241022-v1:0".to_owned()],
            regions: vec!["us-east-1".to_owned()],
            profile_models: BTreeMap::new(),
            account_id: Some("123456789012".to_owned()),
            role_name: "byollm-team".to_owned(),
            max_session_secs: 3600,
            agent: None,
            session_tags: false,
        }
    }

    fn sub(team: &str, actor: ActorType, principal: &str) -> String {
        ScopedPrincipal::new(uid(team), actor, uid(principal)).to_string()
    }

    const HOST: &str = "issuer.example.com";
    const AUD: &str = "sts.amazonaws.com";

    #[test]
    fn string_like_matcher_follows_iam() {
        assert!(string_like("a*", "a/b/c"));
        assert!(string_like("a*c", "ac"));
        assert!(string_like("a?c", "abc"));
        assert!(!string_like("a?c", "ac"));
        assert!(!string_like("abc", "abcd"));
        assert!(!string_like("Abc", "abc"));
        assert!(string_like("*", ""));
    }

    #[test]
    fn trust_policy_has_the_documented_shape() {
        let out = generate(&input("abc", SubjectScope::Team)).unwrap();
        let statement = &out.trust_policy["Statement"][0];
        assert_eq!(statement["Effect"], "Allow");
        assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
        assert_eq!(statement["Principal"]["Federated"], "arn:aws:iam::123456789012:oidc-provider/issuer.example.com");
        assert_eq!(statement["Condition"]["StringEquals"]["issuer.example.com:aud"], AUD);
        assert_eq!(statement["Condition"]["StringLike"]["issuer.example.com:sub"], "scoped_principal:abc/*");
    }

    #[test]
    fn team_scope_admits_the_teams_principals_and_no_one_else() {
        let policy = generate(&input("abc", SubjectScope::Team)).unwrap().trust_policy;
        for actor in ActorType::ALL {
            assert!(trusts(&policy, HOST, AUD, &sub("abc", actor, "alice")));
            assert!(trusts(&policy, HOST, AUD, &sub("abc", actor, &"z".repeat(128))));
        }
        // Another team whose uid merely starts with ours.
        assert!(!trusts(&policy, HOST, AUD, &sub("abcd", ActorType::User, "x")));
        assert!(!trusts(&policy, HOST, AUD, &sub("ab", ActorType::User, "x")));
        // Prefix and case tricks.
        assert!(!trusts(&policy, HOST, AUD, "scoped_principal:abc"));
        assert!(!trusts(&policy, HOST, AUD, "Scoped_principal:abc/user:x"));
        assert!(!trusts(&policy, HOST, AUD, "xscoped_principal:abc/user:x"));
        assert!(!trusts(&policy, HOST, AUD, &sub("ABC", ActorType::User, "x")));
        // Audience must be equal, not similar.
        for aud in ["sts.amazonaws.com ", "STS.amazonaws.com", "sts.amazonaws.com.evil", "", "sts"] {
            assert!(!trusts(&policy, HOST, aud, &sub("abc", ActorType::User, "x")), "aud {aud:?}");
        }
    }

    #[test]
    fn the_uid_rule_is_what_keeps_a_slash_out_of_another_teams_pattern() {
        // A team "abc" trusts scoped_principal:abc/*. If uids could contain "/", a team named
        // "abc/evil" would mint subjects that team "abc" trusts:
        let abc = generate(&input("abc", SubjectScope::Team)).unwrap().trust_policy;
        let smuggled = "scoped_principal:abc/evil/user:x";
        assert!(trusts(&abc, HOST, AUD, smuggled), "the pattern alone cannot tell this apart");
        // ...which is why such a team, and such a subject, cannot exist:
        assert!(Uid::parse("abc/evil").is_err());
        assert!(ScopedPrincipal::parse(smuggled).is_err());
        // Same for principal uids trying to look like another actor.
        assert!(Uid::parse("x/user:y").is_err());
        assert!(Uid::parse("*").is_err());
    }

    #[test]
    fn actor_scope_admits_one_actor_type() {
        let policy = generate(&input("abc", SubjectScope::Actor(ActorType::ServiceAccount))).unwrap().trust_policy;
        assert_eq!(
            policy["Statement"][0]["Condition"]["StringLike"]["issuer.example.com:sub"],
            "scoped_principal:abc/service_account:*"
        );
        assert!(trusts(&policy, HOST, AUD, &sub("abc", ActorType::ServiceAccount, "svc-1")));
        assert!(!trusts(&policy, HOST, AUD, &sub("abc", ActorType::User, "svc-1")));
        assert!(!trusts(&policy, HOST, AUD, &sub("abcd", ActorType::ServiceAccount, "svc-1")));
    }

    #[test]
    fn principal_scope_admits_exactly_one_principal() {
        let scope = SubjectScope::Principal(ActorType::User, uid("alice"));
        let policy = generate(&input("abc", scope)).unwrap().trust_policy;
        assert!(trusts(&policy, HOST, AUD, &sub("abc", ActorType::User, "alice")));
        for other in ["alice2", "alic", "bob"] {
            assert!(!trusts(&policy, HOST, AUD, &sub("abc", ActorType::User, other)), "{other}");
        }
        assert!(!trusts(&policy, HOST, AUD, &sub("abc", ActorType::ServiceAccount, "alice")));
    }

    #[test]
    fn issuer_with_a_path_uses_host_and_path_in_keys() {
        let mut i = input("abc", SubjectScope::Team);
        i.issuer_url = "https://example.com/byollm/prod".to_owned();
        let policy = generate(&i).unwrap().trust_policy;
        let s = &policy["Statement"][0];
        assert_eq!(s["Principal"]["Federated"], "arn:aws:iam::123456789012:oidc-provider/example.com/byollm/prod");
        assert!(trusts(&policy, "example.com/byollm/prod", AUD, &sub("abc", ActorType::User, "x")));
    }

    #[test]
    fn bad_issuer_urls_are_refused_with_a_reason() {
        for url in [
            "http://issuer.example.com",
            "issuer.example.com",
            "https://issuer.example.com/",
            "https://issuer.example.com/x/",
            "https://issuer.example.com?a=b",
            "https://issuer.example.com#frag",
            "https://issuer.example.com:8443",
            "https://user@issuer.example.com",
            "https://",
            "https:///path",
            "https://issuer example.com",
            "https://issuer.example.com//x",
        ] {
            let mut i = input("abc", SubjectScope::Team);
            i.issuer_url = url.to_owned();
            let err = generate(&i).unwrap_err();
            assert!(matches!(err, SetupError::IssuerUrl { .. }), "{url}: {err}");
            let message = err.to_string();
            assert!(!message.ends_with('.') && message.starts_with("issuer url"), "{message}");
        }
    }

    #[test]
    fn other_inputs_are_validated() {
        type Change = Box<dyn Fn(&mut SetupInput)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|i| i.audience = String::new()), "audience"),
            (Box::new(|i| i.model_ids.clear()), "no model ids"),
            (Box::new(|i| i.regions.clear()), "no regions"),
            (Box::new(|i| i.regions = vec!["US-EAST-1".to_owned()]), "region"),
            (Box::new(|i| i.regions = vec!["*".to_owned()]), "region"),
            (Box::new(|i| i.account_id = Some("12345".to_owned())), "account id"),
            (Box::new(|i| i.role_name = "a b".to_owned()), "role name"),
            (Box::new(|i| i.max_session_secs = 3599), "max session"),
            (Box::new(|i| i.max_session_secs = 43201), "max session"),
            (Box::new(|i| i.model_ids = vec!["anthropic.*".to_owned()]), "model id"),
            (Box::new(|i| i.model_ids = vec!["claude".to_owned()]), "model id"),
            (Box::new(|i| i.model_ids = vec!["eu.anthropic.x-v1:0".to_owned()]), "model id"),
            (
                Box::new(|i| i.model_ids = vec!["arn:aws:bedrock:us-east-1::foundation-model/a.b".to_owned()]),
                "model id",
            ),
        ];
        for (change, expected) in cases {
            let mut i = input("abc", SubjectScope::Team);
            change(&mut i);
            let message = generate(&i).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{message:?} should start with {expected:?}");
        }
        let mut i = input("abc", SubjectScope::Team);
        i.max_session_secs = 43200;
        assert!(generate(&i).is_ok());
    }

    fn statements(policy: &Value) -> &Vec<Value> {
        policy["Statement"].as_array().unwrap()
    }

    fn strings(value: &Value) -> Vec<&str> {
        value.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect()
    }

    #[test]
    fn every_statement_allows_only_the_two_invoke_actions() {
        let mut i = input("abc", SubjectScope::Team);
        i.model_ids = vec![
            "anthropic.claude-3-5-haiku-20241022-v1:0".to_owned(),
            "us.anthropic.claude-sonnet-4-20250514-v1:0".to_owned(),
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0".to_owned(),
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123".to_owned(),
        ];
        let policy = generate(&i).unwrap().permissions_policy;
        assert_eq!(policy["Version"], "2012-10-17");
        for s in statements(&policy) {
            assert_eq!(s["Effect"], "Allow");
            assert_eq!(strings(&s["Action"]), bedrock_iam::facts().actions);
            assert!(!strings(&s["Resource"]).contains(&"*"));
        }
    }

    #[test]
    fn foundation_model_is_allowed_in_each_region() {
        let mut i = input("abc", SubjectScope::Team);
        i.regions = vec!["us-east-1".to_owned(), "eu-west-1".to_owned()];
        let policy = generate(&i).unwrap().permissions_policy;
        assert_eq!(statements(&policy).len(), 1);
        assert_eq!(
            strings(&policy["Statement"][0]["Resource"]),
            [
                "arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
                "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
            ]
        );
    }

    #[test]
    fn geographic_profile_needs_profile_and_models_of_its_geography() {
        let mut i = input("abc", SubjectScope::Team);
        i.model_ids = vec!["us.anthropic.claude-sonnet-4-20250514-v1:0".to_owned()];
        i.regions = vec!["us-east-1".to_owned(), "us-west-2".to_owned(), "eu-west-1".to_owned()];
        let policy = generate(&i).unwrap().permissions_policy;
        let s = statements(&policy);
        assert_eq!(s.len(), 2);
        let profiles = [
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0",
            "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0",
        ];
        // The profile in each source region of its geography, never in eu-west-1.
        assert_eq!(strings(&s[0]["Resource"]), profiles);
        assert_eq!(
            strings(&s[1]["Resource"]),
            ["arn:aws:bedrock:us-*::foundation-model/anthropic.claude-sonnet-4-20250514-v1:0"]
        );
        assert_eq!(strings(&s[1]["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"]), profiles);
    }

    #[test]
    fn global_profile_needs_the_regionless_model_with_unspecified_region() {
        let mut i = input("abc", SubjectScope::Team);
        i.model_ids = vec!["global.anthropic.claude-sonnet-4-5-20250929-v1:0".to_owned()];
        let policy = generate(&i).unwrap().permissions_policy;
        let s = statements(&policy);
        assert_eq!(s.len(), 3);
        let profile =
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-sonnet-4-5-20250929-v1:0";
        assert_eq!(strings(&s[0]["Resource"]), [profile]);
        assert_eq!(
            strings(&s[1]["Resource"]),
            ["arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0"]
        );
        assert_eq!(
            strings(&s[2]["Resource"]),
            ["arn:aws:bedrock:::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0"]
        );
        assert_eq!(s[2]["Condition"]["StringEquals"]["aws:RequestedRegion"], "unspecified");
        assert_eq!(strings(&s[2]["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"]), [profile]);
    }

    #[test]
    fn application_profile_reaches_models_only_through_itself() {
        let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123";
        let mut i = input("abc", SubjectScope::Team);
        i.model_ids = vec![arn.to_owned()];
        let policy = generate(&i).unwrap().permissions_policy;
        let s = statements(&policy);
        assert_eq!(strings(&s[0]["Resource"]), [arn]);
        assert_eq!(strings(&s[1]["Resource"]), ["arn:aws:bedrock:*::foundation-model/*"]);
        assert_eq!(strings(&s[1]["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"]), [arn]);
    }

    #[test]
    fn an_application_profile_of_a_known_model_reaches_only_that_model() {
        let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123";
        let mut i = input("abc", SubjectScope::Team);
        i.model_ids = vec![arn.to_owned()];
        i.profile_models = BTreeMap::from([(arn.to_owned(), "anthropic.claude-sonnet-4-6".to_owned())]);
        let policy = generate(&i).unwrap().permissions_policy;
        let s = statements(&policy);
        assert_eq!(s.len(), 2);
        assert_eq!(strings(&s[0]["Resource"]), [arn]);
        assert_eq!(strings(&s[1]["Resource"]), ["arn:aws:bedrock:*::foundation-model/anthropic.claude-sonnet-4-6"]);
        assert_eq!(strings(&s[1]["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"]), [arn]);
    }

    #[test]
    fn the_models_come_from_the_scopes_routing() {
        let config = Config::from_toml(
            r#"
dev = true
[[teams]]
uid = "abc"
region = "eu-west-1"
role_arn = "arn:aws:iam::123456789012:role/byollm-abc"
[[teams.agents]]
name = "reviewer"
role_arn = "arn:aws:iam::123456789012:role/byollm-abc-reviewer"
[models.sonnet]
id = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
[models.opus]
id = "us.anthropic.claude-opus-4-1-20250805-v1:0"
[models.haiku]
id = "eu.anthropic.claude-haiku-4-5-20251001-v1:0"
[models.tuned]
id = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/t1"
family = "claude-sonnet-4-6"
[routing.teams.abc]
models = ["sonnet", "opus", "tuned"]
[routing.teams.abc.routes]
sonnet = [{ bedrock = { role = "arn:aws:iam::123456789012:role/elsewhere" } }, { bedrock = { region = "eu-central-1" } }]
[routing.teams.abc.agents.reviewer]
models = ["tuned"]
"#,
        )
        .unwrap();
        let mut team = input("abc", SubjectScope::Team);
        team.regions = vec!["eu-west-1".to_owned()];
        team.model_ids.clear();
        let mut agent = team.clone();
        agent.agent = Some(uid("reviewer"));

        let notes = models_from_routing(&config, &mut team).unwrap();
        // Haiku is not the team's; the route through another role is that role's to grant; Opus's
        // US profile cannot be called from the team's European regions.
        assert_eq!(
            team.model_ids,
            [
                "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/t1"
            ]
        );
        assert_eq!(team.regions, ["eu-west-1", "eu-central-1"]);
        assert!(notes.iter().any(|n| n.contains("role/elsewhere")), "{notes:?}");
        assert!(notes.iter().any(|n| n.starts_with("skipping model us.anthropic.claude-opus")), "{notes:?}");
        assert_eq!(
            team.profile_models.values().collect::<Vec<_>>(),
            [&crate::models::catalog().by_family("claude-sonnet-4-6").unwrap().base_id]
        );

        models_from_routing(&config, &mut agent).unwrap();
        assert_eq!(agent.model_ids, ["arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/t1"]);
        let policy = generate(&agent).unwrap().permissions_policy.to_string();
        assert!(!policy.contains("sonnet-4-5") && !policy.contains("foundation-model/*"), "{policy}");

        let mut nothing = input("zzz", SubjectScope::Team);
        nothing.model_ids.clear();
        let config = Config::from_toml("dev = true\n[routing.default]\nmodels = []\n").unwrap();
        let error = models_from_routing(&config, &mut nothing).unwrap_err();
        assert!(error.contains("no model on Bedrock"), "{error}");
    }

    #[test]
    fn missing_account_uses_the_placeholder() {
        let mut i = input("abc", SubjectScope::Team);
        i.account_id = None;
        i.model_ids = vec!["us.anthropic.claude-sonnet-4-20250514-v1:0".to_owned()];
        let out = generate(&i).unwrap();
        assert_eq!(
            out.trust_policy["Statement"][0]["Principal"]["Federated"],
            format!("arn:aws:iam::{ACCOUNT_PLACEHOLDER}:oidc-provider/issuer.example.com")
        );
        assert!(out.permissions_policy.to_string().contains(ACCOUNT_PLACEHOLDER));
        assert!(!out.tfvars.contains(ACCOUNT_PLACEHOLDER));
        assert!(!out.cfn_parameters.to_string().contains(ACCOUNT_PLACEHOLDER));
    }

    #[test]
    fn tfvars_and_cfn_parameters_carry_the_inputs() {
        let mut i = input("abc", SubjectScope::Principal(ActorType::User, uid("alice")));
        i.model_ids = vec![
            "anthropic.claude-3-5-haiku-20241022-v1:0".to_owned(),
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0".to_owned(),
        ];
        let out = generate(&i).unwrap();
        assert!(out.tfvars.contains("team_uid             = \"abc\"\n"), "{}", out.tfvars);
        assert!(out.tfvars.contains("subject_scope        = { actor_type = \"user\", principal_uid = \"alice\" }\n"));
        assert!(out.tfvars.contains(
            "model_ids            = [\"anthropic.claude-3-5-haiku-20241022-v1:0\", \"global.anthropic.claude-sonnet-4-5-20250929-v1:0\"]\n"
        ));
        assert!(out.tfvars.contains("max_session_duration = 3600\n"));
        let params: Vec<(&str, &str)> = out
            .cfn_parameters
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["ParameterKey"].as_str().unwrap(), p["ParameterValue"].as_str().unwrap()))
            .collect();
        assert!(params.contains(&("FoundationModelIds", "anthropic.claude-3-5-haiku-20241022-v1:0")));
        assert!(params.contains(&("InferenceProfileIds", "global.anthropic.claude-sonnet-4-5-20250929-v1:0")));
        assert!(params.contains(&("SubjectActorType", "user")));
        assert!(params.contains(&("SubjectPrincipalUid", "alice")));
    }
}
