//! Routing: which upstreams serve a request for a public model, in which order, and what happens
//! when one fails.
//!
//! Owns the routing policy (`[routing]` in the config, read by [`policy`]): per team, with per-agent
//! overrides and defaults for every team, the models a scope may use and, per model, an ordered
//! list of routes (Bedrock with an optional profile, region and role; the direct Anthropic API; a
//! named OpenAI-compatible endpoint), and the provider-only switch that keeps Bedrock routes only.
//! The same layers say whether byollm places prompt-cache breakpoints for chat-completions
//! clients ([`RoutingPolicy::prompt_cache`]: `prompt_cache`, `prompt_cache_ttl`, per layer and per
//! model). [`RoutingPolicy::resolve`] is the one function every surface (chat completions, Messages API,
//! native routes) calls to turn (run, model) into routes, through [`Routing::start_on`], which also
//! sets aside the routes a surface cannot serve ([`Surface`]). [`failover`] owns which failures
//! move a request on to the next route and the per-route skip state that keeps a failing route
//! from being hammered.
//!
//! Must never: do I/O on a request's behalf, know HTTP or axum, or see prompt text. Depends on
//! `config` (models, teams, agents), `secret`, `principal` and the egress guard's policy type.

pub mod failover;
pub mod policy;
pub mod reload;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::StatusCode;

use crate::aws::RoleArn;
use crate::error::{ApiError, ErrorKind};

pub use failover::{Attempt, AttemptOutcome, FailoverSettings, FailureClass, HealthKey, RouteHealth};
pub use policy::{CacheSettings, Endpoint, HttpUpstream, Layer, Mode, PromptCache, RoutingPolicy};

/// A Bedrock route: `InvokeModel` on this id, signed with the run's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedrockRoute {
    /// The model id or inference profile (the `[models]` id unless the route names a profile).
    pub model_id: String,
    /// Overrides the team's region.
    pub region: Option<String>,
    /// Overrides the team's (or agent's) role.
    pub role: Option<RoleArn>,
}

/// The direct Anthropic API, with this model id in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnthropicRoute {
    pub model: String,
}

/// A named OpenAI-compatible endpoint, with the request's model renamed to `model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiRoute {
    pub endpoint: String,
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    Bedrock(BedrockRoute),
    Anthropic(AnthropicRoute),
    OpenAi(OpenAiRoute),
}

/// The API a request came in through, as far as routing cares: which kinds of route can serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// OpenAI chat completions: every kind of route.
    Chat,
    /// The Anthropic Messages API: Bedrock and the Anthropic API. An OpenAI-compatible endpoint
    /// cannot serve it faithfully (thinking blocks and their signatures, cache breakpoints,
    /// citations, server tools and the event sequence have no OpenAI equivalent), so such a route
    /// is set aside, with the reason in the attempts.
    Messages,
    /// Bedrock's own operations: the native routes (Bedrock's bytes relayed unchanged) and token
    /// counting (Bedrock's `CountTokens`). Bedrock routes only.
    BedrockOnly,
}

impl Surface {
    /// Why a route to `upstream` cannot serve this surface; `None` when it can.
    pub fn refuses(self, upstream: &Upstream) -> Option<&'static str> {
        match (self, upstream) {
            (Surface::Chat, _) | (_, Upstream::Bedrock(_)) | (Surface::Messages, Upstream::Anthropic(_)) => None,
            (Surface::Messages, Upstream::OpenAi(_)) => {
                Some("the Messages API has no faithful conversion to an OpenAI-compatible endpoint")
            }
            (Surface::BedrockOnly, _) => {
                Some("this API relays Bedrock operations and is served by Bedrock routes only")
            }
        }
    }
}

impl Upstream {
    /// `bedrock`, `anthropic` or `openai:<endpoint>`.
    pub fn kind_label(&self) -> String {
        match self {
            Upstream::Bedrock(_) => "bedrock".into(),
            Upstream::Anthropic(_) => "anthropic".into(),
            Upstream::OpenAi(route) => format!("openai:{}", route.endpoint),
        }
    }

    /// The model id the upstream is asked for.
    pub fn upstream_model(&self) -> &str {
        match self {
            Upstream::Bedrock(route) => &route.model_id,
            Upstream::Anthropic(route) => &route.model,
            Upstream::OpenAi(route) => &route.model,
        }
    }

    pub fn is_bedrock(&self) -> bool {
        matches!(self, Upstream::Bedrock(_))
    }
}

/// One way to serve a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Unique within its list; bounded by the configuration (it becomes a header value and a
    /// metric label): `bedrock`, `anthropic`, `openai:<endpoint>`, with `#2`, `#3` for repeats.
    pub label: String,
    pub upstream: Upstream,
}

/// Whose policy applies: the run's team and agent. `team: None` is `byollm local` (the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteScope<'a> {
    pub team: Option<&'a str>,
    pub agent: Option<&'a str>,
}

/// The routes for one request, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub model: String,
    pub routes: Vec<Route>,
    /// The team is provider-only (non-Bedrock routes were dropped).
    pub provider_only: bool,
    /// How many routes provider-only dropped.
    pub dropped: usize,
}

/// Why a model cannot be served to a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    UnknownModel {
        model: String,
    },
    NotAllowed {
        model: String,
        team: Option<String>,
        agent: Option<String>,
    },
    NoRoute {
        model: String,
    },
    /// The model has routes, but none of a kind this surface can use.
    NotOnSurface {
        model: String,
        surface: Surface,
    },
}

impl From<RouteError> for ApiError {
    fn from(error: RouteError) -> ApiError {
        match error {
            RouteError::UnknownModel { model } => ApiError::not_found(
                "model_not_found",
                format!("model {model:?} is not served here; GET /v1/models lists the models you may use"),
            )
            .with_param("model"),
            RouteError::NotAllowed { model, team, agent } => {
                let who = match (team, agent) {
                    (Some(team), Some(agent)) => format!("agent {agent:?} of team {team:?}"),
                    (Some(team), None) => format!("team {team:?}"),
                    _ => "this gateway".into(),
                };
                ApiError::forbidden(
                    "model_not_allowed",
                    format!(
                        "{who} may not use model {model:?}: the routing policy does not list it (ask the team's admin)"
                    ),
                )
                .with_param("model")
            }
            RouteError::NoRoute { model } => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorKind::Permission,
                "no_route",
                format!("model {model:?} has no Bedrock route and the team is provider-only"),
            )
            .with_param("model"),
            RouteError::NotOnSurface { model, surface: Surface::BedrockOnly } => ApiError::forbidden(
                "no_bedrock_route",
                format!(
                    "the routing policy serves model {model:?} without Bedrock, and this API serves through Bedrock only: use /v1/chat/completions"
                ),
            )
            .with_param("model"),
            RouteError::NotOnSurface { model, .. } => ApiError::forbidden(
                "no_route_for_api",
                format!(
                    "the routing policy serves model {model:?} only through OpenAI-compatible endpoints, which the Messages API cannot use: use /v1/chat/completions"
                ),
            )
            .with_param("model"),
        }
    }
}

impl RoutingPolicy {
    fn layers<'a>(&'a self, scope: RouteScope<'_>) -> [Option<&'a Layer>; 3] {
        let team = scope.team.and_then(|t| self.teams.get(t));
        let agent = team.and_then(|t| scope.agent.and_then(|a| t.agents.get(a)));
        [agent, team.map(|t| &t.layer), Some(&self.default)]
    }

    /// The models `scope` may use and has a route for, in name order.
    pub fn allowed_models(&self, scope: RouteScope<'_>) -> Vec<String> {
        self.allowed_models_on(scope, Surface::Chat)
    }

    /// The models `scope` may use through `surface` (a route of a kind the surface can use), in
    /// name order: what `GET /v1/models` lists, in either shape.
    pub fn allowed_models_on(&self, scope: RouteScope<'_>, surface: Surface) -> Vec<String> {
        self.known_models()
            .filter(|model| {
                self.resolve(scope, model)
                    .is_ok_and(|resolution| resolution.routes.iter().any(|r| surface.refuses(&r.upstream).is_none()))
            })
            .map(str::to_owned)
            .collect()
    }

    /// Every Bedrock route `scope` may use, with the public model it serves, in model-name then
    /// route order: all that credentials exported for the scope may need to reach.
    pub fn bedrock_routes(&self, scope: RouteScope<'_>) -> Vec<(&str, BedrockRoute)> {
        let mut out = Vec::new();
        for model in self.known_models() {
            let Ok(resolution) = self.resolve(scope, model) else { continue };
            for route in resolution.routes {
                if let Upstream::Bedrock(bedrock) = route.upstream {
                    out.push((model, bedrock));
                }
            }
        }
        out
    }

    fn is_known(&self, model: &str) -> bool {
        self.bedrock_models.contains_key(model) || self.endpoint_models.contains_key(model)
    }

    /// The ordered routes `scope` may use for `model`: the agent's routes for it, else the team's,
    /// else the defaults', else the built-in one (the `[models]` Bedrock id, or the endpoint that
    /// serves the model). A provider-only team keeps only Bedrock routes.
    pub fn resolve(&self, scope: RouteScope<'_>, model: &str) -> Result<Resolution, RouteError> {
        if !self.is_known(model) {
            return Err(RouteError::UnknownModel { model: model.to_owned() });
        }
        let layers = self.layers(scope);
        let allowed = layers.iter().flatten().all(|layer| layer.models.as_ref().is_none_or(|set| set.contains(model)));
        if !allowed {
            return Err(RouteError::NotAllowed {
                model: model.to_owned(),
                team: scope.team.map(str::to_owned),
                agent: scope.agent.map(str::to_owned),
            });
        }
        let routes = layers
            .iter()
            .flatten()
            .find_map(|layer| layer.routes.get(model).cloned())
            .unwrap_or_else(|| self.builtin_routes(model));
        let provider_only = layers.iter().flatten().find_map(|layer| layer.provider_only).unwrap_or(false);
        let total = routes.len();
        let routes: Vec<Route> =
            if provider_only { routes.into_iter().filter(|r| r.upstream.is_bedrock()).collect() } else { routes };
        if routes.is_empty() {
            return Err(RouteError::NoRoute { model: model.to_owned() });
        }
        let dropped = total - routes.len();
        Ok(Resolution { model: model.to_owned(), routes, provider_only, dropped })
    }

    /// How long the prompt-cache breakpoints byollm places on `scope`'s requests for `model` last;
    /// `None`: it places none (`prompt_cache = "off"`). Each setting comes from the first of: the
    /// agent's for the model, the agent's own, the team's for the model, the team's own, the
    /// defaults' for the model, the defaults' own, the built-in default
    /// ([`policy::DEFAULT_PROMPT_CACHE`], [`policy::DEFAULT_PROMPT_CACHE_TTL`]).
    pub fn prompt_cache(&self, scope: RouteScope<'_>, model: &str) -> Option<crate::models::CacheTtl> {
        let settings: Vec<CacheSettings> = self
            .layers(scope)
            .into_iter()
            .flatten()
            .flat_map(|layer| [layer.model_cache.get(model).copied().unwrap_or_default(), layer.cache])
            .collect();
        let mode = settings.iter().find_map(|s| s.mode).unwrap_or(policy::DEFAULT_PROMPT_CACHE);
        let ttl = settings.iter().find_map(|s| s.ttl).unwrap_or(policy::DEFAULT_PROMPT_CACHE_TTL);
        (mode == PromptCache::Auto).then_some(ttl)
    }

    fn builtin_routes(&self, model: &str) -> Vec<Route> {
        let upstream = match (self.bedrock_models.get(model), self.endpoint_models.get(model)) {
            (Some(id), _) => Upstream::Bedrock(BedrockRoute { model_id: id.clone(), region: None, role: None }),
            (None, Some(endpoint)) => {
                Upstream::OpenAi(OpenAiRoute { endpoint: endpoint.clone(), model: model.to_owned() })
            }
            (None, None) => return Vec::new(),
        };
        vec![Route { label: upstream.kind_label(), upstream }]
    }
}

/// The policy in force and the per-route failure state, shared by every request. The policy is
/// swapped whole on reload; requests in flight keep the one they started with.
pub struct Routing {
    policy: ArcSwap<RoutingPolicy>,
    pub health: RouteHealth,
}

impl Routing {
    pub fn new(policy: RoutingPolicy) -> Routing {
        let health = RouteHealth::new(policy.failover);
        Routing { policy: ArcSwap::from_pointee(policy), health }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<RoutingPolicy> {
        self.policy.load_full()
    }

    /// Put a new policy in force; the failure state is kept for routes that still exist.
    pub fn replace(&self, policy: RoutingPolicy) {
        self.health.set_settings(policy.failover);
        self.policy.store(Arc::new(policy));
    }
}

impl Routing {
    /// Start serving `model` for `scope`: resolve its routes ([`RoutingPolicy::resolve`]) and
    /// order them by their recent failures. Every surface drives the answer through the returned
    /// [`Failover`]:
    ///
    /// ```text
    /// let mut failover = routing.start(scope, model)?;
    /// while let Some(route) = failover.next_route() {
    ///     match call(&route).await {               // up to the first byte of an answer
    ///         Ok(answer) => { failover.served(&route); return relay(answer) }
    ///         Err((class, error)) => if let Some(stop) = failover.failed(&route, class, error) { return Err(stop) }
    ///     }
    /// }
    /// Err(failover.exhausted())
    /// ```
    pub fn start(&self, scope: RouteScope<'_>, model: &str) -> Result<Failover<'_>, RouteError> {
        self.start_on(scope, model, Surface::Chat)
    }

    /// [`Routing::start`] for a request that came in through `surface`: routes of a kind the
    /// surface cannot use are set aside (listed in the attempts with the reason, never tried);
    /// when no route is left, [`RouteError::NotOnSurface`].
    pub fn start_on(&self, scope: RouteScope<'_>, model: &str, surface: Surface) -> Result<Failover<'_>, RouteError> {
        let policy = self.policy();
        let resolution = policy.resolve(scope, model)?;
        let (usable, unsupported): (Vec<Route>, Vec<Route>) =
            resolution.routes.into_iter().partition(|route| surface.refuses(&route.upstream).is_none());
        if usable.is_empty() {
            return Err(RouteError::NotOnSurface { model: model.to_owned(), surface });
        }
        let unsupported = unsupported
            .into_iter()
            .map(|route| {
                let reason = surface.refuses(&route.upstream).unwrap_or_default();
                (route, reason)
            })
            .collect();
        let plan = self.health.plan(scope, model, usable, Instant::now());
        Ok(Failover {
            health: &self.health,
            team: scope.team.map(str::to_owned),
            agent: scope.agent.map(str::to_owned),
            model: resolution.model,
            pending: plan.routes.into(),
            skipped: plan.skipped,
            unsupported,
            attempts: Vec::new(),
            provider_only_note: resolution.provider_only && resolution.dropped > 0,
            policy,
        })
    }
}

/// One request's way through its routes: which to try next, what each attempt gave, and the
/// error when none served. Failures are recorded in the per-route health as they happen.
pub struct Failover<'a> {
    health: &'a RouteHealth,
    team: Option<String>,
    agent: Option<String>,
    model: String,
    pending: VecDeque<Route>,
    skipped: Vec<(Route, Duration)>,
    /// Routes of a kind the surface cannot use, and why.
    unsupported: Vec<(Route, &'static str)>,
    attempts: Vec<Attempt>,
    provider_only_note: bool,
    /// The policy the request started with (endpoints and keys are read from it).
    pub policy: Arc<RoutingPolicy>,
}

impl Failover<'_> {
    fn key(&self, route: &Route) -> HealthKey {
        HealthKey::new(
            RouteScope { team: self.team.as_deref(), agent: self.agent.as_deref() },
            &self.model,
            &route.label,
        )
    }

    /// The next route to try.
    pub fn next_route(&mut self) -> Option<Route> {
        self.pending.pop_front()
    }

    /// Sets aside the routes `refuse` turns down, listed in the attempts with `reason` like routes
    /// the surface cannot use. False when no route is left to try.
    pub fn set_aside(&mut self, refuse: impl Fn(&Route) -> bool, reason: &'static str) -> bool {
        let (refused, kept): (VecDeque<Route>, VecDeque<Route>) =
            std::mem::take(&mut self.pending).into_iter().partition(|route| refuse(route));
        self.pending = kept;
        self.unsupported.extend(refused.into_iter().map(|route| (route, reason)));
        let (refused, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.skipped).into_iter().partition(|(route, _)| refuse(route));
        self.skipped = kept;
        self.unsupported.extend(refused.into_iter().map(|(route, _)| (route, reason)));
        !self.pending.is_empty() || !self.skipped.is_empty()
    }

    /// The routes still to try, in order.
    pub fn pending(&self) -> impl Iterator<Item = &Route> {
        self.pending.iter()
    }

    /// The route answered (its first byte is about to go to the client): no more failover.
    /// Routes left out for their recent failures are listed after it.
    pub fn served(&mut self, route: &Route) {
        self.health.record_now(self.key(route), None);
        self.attempts.push(Attempt {
            route: route.label.clone(),
            upstream_model: route.upstream.upstream_model().to_owned(),
            outcome: AttemptOutcome::Served,
        });
        self.list_skipped();
    }

    /// Routes not tried (in a skip period, or of a kind the surface cannot use) go into the
    /// attempts after the tried ones.
    fn list_skipped(&mut self) {
        for (route, remaining) in std::mem::take(&mut self.skipped) {
            self.attempts.push(Attempt {
                route: route.label.clone(),
                upstream_model: route.upstream.upstream_model().to_owned(),
                outcome: AttemptOutcome::Skipped { remaining },
            });
        }
        for (route, reason) in std::mem::take(&mut self.unsupported) {
            self.attempts.push(Attempt {
                route: route.label.clone(),
                upstream_model: route.upstream.upstream_model().to_owned(),
                outcome: AttemptOutcome::Unsupported { reason },
            });
        }
    }

    /// The route failed before answering. Returns the error to send when this failure ends the
    /// request (the request itself is at fault); `None` to go on with the next route.
    pub fn failed(&mut self, route: &Route, class: FailureClass, error: ApiError) -> Option<ApiError> {
        self.health.record_now(self.key(route), Some(class));
        tracing::info!(route = %route.label, class = class.as_str(), code = error.code, "route failed");
        let stop = (!class.fails_over()).then(|| error.clone());
        self.attempts.push(Attempt {
            route: route.label.clone(),
            upstream_model: route.upstream.upstream_model().to_owned(),
            outcome: AttemptOutcome::Failed { class, error },
        });
        stop
    }

    /// Every route failed or was skipped: the one error listing them.
    pub fn exhausted(&mut self) -> ApiError {
        self.list_skipped();
        failover::all_failed(&self.model, &self.attempts, self.provider_only_note)
    }

    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    pub fn model(&self) -> &str {
        &self.model
    }
}

#[cfg(test)]
mod tests;
