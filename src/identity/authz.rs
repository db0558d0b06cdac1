//! Who may act for which run: the one decision every entry point makes through [`authorize`].
//!
//! Tokens (`POST /v1/tokens`), credentials (`/v1/credentials`, both shapes), chat, run eviction,
//! `byollm doctor` and `byollm token mint` all turn what the client sent (a [`RunRequest`]: team,
//! actor, principal, agent, run id, from headers or a body) into an [`AuthorizedRun`] here, or into
//! an [`AuthzError`]. Nothing else decides whether a caller may act for a principal or an agent;
//! a route that re-implemented part of this would be a bug waiting to diverge.
//!
//! The rules, in order:
//! 1. minting tokens is a permission of its own (`callers.mint_tokens`, off by default);
//! 2. every field is well-formed: team and principal are uids, the actor a known type, the agent a
//!    uid, the run id an identifier; a field that is present but empty or malformed is a 400, never
//!    taken as absent;
//! 3. the caller is bound to the principal ([`permits`]): its own team, one of its actor types and
//!    principals, an agent on its allow-list, or no agent only when `callers.allow_no_agent`;
//! 4. a named agent exists in the team (`[[teams.agents]]`): a typo never silently runs under the
//!    team's role. The run's role is then the agent's own, else the team's.
//!
//! This module reads the configuration only; it knows nothing of HTTP, STS or tokens.

use std::fmt;

use http::HeaderMap;

use crate::aws::RoleArn;
use crate::config::Config;
use crate::error::ApiError;
use crate::identity::auth::Caller;
use crate::principal::{ActorType, PrincipalError, ScopedPrincipal, Uid};

/// Header names a run uses to say who it acts for (chat and native routes).
pub const HEADER_TEAM: &str = "x-byollm-team";
pub const HEADER_ACTOR: &str = "x-byollm-actor";
pub const HEADER_PRINCIPAL: &str = "x-byollm-principal";
pub const HEADER_AGENT: &str = "x-byollm-agent";
pub const HEADER_RUN_ID: &str = "x-byollm-run-id";

/// Where a request's identity fields came from, so errors name what the client actually sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldSource {
    /// A JSON body or a query string: `team`, `actor`, `principal`, `agent`, `run_id`.
    #[default]
    Fields,
    /// `x-byollm-*` headers.
    Headers,
}

/// The run identity exactly as the client sent it; `None` only when the field was absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRequest {
    pub team: Option<String>,
    pub actor: Option<String>,
    pub principal: Option<String>,
    pub agent: Option<String>,
    pub run_id: Option<String>,
    pub source: FieldSource,
}

/// What the caller is asking to do for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Credentials (returned, or used to sign a call): chat, native routes, `/v1/credentials*`,
    /// the doctor.
    Run,
    /// A signed token handed to the caller (`POST /v1/tokens`, `byollm token mint`).
    Token,
}

/// A run the caller may act for, with what AWS needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedRun {
    pub principal: ScopedPrincipal,
    pub agent: Option<String>,
    pub run_id: Option<String>,
    /// The agent's own role, else the team's; `None` when the team configures none.
    pub role: Option<RoleArn>,
    /// Bedrock region: the team's, else `bedrock.region`.
    pub region: String,
    /// The team mints session tags and a source identity into its tokens.
    pub session_tags: bool,
}

/// Why a request may not act for the run it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthzError {
    /// A field is present but not well-formed.
    Invalid {
        param: String,
        code: &'static str,
        message: String,
    },
    /// Only one of actor and principal, or neither for a caller bound to more than one principal.
    MissingPrincipal {
        param: String,
        message: String,
    },
    TokensNotAllowed {
        caller: String,
    },
    OtherTeam {
        caller: String,
        team: Uid,
        requested: Uid,
    },
    Actor {
        caller: String,
        actor: ActorType,
    },
    Principal {
        caller: String,
        principal: Uid,
    },
    Agent {
        caller: String,
        agent: String,
    },
    AgentRequired {
        caller: String,
    },
    UnknownAgent {
        param: String,
        team: Uid,
        agent: String,
    },
}

impl fmt::Display for AuthzError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&ApiError::from(self.clone()).message)
    }
}

impl std::error::Error for AuthzError {}

impl From<AuthzError> for ApiError {
    fn from(error: AuthzError) -> ApiError {
        match error {
            AuthzError::Invalid { param, code, message } => ApiError::invalid_request(param, code, message),
            AuthzError::MissingPrincipal { param, message } => {
                ApiError::invalid_request(param, "missing_principal", message)
            }
            AuthzError::TokensNotAllowed { caller } => ApiError::forbidden(
                "token_minting_not_allowed",
                format!(
                    "caller {caller:?} may not have tokens signed for it; ask for credentials instead, or set callers.mint_tokens = true"
                ),
            ),
            AuthzError::OtherTeam { caller, team, requested } => ApiError::forbidden(
                "team_not_allowed",
                format!("caller {caller:?} acts for team {team:?} only; it cannot act for team {requested:?}"),
            ),
            AuthzError::Actor { caller, actor } => ApiError::forbidden(
                "actor_not_allowed",
                format!("caller {caller:?} may not act for {actor} principals; check callers.actors"),
            ),
            AuthzError::Principal { caller, principal } => ApiError::forbidden(
                "principal_not_allowed",
                format!("caller {caller:?} may not act for principal {principal:?}; check callers.principals"),
            ),
            AuthzError::Agent { caller, agent } => ApiError::forbidden(
                "agent_not_allowed",
                format!("caller {caller:?} may not act as agent {agent:?}; check callers.agents"),
            ),
            AuthzError::AgentRequired { caller } => ApiError::forbidden(
                "agent_required",
                format!(
                    "caller {caller:?} may not run without an agent: name one of its agents (callers.agents), or set callers.allow_no_agent = true"
                ),
            ),
            AuthzError::UnknownAgent { param, team, agent } => ApiError::invalid_request(
                param,
                "unknown_agent",
                format!(
                    "team {team:?} has no agent {agent:?}: configure it under [[teams.agents]] or leave the agent out"
                ),
            ),
        }
    }
}

impl FieldSource {
    /// The name the client used for `field` (`agent` or `x-byollm-agent`).
    fn name(self, field: &'static str) -> String {
        match self {
            FieldSource::Fields => field.to_owned(),
            FieldSource::Headers => match field {
                "team" => HEADER_TEAM,
                "actor" => HEADER_ACTOR,
                "principal" => HEADER_PRINCIPAL,
                "agent" => HEADER_AGENT,
                _ => HEADER_RUN_ID,
            }
            .to_owned(),
        }
    }
}

/// Run ids and agent names are identifiers: 1–128 characters of `[A-Za-z0-9._-]`. They land in the
/// customer's CloudTrail (session name, session tags, token claims), so no names or free text.
pub fn validate_run_id(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err("must be 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-' (it is recorded in the customer's CloudTrail)"
            .into())
    }
}

/// The one decision: may `caller` act, for `purpose`, for the run `request` names?
pub fn authorize(
    config: &Config,
    caller: &Caller,
    request: &RunRequest,
    purpose: Purpose,
) -> Result<AuthorizedRun, AuthzError> {
    if purpose == Purpose::Token && !caller.mint_tokens {
        return Err(AuthzError::TokensNotAllowed { caller: caller.name.clone() });
    }
    let source = request.source;
    let invalid = |field: &'static str, code: &'static str, message: String| AuthzError::Invalid {
        param: source.name(field),
        code,
        message: format!("{}: {message}", source.name(field)),
    };
    let uid = |field: &'static str, value: &str| {
        Uid::parse(value).map_err(|e: PrincipalError| invalid(field, "invalid_uid", e.to_string()))
    };
    let team = match &request.team {
        Some(team) => uid("team", team)?,
        None => caller.team.clone(),
    };
    let (actor, principal_uid) = match (&request.actor, &request.principal) {
        (Some(actor), Some(principal)) => {
            let actor = actor.parse::<ActorType>().map_err(|e| invalid("actor", "invalid_actor", e.to_string()))?;
            (actor, uid("principal", principal)?)
        }
        (None, None) => match (caller.actors.as_slice(), caller.principals.as_deref()) {
            ([actor], Some([principal])) => (*actor, principal.clone()),
            _ => {
                return Err(AuthzError::MissingPrincipal {
                    param: source.name("principal"),
                    message: format!(
                        "name the run's principal: {} (user or service_account) and {}",
                        source.name("actor"),
                        source.name("principal")
                    ),
                });
            }
        },
        (Some(_), None) | (None, Some(_)) => {
            return Err(AuthzError::MissingPrincipal {
                param: source.name(if request.actor.is_some() { "principal" } else { "actor" }),
                message: format!("send both {} and {}, or neither", source.name("actor"), source.name("principal")),
            });
        }
    };
    let agent = match &request.agent {
        Some(agent) => {
            Uid::parse(agent).map_err(|e| invalid("agent", "invalid_run_field", e.to_string()))?;
            Some(agent.clone())
        }
        None => None,
    };
    if let Some(run_id) = &request.run_id {
        validate_run_id(run_id).map_err(|message| invalid("run_id", "invalid_run_field", message))?;
    }
    let principal = ScopedPrincipal::new(team, actor, principal_uid);
    permits(caller, &principal, agent.as_deref())?;

    let team_config = config.team(&principal.team_uid);
    let role = match agent.as_deref() {
        Some(name) => {
            let configured = team_config.and_then(|t| t.agents.iter().find(|a| a.name == name));
            match configured {
                Some(agent) => Some(agent.role_arn.clone()),
                None => {
                    return Err(AuthzError::UnknownAgent {
                        param: source.name("agent"),
                        team: principal.team_uid.clone(),
                        agent: name.to_owned(),
                    });
                }
            }
        }
        None => team_config.and_then(|t| t.role_arn.clone()),
    };
    let region = team_config.and_then(|t| t.region.clone()).unwrap_or_else(|| config.bedrock.region.clone());
    let session_tags = team_config.is_some_and(|t| t.session_tags);
    Ok(AuthorizedRun { principal, agent, run_id: request.run_id.clone(), role, region, session_tags })
}

/// Is `caller` bound to `principal` acting as `agent` (or as no agent)? The binding part of
/// [`authorize`], also what decides which cached runs a caller may end.
pub fn permits(caller: &Caller, principal: &ScopedPrincipal, agent: Option<&str>) -> Result<(), AuthzError> {
    if principal.team_uid != caller.team {
        return Err(AuthzError::OtherTeam {
            caller: caller.name.clone(),
            team: caller.team.clone(),
            requested: principal.team_uid.clone(),
        });
    }
    if !caller.actors.contains(&principal.actor) {
        return Err(AuthzError::Actor { caller: caller.name.clone(), actor: principal.actor });
    }
    if let Some(allowed) = &caller.principals
        && !allowed.contains(&principal.principal_uid)
    {
        return Err(AuthzError::Principal { caller: caller.name.clone(), principal: principal.principal_uid.clone() });
    }
    permits_agent(caller, agent)
}

/// Is `caller` bound to acting as `agent` (or as no agent)? The agent part of [`permits`].
fn permits_agent(caller: &Caller, agent: Option<&str>) -> Result<(), AuthzError> {
    match (agent, &caller.agents) {
        (Some(agent), Some(allowed)) if !allowed.iter().any(|a| a == agent) => {
            Err(AuthzError::Agent { caller: caller.name.clone(), agent: agent.to_owned() })
        }
        (None, _) if !caller.allow_no_agent => Err(AuthzError::AgentRequired { caller: caller.name.clone() }),
        _ => Ok(()),
    }
}

/// Whose model lists `caller` may see (`GET /v1/models`, `/inference-profiles`), which name no
/// principal: the team and agent `request` names are checked as [`authorize`] checks them (well
/// formed, the caller's own team, an agent it may act as, no agent only when it may run without),
/// so a list never shows what another agent's or the team's policy allows. Returns the agent.
pub fn authorize_listing(caller: &Caller, request: &RunRequest) -> Result<Option<String>, AuthzError> {
    let source = request.source;
    let invalid = |field: &'static str, code: &'static str, message: String| AuthzError::Invalid {
        param: source.name(field),
        code,
        message: format!("{}: {message}", source.name(field)),
    };
    if let Some(team) = &request.team {
        let team = Uid::parse(team).map_err(|e| invalid("team", "invalid_uid", e.to_string()))?;
        if team != caller.team {
            return Err(AuthzError::OtherTeam {
                caller: caller.name.clone(),
                team: caller.team.clone(),
                requested: team,
            });
        }
    }
    if let Some(agent) = &request.agent {
        Uid::parse(agent).map_err(|e| invalid("agent", "invalid_run_field", e.to_string()))?;
    }
    permits_agent(caller, request.agent.as_deref())?;
    Ok(request.agent.clone())
}

/// The run identity a request carries in `x-byollm-*` headers, as sent: a header that is absent is
/// `None`; one that is present is taken as it is (an empty value then fails [`crate::identity::authz`]'s
/// checks with a 400, never counting as absent). A value that is not visible ASCII, or a header
/// sent twice, is refused here.
pub fn run_request_from_headers(headers: &HeaderMap) -> Result<RunRequest, ApiError> {
    let read = |name: &'static str| -> Result<Option<String>, ApiError> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else { return Ok(None) };
        if values.next().is_some() {
            return Err(ApiError::invalid_request(name, "duplicate_header", format!("send {name} once")));
        }
        let text = value
            .to_str()
            .map_err(|_| ApiError::invalid_request(name, "invalid_header", format!("{name} must be visible ASCII")))?;
        Ok(Some(text.trim().to_owned()))
    };
    Ok(RunRequest {
        team: read(HEADER_TEAM)?,
        actor: read(HEADER_ACTOR)?,
        principal: read(HEADER_PRINCIPAL)?,
        agent: read(HEADER_AGENT)?,
        run_id: read(HEADER_RUN_ID)?,
        source: FieldSource::Headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml(
            r#"
            dev = true
            [bedrock]
            region = "us-west-2"
            [[teams]]
            uid = "acme"
            role_arn = "arn:aws:iam::123456789012:role/byollm-acme"
            region = "eu-west-1"
            session_tags = true
            [[teams.agents]]
            name = "reviewer"
            role_arn = "arn:aws:iam::123456789012:role/byollm-acme-reviewer"
            [[teams.agents]]
            name = "deployer"
            role_arn = "arn:aws:iam::123456789012:role/byollm-acme-deployer"
            [[teams]]
            uid = "bare"
            "#,
        )
        .unwrap()
    }

    fn caller(agents: Option<&[&str]>, allow_no_agent: bool) -> Caller {
        Caller {
            name: "worker".into(),
            team: Uid::parse("acme").unwrap(),
            actors: vec![ActorType::ServiceAccount],
            principals: Some(vec![Uid::parse("svc-1").unwrap(), Uid::parse("svc-2").unwrap()]),
            agents: agents.map(|list| list.iter().map(|a| a.to_string()).collect()),
            allow_no_agent,
            mint_tokens: false,
        }
    }

    fn request(fields: &[(&str, &str)]) -> RunRequest {
        let mut request = RunRequest::default();
        for (name, value) in fields {
            let slot = match *name {
                "team" => &mut request.team,
                "actor" => &mut request.actor,
                "principal" => &mut request.principal,
                "agent" => &mut request.agent,
                _ => &mut request.run_id,
            };
            *slot = Some(value.to_string());
        }
        request
    }

    /// `check(caller, request fields, expected)`: `Ok(role name)` or `Err(error code)`.
    fn check(caller: &Caller, fields: &[(&str, &str)], purpose: Purpose, expected: Result<&str, &str>) {
        let got = authorize(&config(), caller, &request(fields), purpose)
            .map(|run| run.role.map(|r| r.role_name().to_owned()).unwrap_or_default())
            .map_err(|e| ApiError::from(e).code);
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "{fields:?}");
    }

    #[test]
    fn the_rules_in_one_table() {
        let svc = [("actor", "service_account"), ("principal", "svc-1")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut fields = svc.to_vec();
            fields.extend_from_slice(extra);
            fields
        };
        let restricted = caller(Some(&["reviewer"]), false);
        let open = caller(None, true);
        let run = Purpose::Run;
        // The restricted caller: its agent only; never another agent, never no agent.
        check(&restricted, &with(&[("agent", "reviewer")]), run, Ok("byollm-acme-reviewer"));
        check(&restricted, &with(&[("agent", "deployer")]), run, Err("agent_not_allowed"));
        check(&restricted, &with(&[("agent", "unlisted")]), run, Err("agent_not_allowed"));
        check(&restricted, &svc, run, Err("agent_required"));
        // Unrestricted: any configured agent, or the team's role; unknown agents are refused.
        check(&open, &with(&[("agent", "deployer")]), run, Ok("byollm-acme-deployer"));
        check(&open, &svc, run, Ok("byollm-acme"));
        check(&open, &with(&[("agent", "unlisted")]), run, Err("unknown_agent"));
        // Binding to team, actor and principal.
        check(&open, &with(&[("team", "other")]), run, Err("team_not_allowed"));
        check(&open, &[("actor", "user"), ("principal", "svc-1")], run, Err("actor_not_allowed"));
        check(&open, &[("actor", "service_account"), ("principal", "svc-3")], run, Err("principal_not_allowed"));
        // Present but empty or malformed is a 400, never "absent".
        check(&open, &with(&[("agent", "")]), run, Err("invalid_run_field"));
        check(&open, &with(&[("agent", "x y")]), run, Err("invalid_run_field"));
        check(&open, &with(&[("run_id", "")]), run, Err("invalid_run_field"));
        check(&open, &with(&[("run_id", "r/1")]), run, Err("invalid_run_field"));
        check(&open, &with(&[("team", "")]), run, Err("invalid_uid"));
        check(&open, &with(&[("team", "acme/x")]), run, Err("invalid_uid"));
        check(&open, &[("actor", "robot"), ("principal", "svc-1")], run, Err("invalid_actor"));
        check(&open, &[("actor", "service_account"), ("principal", "")], run, Err("invalid_uid"));
        check(&open, &[("actor", "service_account")], run, Err("missing_principal"));
        check(&open, &[], run, Err("missing_principal"));
        // Tokens are a permission of their own.
        check(&open, &svc, Purpose::Token, Err("token_minting_not_allowed"));
        let minter = Caller { mint_tokens: true, ..caller(Some(&["reviewer"]), false) };
        check(&minter, &with(&[("agent", "reviewer")]), Purpose::Token, Ok("byollm-acme-reviewer"));
        check(&minter, &with(&[("agent", "deployer")]), Purpose::Token, Err("agent_not_allowed"));
        check(&minter, &svc, Purpose::Token, Err("agent_required"));
    }

    #[test]
    fn the_run_carries_region_role_and_tags_of_its_team() {
        let open = caller(None, true);
        let fields = [("actor", "service_account"), ("principal", "svc-1"), ("run_id", "run-1")];
        let run = authorize(&config(), &open, &request(&fields), Purpose::Run).unwrap();
        assert_eq!(run.principal.to_string(), "scoped_principal:acme/service_account:svc-1");
        assert_eq!((run.region.as_str(), run.session_tags, run.run_id.as_deref()), ("eu-west-1", true, Some("run-1")));
        // A caller bound to one principal may leave it out.
        let single = Caller { principals: Some(vec![Uid::parse("svc-9").unwrap()]), ..caller(None, true) };
        let run = authorize(&config(), &single, &RunRequest::default(), Purpose::Run).unwrap();
        assert_eq!(run.principal.principal_uid.as_str(), "svc-9");
        // A team with no role: the run is authorized, its role is for the broker to miss.
        let bare = Caller { team: Uid::parse("bare").unwrap(), ..caller(None, true) };
        let fields = [("actor", "service_account"), ("principal", "svc-1")];
        let run = authorize(&config(), &bare, &request(&fields), Purpose::Run).unwrap();
        assert_eq!((run.role, run.region.as_str(), run.session_tags), (None, "us-west-2", false));
    }

    #[test]
    fn errors_name_the_header_the_client_sent() {
        let open = caller(None, true);
        let mut from_headers = request(&[("actor", "service_account"), ("principal", "svc-1"), ("agent", "")]);
        from_headers.source = FieldSource::Headers;
        let error = ApiError::from(authorize(&config(), &open, &from_headers, Purpose::Run).unwrap_err());
        assert_eq!((error.status.as_u16(), error.param.as_deref()), (400, Some(HEADER_AGENT)));
        assert!(error.message.starts_with("x-byollm-agent: "), "{}", error.message);
    }

    #[test]
    fn the_operator_is_bound_to_its_team_only() {
        let operator = Caller::operator(Uid::parse("acme").unwrap());
        let fields = [("actor", "user"), ("principal", "anyone"), ("agent", "deployer")];
        assert!(authorize(&config(), &operator, &request(&fields), Purpose::Token).is_ok());
        let mut other = request(&fields);
        other.team = Some("other".into());
        assert!(matches!(authorize(&config(), &operator, &other, Purpose::Token), Err(AuthzError::OtherTeam { .. })));
    }
}
