//! `byollm models`: the catalog and the configured routing, as text for people.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::models::{
    Catalog, ModelConfig, ModelRules, SamplingRule, ThinkingDefault, ThinkingMode, ToolStreaming, catalog,
};

fn tokens(n: u32) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}K", n / 1_000),
        n => n.to_string(),
    }
}

fn thinking(rules: &ModelRules) -> String {
    let mode = match rules.thinking {
        ThinkingMode::None => return "none".into(),
        ThinkingMode::Budget => "budget",
        ThinkingMode::Adaptive => "adaptive",
        ThinkingMode::AdaptiveOnly => "adaptive only",
    };
    match (rules.thinking_default, rules.thinking_disable) {
        (ThinkingDefault::On, false) => format!("{mode}, always on"),
        (ThinkingDefault::On, true) => format!("{mode}, on by default"),
        (ThinkingDefault::Off, _) => mode.to_owned(),
    }
}

fn efforts(rules: &ModelRules) -> String {
    match rules.thinking {
        ThinkingMode::None => "-".into(),
        ThinkingMode::Budget => "budget tokens".into(),
        _ if rules.efforts.is_empty() => "-".into(),
        _ => rules.efforts.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(","),
    }
}

fn sampling(rules: &ModelRules) -> &'static str {
    match rules.sampling {
        SamplingRule::Free => "free",
        SamplingRule::Exclusive => "temperature xor top_p",
        SamplingRule::DefaultsOnly => "defaults only",
    }
}

fn features(rules: &ModelRules) -> String {
    let mut out = Vec::new();
    if rules.structured_outputs {
        out.push("structured");
    }
    if rules.system_turns {
        out.push("system turns");
    }
    if rules.accepts_images() {
        out.push("vision");
    }
    match rules.tool_streaming {
        ToolStreaming::Eager => out.push("tool streaming"),
        ToolStreaming::Beta => out.push("tool streaming (beta)"),
        ToolStreaming::None => {}
    }
    if !rules.prefill {
        out.push("no prefill");
    }
    out.join(", ")
}

/// The catalog as a table, one model a line, then each model's notes.
pub fn catalog_table(catalog: &Catalog) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<19} {:<42} {:>7} {:>6}  {:<28} {:<25} {:<22} {:<11} {:<10} FEATURES",
        "FAMILY", "BASE ID", "CONTEXT", "OUTPUT", "THINKING", "EFFORT", "SAMPLING", "LIFECYCLE", "LAUNCHED"
    );
    for entry in &catalog.models {
        let rules = &entry.rules;
        let _ = writeln!(
            out,
            "{:<19} {:<42} {:>7} {:>6}  {:<28} {:<25} {:<22} {:<11} {:<10} {}",
            entry.family,
            entry.base_id,
            tokens(rules.context_window),
            tokens(rules.max_output_tokens),
            thinking(rules),
            efforts(rules),
            sampling(rules),
            entry.lifecycle.status.as_str(),
            entry.lifecycle.launched.as_deref().unwrap_or("-"),
            features(rules)
        );
    }
    let _ = writeln!(out, "\nNotes:");
    for entry in catalog.models.iter().filter(|entry| entry.note.is_some()) {
        let _ = writeln!(out, "  {}: {}", entry.family, entry.note.as_deref().unwrap_or_default());
    }
    out
}

/// The configured models: public name, Bedrock id, catalog entry, and the rules the config changed.
pub fn served_table(models: &BTreeMap<String, ModelConfig>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<22} {:<58} {:<19} OVERRIDES", "NAME", "BEDROCK ID", "FAMILY");
    for (name, model) in models {
        let family = model.family.as_deref().unwrap_or("(unknown: conservative rules)");
        let base = model.entry().map_or(&catalog().unknown, |entry| &entry.rules);
        let _ = writeln!(out, "{name:<22} {:<58} {family:<19} {}", model.id, overrides(base, &model.rules));
    }
    out
}

/// `field = value` for every rule that differs from `base`.
fn overrides(base: &ModelRules, rules: &ModelRules) -> String {
    let (Ok(base), Ok(rules)) = (toml::Table::try_from(base), toml::Table::try_from(rules)) else {
        return String::new();
    };
    let changed: Vec<String> = rules
        .iter()
        .filter(|(key, value)| base.get(*key) != Some(value))
        .map(|(key, value)| format!("{key} = {value}"))
        .collect();
    if changed.is_empty() { "-".into() } else { changed.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::resolve;

    #[test]
    fn tables_show_facts_and_overrides() {
        let table = catalog_table(catalog());
        let opus = table.lines().find(|line| line.starts_with("claude-opus-5-5 ")).unwrap();
        for fact in [
            "anthropic.claude-opus-5-5",
            "1M",
            "128K",
            "adaptive only, always on",
            "low,medium,high,xhigh,max",
            "defaults only",
            "active",
            "2026-09-22",
        ] {
            assert!(opus.contains(fact), "{fact}: {opus}");
        }
        assert!(table.contains("  claude-sonnet-5-5: sources conflict"), "notes are listed");
        let mut models = BTreeMap::new();
        let (model, _) = resolve(
            "mine",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            None,
            "max_output_tokens = 8000".parse().unwrap(),
        )
        .unwrap();
        models.insert("mine".to_owned(), model);
        let served = served_table(&models);
        let line = served.lines().nth(1).unwrap();
        assert!(line.contains("claude-sonnet-4-5") && line.contains("max_output_tokens = 8000"), "{line}");
    }
}
