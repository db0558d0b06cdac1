//! Reloading the routing policy from the config file while the gateway runs (on SIGHUP and when
//! the file changes): the whole file is validated again, but only `[routing]` is put in force (and
//! `[limits]`, validated by the caller's hook against the new routing, [`PolicyReloader::check_with`]);
//! changes to any other section are reported as needing a restart.

use std::path::PathBuf;
use std::sync::Arc;

use toml::Table;

use super::Routing;
use super::policy::{Mode, ProcessSecrets, RoutingPolicy};
use crate::config::{Config, ConfigError};

/// What a reload check did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The file did not change.
    Unchanged,
    /// The new policy is in force; `restart_needed` names the other top-level sections that
    /// changed since start (they take effect only after a restart).
    Replaced { restart_needed: Vec<String> },
    /// The file does not validate; the policy in force stays.
    Invalid(ConfigError),
}

/// Watches one config file for a running gateway.
pub struct PolicyReloader {
    path: PathBuf,
    env: Vec<(String, String)>,
    running: Arc<Config>,
    mode: Mode,
    last_text: Option<String>,
    /// The file's sections other than `[routing]` as the gateway started with them.
    started_with: Table,
}

fn other_sections(text: &str) -> Table {
    let mut table = text.parse::<Table>().unwrap_or_default();
    table.remove("routing");
    table.remove("limits");
    table
}

impl PolicyReloader {
    /// `env` is the environment the configuration was loaded with (its overrides apply again).
    pub fn new(path: PathBuf, env: Vec<(String, String)>, running: Arc<Config>, mode: Mode) -> PolicyReloader {
        let text = std::fs::read_to_string(&path).ok();
        let started_with = text.as_deref().map(other_sections).unwrap_or_default();
        PolicyReloader { path, env, running, mode, last_text: text, started_with }
    }

    /// The configuration the gateway runs with (everything but `[routing]` as at start).
    pub fn config(&self) -> &Config {
        &self.running
    }

    /// Reload if the file changed, or in any case when `force` (SIGHUP: secret files named by the
    /// policy are read again too).
    pub fn check(&mut self, routing: &Routing, force: bool) -> ReloadOutcome {
        self.check_with(routing, force, |_, _| Ok(()))
    }

    /// [`PolicyReloader::check`], with `also` validating what else reloads with the policy (the
    /// new file's configuration and the new policy): an error there keeps the policy in force too.
    pub fn check_with(
        &mut self,
        routing: &Routing,
        force: bool,
        also: impl FnOnce(&Config, &RoutingPolicy) -> Result<(), Vec<crate::config::FieldError>>,
    ) -> ReloadOutcome {
        let source = self.path.display().to_string();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) => {
                return ReloadOutcome::Invalid(ConfigError {
                    source,
                    errors: vec![crate::config::FieldError {
                        path: "(file)".into(),
                        message: format!("cannot read: {error}"),
                    }],
                });
            }
        };
        if !force && self.last_text.as_deref() == Some(text.as_str()) {
            return ReloadOutcome::Unchanged;
        }
        self.last_text = Some(text.clone());
        let config = match Config::load(Some(&self.path), self.env.iter().cloned()) {
            Ok(config) => config,
            Err(error) => return ReloadOutcome::Invalid(error),
        };
        let policy =
            match RoutingPolicy::from_section(config.routing.as_ref(), &self.running, self.mode, &ProcessSecrets) {
                Ok(policy) => policy,
                Err(errors) => return ReloadOutcome::Invalid(ConfigError { source, errors }),
            };
        if let Err(errors) = also(&config, &policy) {
            return ReloadOutcome::Invalid(ConfigError { source, errors });
        }
        routing.replace(policy);
        let now = other_sections(&text);
        let mut restart_needed: Vec<String> = now
            .iter()
            .filter(|(key, value)| self.started_with.get(*key) != Some(*value))
            .map(|(key, _)| key.clone())
            .chain(self.started_with.keys().filter(|key| !now.contains_key(*key)).cloned())
            .collect();
        restart_needed.sort();
        restart_needed.dedup();
        ReloadOutcome::Replaced { restart_needed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::RouteScope;

    const BASE: &str =
        "dev = true\n[models.claude-sonnet-4-5]\nid = \"global.anthropic.claude-sonnet-4-5-20250929-v1:0\"\n";

    fn routes(routing: &Routing) -> Vec<String> {
        let resolution = routing.policy().resolve(RouteScope::default(), "claude-sonnet-4-5").unwrap();
        resolution.routes.into_iter().map(|r| r.label).collect()
    }

    #[test]
    fn only_the_routing_section_swaps_and_other_changes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("byollm.toml");
        std::fs::write(&path, BASE).unwrap();
        let config = Arc::new(Config::load(Some(&path), Vec::new()).unwrap());
        let routing = Routing::new(RoutingPolicy::from_config(&config, Mode::Local, &ProcessSecrets).unwrap());
        let mut reloader = PolicyReloader::new(path.clone(), Vec::new(), config.clone(), Mode::Local);
        assert!(matches!(reloader.check(&routing, false), ReloadOutcome::Unchanged));
        assert_eq!(routes(&routing), ["bedrock"]);

        let with_policy = format!(
            "{BASE}[routing.default.routes]\n\"claude-sonnet-4-5\" = [{{ bedrock = {{}} }}, {{ anthropic = {{}} }}]\n"
        );
        std::fs::write(&path, &with_policy).unwrap();
        match reloader.check(&routing, false) {
            ReloadOutcome::Replaced { restart_needed } => assert!(restart_needed.is_empty(), "{restart_needed:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(routes(&routing), ["bedrock", "anthropic"]);

        // A broken policy keeps the one in force.
        std::fs::write(&path, format!("{with_policy}[routing.teams.nobody]\n")).unwrap();
        match reloader.check(&routing, false) {
            ReloadOutcome::Invalid(error) => assert_eq!(error.errors[0].path, "routing.teams.nobody"),
            other => panic!("{other:?}"),
        }
        assert_eq!(routes(&routing), ["bedrock", "anthropic"]);

        // Other sections changed: the policy swaps, the rest waits for a restart.
        std::fs::write(&path, format!("{with_policy}[server]\nmax_body_bytes = 4096\n")).unwrap();
        match reloader.check(&routing, false) {
            ReloadOutcome::Replaced { restart_needed } => assert_eq!(restart_needed, ["server"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(reloader.check(&routing, true), ReloadOutcome::Replaced { .. }), "SIGHUP reloads anyway");
    }
}
