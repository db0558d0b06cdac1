//! Failover: which upstream failures move a request on to the next route ([`FailureClass`], from
//! the data file `failures.toml`), the per-route skip state that keeps a failing route from being
//! tried by every request ([`RouteHealth`]), and the one error listing every attempt when all fail.
//!
//! Failover happens only before the first byte of an answer went to the client; the caller owns
//! that rule (it knows when it started answering). A request-caused failure is never retried.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{Route, RouteScope};
use crate::error::{ApiError, ErrorKind};
use crate::upstream::BedrockFailure;
use crate::upstream::anthropic::AnthropicFailure;
use crate::upstream::direct::DirectError;
use crate::upstream::openai_compat::OpenAiFailure;

/// Why an attempt on a route failed, as far as failover cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The route's credentials could not be had or were refused (role assumption, a bad key).
    Credentials,
    AccessDenied,
    /// The model is not enabled, not found or not ready on this upstream.
    ModelUnavailable,
    Throttled,
    Quota,
    /// The upstream failed (5xx, overloaded, model error).
    Upstream,
    Timeout,
    /// No connection could be made.
    Unreachable,
    /// The egress guard refused the address, a redirect came back, or the answer was too large.
    Refused,
    /// The key the request brought for this route is missing or was refused: another route may
    /// serve, but the route itself is not at fault (not counted towards skipping it).
    ClientKey,
    /// The request itself is at fault; another route would refuse it too.
    Request,
    /// AWS STS did not answer for the route's role (unavailable or unreachable, after the broker's
    /// retries): another route (another region's STS) may serve, but neither the route nor its
    /// role is at fault (not counted towards skipping it); when no route serves for this reason
    /// alone, the answer is a 503 to retry, not a 502.
    StsUnavailable,
    /// The gateway itself has no room (the answer budget, `server.max_answer_bytes_in_flight`):
    /// another route's answer would need the same room, so the request ends with a 503 and
    /// `Retry-After` instead of calling (and being billed by) every other route, and the route is
    /// not at fault.
    Busy,
}

impl FailureClass {
    /// Does this failure move the request on to the next route?
    pub fn fails_over(self) -> bool {
        !matches!(self, FailureClass::Request | FailureClass::Busy)
    }

    /// Does this failure count against the route's health (towards skipping it)?
    pub fn counts_against_route(self) -> bool {
        !matches!(
            self,
            FailureClass::Request | FailureClass::ClientKey | FailureClass::StsUnavailable | FailureClass::Busy
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Credentials => "credentials",
            FailureClass::AccessDenied => "access_denied",
            FailureClass::ModelUnavailable => "model_unavailable",
            FailureClass::Throttled => "throttled",
            FailureClass::Quota => "quota",
            FailureClass::Upstream => "upstream",
            FailureClass::Timeout => "timeout",
            FailureClass::Unreachable => "unreachable",
            FailureClass::Refused => "refused",
            FailureClass::ClientKey => "client_key",
            FailureClass::StsUnavailable => "sts_unavailable",
            FailureClass::Request => "request",
            FailureClass::Busy => "busy",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailureTable {
    bedrock: BTreeMap<String, FailureClass>,
    anthropic: BTreeMap<String, FailureClass>,
    openai_status: BTreeMap<u16, FailureClass>,
}

static FAILURES: LazyLock<FailureTable> = LazyLock::new(|| {
    let mut table: FailureTable = match toml::from_str(include_str!("failures.toml")) {
        Ok(table) => table,
        // Compiled-in data the unit tests parse; should it ever break, statuses still class.
        Err(error) => {
            tracing::error!(%error, "src/routing/failures.toml is invalid; classing upstream failures by status only");
            FailureTable { bedrock: BTreeMap::new(), anthropic: BTreeMap::new(), openai_status: BTreeMap::new() }
        }
    };
    table.bedrock = table.bedrock.into_iter().map(|(code, class)| (code.to_ascii_lowercase(), class)).collect();
    table
});

/// The class of an HTTP status alone, for codes the table does not know.
pub fn by_status(status: u16) -> FailureClass {
    match status {
        401 => FailureClass::Credentials,
        403 => FailureClass::AccessDenied,
        404 => FailureClass::ModelUnavailable,
        408 | 504 => FailureClass::Timeout,
        429 => FailureClass::Throttled,
        500..=599 => FailureClass::Upstream,
        _ => FailureClass::Request,
    }
}

/// A Bedrock exception (`ThrottlingException`, `throttlingException`, or namespaced).
pub fn classify_bedrock(code: &str, status: u16) -> FailureClass {
    let name = code.rsplit(['#', ':']).next().unwrap_or(code).to_ascii_lowercase();
    FAILURES.bedrock.get(&name).copied().unwrap_or_else(|| by_status(status))
}

/// An Anthropic API error by its `error.type`.
pub fn classify_anthropic(error_type: &str, status: u16) -> FailureClass {
    FAILURES.anthropic.get(error_type).copied().unwrap_or_else(|| by_status(status))
}

/// An OpenAI-compatible server's error, by status.
pub fn classify_openai(status: u16) -> FailureClass {
    FAILURES.openai_status.get(&status).copied().unwrap_or_else(|| by_status(status))
}

/// A Bedrock failure (an exception, or a transport failure of the signed client); `status` is
/// what the failure maps to for the client, used when the code is unknown.
pub fn class_of_bedrock(failure: &BedrockFailure, status: u16) -> FailureClass {
    classify_bedrock(&failure.code, status)
}

/// A failure of the guarded client.
pub fn class_of_direct(error: &DirectError) -> FailureClass {
    match error {
        DirectError::Refused(_) | DirectError::Redirect(_) | DirectError::TooLarge => FailureClass::Refused,
        // The gateway's own limit on lookups: another route may serve now.
        DirectError::LookupsBusy { .. } => FailureClass::Throttled,
        DirectError::Unreachable => FailureClass::Unreachable,
        DirectError::Timeout => FailureClass::Timeout,
        DirectError::Cut | DirectError::Internal => FailureClass::Upstream,
        DirectError::Busy => FailureClass::Busy,
    }
}

pub fn class_of_anthropic(failure: &AnthropicFailure) -> FailureClass {
    match failure {
        AnthropicFailure::Body(_) => FailureClass::Request,
        AnthropicFailure::Transport(error) => class_of_direct(error),
        AnthropicFailure::Api { status, error_type, .. } => classify_anthropic(error_type, *status),
    }
}

pub fn class_of_openai(failure: &OpenAiFailure) -> FailureClass {
    match failure {
        OpenAiFailure::Body(_) | OpenAiFailure::Fields { .. } => FailureClass::Request,
        OpenAiFailure::Transport(error) => class_of_direct(error),
        OpenAiFailure::RequestUrlRefused(_) => FailureClass::Request,
        OpenAiFailure::Api { status, .. } => classify_openai(*status),
    }
}

/// How skipping works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverSettings {
    /// Consecutive failing-over failures before a route is skipped.
    pub skip_after: u32,
    /// First skip period; doubles with each further failure, up to `skip_max`. Each period is
    /// jittered to between half and all of it, so replicas and teams do not come back together.
    pub skip_base: Duration,
    pub skip_max: Duration,
    /// Most (scope, model, route) entries kept.
    pub max_tracked: usize,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings {
            skip_after: 3,
            skip_base: Duration::from_secs(30),
            skip_max: Duration::from_secs(300),
            max_tracked: 4096,
        }
    }
}

/// How long a route that failed `failures` times in a row is skipped; `unit` in `[0, 1)` is the
/// jitter draw.
pub fn skip_period(settings: &FailoverSettings, failures: u32, unit: f64) -> Duration {
    if failures < settings.skip_after {
        return Duration::ZERO;
    }
    let doublings = (failures - settings.skip_after).min(20);
    let full = settings.skip_base.saturating_mul(1 << doublings).min(settings.skip_max);
    let unit = unit.clamp(0.0, 1.0);
    full.mul_f64(0.5 + unit / 2.0)
}

/// Which route of which scope: health is kept per team, agent, model and route, because a Bedrock
/// route failing in one team's account says nothing about another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthKey {
    pub team: Option<String>,
    pub agent: Option<String>,
    pub model: String,
    pub route: String,
}

impl HealthKey {
    pub fn new(scope: RouteScope<'_>, model: &str, route: &str) -> HealthKey {
        HealthKey {
            team: scope.team.map(str::to_owned),
            agent: scope.agent.map(str::to_owned),
            model: model.to_owned(),
            route: route.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Health {
    failures: u32,
    skip_until: Option<Instant>,
}

/// Routes to try, and the ones left out for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub routes: Vec<Route>,
    /// Skipped routes and how long they stay skipped.
    pub skipped: Vec<(Route, Duration)>,
}

/// Per-route failure state, bounded by [`FailoverSettings::max_tracked`].
pub struct RouteHealth {
    settings: Mutex<FailoverSettings>,
    entries: Mutex<HashMap<HealthKey, Health>>,
}

impl RouteHealth {
    pub fn new(settings: FailoverSettings) -> RouteHealth {
        RouteHealth { settings: Mutex::new(settings), entries: Mutex::new(HashMap::default()) }
    }

    fn settings(&self) -> FailoverSettings {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_settings(&self, settings: FailoverSettings) {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    /// Order `routes` for one request: routes in a skip period are left out while another route
    /// remains; when every route is skipped, the one whose period ends first is still tried, so a
    /// request always gets a real answer and never costs more than one upstream call.
    pub fn plan(&self, scope: RouteScope<'_>, model: &str, routes: Vec<Route>, now: Instant) -> Plan {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut plan = Plan { routes: Vec::with_capacity(routes.len()), skipped: Vec::new() };
        for route in routes {
            let until = entries.get(&HealthKey::new(scope, model, &route.label)).and_then(|h| h.skip_until);
            match until {
                Some(until) if until > now => plan.skipped.push((route, until - now)),
                _ => plan.routes.push(route),
            }
        }
        if plan.routes.is_empty()
            && let Some(index) = plan.skipped.iter().enumerate().min_by_key(|(_, (_, left))| *left).map(|(i, _)| i)
        {
            let (route, _) = plan.skipped.remove(index);
            plan.routes.push(route);
        }
        plan
    }

    /// Record the outcome of an attempt: `None` served, `Some(class)` failed. `unit` is the jitter
    /// draw in `[0, 1)`.
    pub fn record(&self, key: HealthKey, failure: Option<FailureClass>, now: Instant, unit: f64) {
        let settings = self.settings();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(class) = failure else {
            entries.remove(&key);
            return;
        };
        if !class.counts_against_route() {
            return;
        }
        if !entries.contains_key(&key) && entries.len() >= settings.max_tracked {
            entries.retain(|_, health| health.skip_until.is_some_and(|until| until > now));
            if entries.len() >= settings.max_tracked {
                tracing::warn!(tracked = entries.len(), "route failure state is full; not tracking one more route");
                return;
            }
        }
        let health = entries.entry(key).or_insert(Health { failures: 0, skip_until: None });
        health.failures = health.failures.saturating_add(1);
        let period = skip_period(&settings, health.failures, unit);
        if !period.is_zero() {
            health.skip_until = Some(now + period);
        }
    }

    /// Record with a fresh random jitter draw.
    pub fn record_now(&self, key: HealthKey, failure: Option<FailureClass>) {
        self.record(key, failure, Instant::now(), jitter_unit());
    }

    pub fn tracked(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A uniform draw in `[0, 1)`.
pub fn jitter_unit() -> f64 {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 4];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

/// What became of one route for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Served,
    Failed {
        class: FailureClass,
        error: ApiError,
    },
    /// Not tried: the route is in a skip period for this long.
    Skipped {
        remaining: Duration,
    },
    /// Not tried: the surface the request came in through cannot use a route of this kind.
    Unsupported {
        reason: &'static str,
    },
}

impl AttemptOutcome {
    /// For the audit line: `served`, `skipped`, `unsupported` or the failure class; the status and
    /// error code of a failure.
    pub fn summary(&self) -> (&'static str, Option<u16>, Option<&'static str>) {
        match self {
            AttemptOutcome::Served => ("served", Some(200), None),
            AttemptOutcome::Skipped { .. } => ("skipped", None, None),
            AttemptOutcome::Unsupported { .. } => ("unsupported", None, None),
            AttemptOutcome::Failed { class, error } => (class.as_str(), Some(error.status.as_u16()), Some(error.code)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub route: String,
    pub upstream_model: String,
    pub outcome: AttemptOutcome,
}

/// The one error a client gets when no route served: with a single route tried (and none
/// skipped), that route's own error (what the gateway answered before routing existed), with a
/// note on routes the surface could not use; otherwise an error listing every attempt and why, a
/// 429 when every failure was throttling or quota, a 503 when AWS STS was unavailable for every
/// route, else a 502.
pub fn all_failed(model: &str, attempts: &[Attempt], provider_only: bool) -> ApiError {
    let failed: Vec<(&Attempt, FailureClass, &ApiError)> = attempts
        .iter()
        .filter_map(|a| match &a.outcome {
            AttemptOutcome::Failed { class, error } => Some((a, *class, error)),
            _ => None,
        })
        .collect();
    let note = if provider_only { "; no other route: the team is provider-only (Bedrock routes only)" } else { "" };
    let unsupported: Vec<&Attempt> =
        attempts.iter().filter(|a| matches!(a.outcome, AttemptOutcome::Unsupported { .. })).collect();
    if let ([(_, _, error)], 1) = (failed.as_slice(), attempts.len() - unsupported.len()) {
        let mut error = (*error).clone();
        error.message.push_str(note);
        for attempt in unsupported {
            if let AttemptOutcome::Unsupported { reason } = attempt.outcome {
                error.message.push_str(&format!("; route {} not used: {reason}", attempt.route));
            }
        }
        return error;
    }
    let listed: Vec<String> = attempts
        .iter()
        .map(|attempt| match &attempt.outcome {
            AttemptOutcome::Failed { error, .. } => {
                format!("{}: {} {} ({})", attempt.route, error.status.as_u16(), error.code, error.message)
            }
            AttemptOutcome::Skipped { remaining } => {
                format!("{}: skipped, failing recently (retried in {}s)", attempt.route, remaining.as_secs().max(1))
            }
            AttemptOutcome::Unsupported { reason } => format!("{}: not used ({reason})", attempt.route),
            AttemptOutcome::Served => format!("{}: served", attempt.route),
        })
        .collect();
    let message = format!("every route for model {model:?} failed: {}{note}", listed.join("; "));
    let throttled = !failed.is_empty()
        && failed.iter().all(|(_, class, _)| matches!(class, FailureClass::Throttled | FailureClass::Quota));
    if throttled {
        let retry = failed.iter().filter_map(|(_, _, e)| e.retry_after).max().unwrap_or(2);
        return ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorKind::RateLimit, "all_routes_throttled", message)
            .with_retry_after(u64::from(retry));
    }
    if let [(_, FailureClass::StsUnavailable, first), ..] = failed.as_slice()
        && failed.iter().all(|(_, class, _)| *class == FailureClass::StsUnavailable)
    {
        // The broker's own code (`sts_unavailable`), for the whole request.
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorKind::Upstream, first.code, message)
            .with_retry_after(2);
    }
    ApiError::new(StatusCode::BAD_GATEWAY, ErrorKind::Upstream, "all_routes_failed", message)
}
