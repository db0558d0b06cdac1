//! Catalog, id matching, config resolution and rule checks, table-style.

use serde_json::{Value, json};

use super::messages::{Turns, check_messages_body};
use super::*;

fn entry(family: &str) -> &'static CatalogEntry {
    catalog().by_family(family).unwrap_or_else(|| panic!("no catalog entry {family}"))
}

fn rules(family: &str) -> ModelRules {
    entry(family).rules.clone()
}

#[test]
fn the_catalog_parses_and_every_entry_names_its_sources() {
    let catalog = catalog();
    assert!(catalog.models.len() >= 16, "{}", catalog.models.len());
    for entry in &catalog.models {
        assert!(entry.source.len() > 20, "{}: source", entry.family);
        assert!(!entry.profiles.is_empty(), "{}: profiles", entry.family);
        assert!(entry.base_id.starts_with("anthropic.claude-"), "{}", entry.base_id);
        assert!(!entry.rules.drop_unsupported_params, "{}: drop_unsupported_params is config only", entry.family);
        if entry.rules.reasons() && entry.rules.thinking != ThinkingMode::Budget {
            assert!(!entry.rules.efforts.is_empty(), "{}: adaptive models list their efforts", entry.family);
        }
        for beta in entry.rules.reasoning_usage_beta.iter() {
            assert!(entry.rules.betas.contains(beta), "{}: its own reasoning beta is accepted", entry.family);
        }
    }
    // Prompt caching: every catalog model caches; the minimums are the documented ones (or the
    // largest documented one where no source gives it), 1h only where a source says so.
    let cache = |family: &str| rules(family).prompt_cache.unwrap_or_else(|| panic!("{family}: prompt_cache"));
    for entry in &catalog.models {
        let rule = cache(&entry.family);
        assert!([1024, 2048, 4096].contains(&rule.min_tokens), "{}: {}", entry.family, rule.min_tokens);
        assert_eq!(rule.ttls[0], CacheTtl::FiveMinutes, "{}", entry.family);
    }
    for (family, min_tokens, one_hour) in [
        ("claude-opus-4-5", 4096, true),
        ("claude-haiku-4-5", 4096, true),
        ("claude-sonnet-4-5", 1024, true),
        ("claude-opus-4-7", 4096, false),
        ("claude-sonnet-4-6", 2048, false),
        ("claude-opus-4-8", 1024, false),
        ("claude-fable-5", 1024, true),
        ("claude-opus-5-5", 4096, false),
        ("claude-sonnet-4", 1024, false),
    ] {
        let rule = cache(family);
        assert_eq!((rule.min_tokens, rule.ttls.contains(&CacheTtl::OneHour)), (min_tokens, one_hour), "{family}");
    }
    assert_eq!(catalog.unknown.prompt_cache, None, "an unknown model gets no breakpoint");

    // Budget levels for every OpenAI level but none; no budget equivalent of `max`.
    let levels: Vec<&str> = catalog.budget_tokens.keys().map(|level| level.as_str()).collect();
    assert_eq!(levels, ["minimal", "low", "medium", "high", "xhigh"]);
}

#[test]
fn bad_catalog_text_is_refused_with_the_entry_named() {
    let base = include_str!("catalog.toml");
    let cases = [
        (base.replacen("source = \"[aws-card] opus-5-5", "sauce = \"x", 1), "claude-opus-5-5"),
        (base.replacen("thinking = \"adaptive_only\"", "thinking = \"sometimes\"", 1), "claude-opus-5-5"),
        (base.replacen("default_max_tokens = 16384", "default_max_tokens = 999999", 1), "default_max_tokens"),
        (base.replacen("efforts = [\"low\", \"medium\"", "efforts = [\"medium\", \"low\"", 1), "efforts"),
        (
            base.replacen("efforts_without_thinking = [\"low\"", "efforts_without_thinking = [\"lowest\"", 1),
            "claude-haiku-5-5",
        ),
        (
            base.replacen(
                "efforts_without_thinking = [\"low\", \"medium\", \"high\"]",
                "efforts_without_thinking = [\"high\", \"low\"]",
                1,
            ),
            "efforts_without_thinking",
        ),
        (
            base.replacen(
                "base_id = \"anthropic.claude-opus-5-5\"",
                "base_id = \"global.anthropic.claude-opus-5-5\"",
                1,
            ),
            "base_id",
        ),
        (
            base.replacen(
                "prompt_cache = { min_tokens = 4096, ttls = [\"5m\"] }",
                "prompt_cache = { min_tokens = 0, ttls = [\"5m\"] }",
                1,
            ),
            "prompt_cache.min_tokens",
        ),
        (
            base.replacen(
                "prompt_cache = { min_tokens = 4096, ttls = [\"5m\"] }",
                "prompt_cache = { min_tokens = 4096, ttls = [\"1h\"] }",
                1,
            ),
            "prompt_cache.ttls",
        ),
        (
            base.replacen(
                "prompt_cache = { min_tokens = 4096, ttls = [\"5m\"] }",
                "prompt_cache = { min_tokens = 4096, ttls = [\"10m\"] }",
                1,
            ),
            "claude-opus-5-5",
        ),
        (format!("surprise = 1\n{base}"), "surprise"),
        (format!("{base}\nsurprise = 1\n"), "surprise"),
    ];
    for (text, expected) in cases {
        assert_ne!(text, base, "{expected}: the case changed nothing");
        match Catalog::parse(&text) {
            Ok(_) => panic!("{expected}: accepted"),
            Err(error) => assert!(error.contains(expected), "{expected}: {error}"),
        }
    }
}

#[test]
fn ids_match_catalog_entries_exactly() {
    let catalog = catalog();
    type Expected<'a> = Option<(&'a str, Option<&'a str>)>;
    let cases: [(&str, Expected); 10] = [
        ("anthropic.claude-opus-5-5", Some(("claude-opus-5-5", None))),
        ("global.anthropic.claude-opus-5-5", Some(("claude-opus-5-5", Some("global")))),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", Some(("claude-sonnet-4-5", Some("us")))),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0",
            Some(("claude-haiku-4-5", None)),
        ),
        (
            "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-opus-4-6-v1",
            Some(("claude-opus-4-6", Some("eu"))),
        ),
        // A version suffix is part of the id: no prefix or substring matching.
        ("anthropic.claude-sonnet-4-5", None),
        ("anthropic.claude-opus-4-6", None),
        ("global.anthropic.claude-opus-5-5-preview", None),
        ("amazon.nova-pro-v1:0", None),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123", None),
    ];
    for (id, expected) in cases {
        let got = match catalog.match_id(id) {
            IdMatch::Entry { entry, profile } => Some((entry.family.as_str(), profile)),
            IdMatch::Opaque | IdMatch::Unknown => None,
        };
        assert_eq!(got.as_ref().map(|(f, p)| (*f, p.as_deref())), expected, "{id}");
    }
    assert_eq!(
        catalog.match_id("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"),
        IdMatch::Opaque
    );
    assert_eq!(catalog.match_id("amazon.nova-pro-v1:0"), IdMatch::Unknown);
}

#[test]
fn defaults_are_the_current_models_through_global_profiles() {
    let models = default_models();
    let names: Vec<&str> = models.keys().map(String::as_str).collect();
    for name in [
        "claude-opus-5-5",
        "claude-sonnet-5-5",
        "claude-haiku-5-5",
        "claude-fable-5-2",
        "claude-opus-4-7",
        "claude-opus-4-6",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
    ] {
        let model = &models[name];
        assert!(model.id.starts_with("global.anthropic."), "{name}: {}", model.id);
        assert_eq!(model.family.as_deref(), Some(name), "{name}");
        assert_eq!(model.rules, entry(name).rules, "{name}");
    }
    assert_eq!(names.len(), catalog().defaults.len());
}

fn overrides(text: &str) -> toml::Table {
    text.parse().unwrap()
}

#[test]
fn resolving_a_config_entry() {
    // A profile id: the entry's rules, no warning.
    let (model, warning) = resolve("opus", "us.anthropic.claude-opus-4-7", None, toml::Table::new()).unwrap();
    assert_eq!((model.family.as_deref(), warning), (Some("claude-opus-4-7"), None));

    // An application inference profile names its entry; overrides apply to that entry's rules.
    let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123";
    let (model, warning) = resolve(
        "team-opus",
        arn,
        Some("claude-opus-5-5"),
        overrides("max_output_tokens = 32000\ndrop_unsupported_params = true\nbetas = []"),
    )
    .unwrap();
    assert_eq!(warning, None);
    assert_eq!(model.family.as_deref(), Some("claude-opus-5-5"));
    assert_eq!(model.rules.max_output_tokens, 32_000);
    assert!(model.rules.drop_unsupported_params && model.rules.betas.is_empty());
    assert_eq!(model.rules.thinking, ThinkingMode::AdaptiveOnly);

    // Without a family: conservative rules and a warning that names the id.
    let (model, warning) = resolve("team-opus", arn, None, toml::Table::new()).unwrap();
    assert_eq!(model.rules, catalog().unknown);
    assert!(warning.unwrap().contains("abc123"));
    let (model, warning) = resolve("nova", "amazon.nova-pro-v1:0", None, overrides("thinking = \"budget\"")).unwrap();
    assert_eq!(model.family, None);
    assert_eq!(model.rules.thinking, ThinkingMode::Budget);
    assert!(warning.unwrap().contains("amazon.nova-pro-v1:0 matches no catalog entry"));

    // A profile the entry does not list: a warning.
    let (_, warning) =
        resolve("opus41", "global.anthropic.claude-opus-4-1-20250805-v1:0", None, toml::Table::new()).unwrap();
    assert!(warning.unwrap().contains("\"global\""));

    // Errors, by field.
    let fields = |result: Result<Resolved, Vec<FieldProblem>>| -> Vec<String> {
        result.unwrap_err().into_iter().map(|(field, message)| format!("{field}: {message}")).collect()
    };
    let errors = fields(resolve("x", "us.anthropic.claude-opus-4-7", Some("claude-opus-5-5"), toml::Table::new()));
    assert!(errors[0].starts_with("family: ") && errors[0].contains("claude-opus-4-7"), "{errors:?}");
    let errors = fields(resolve("x", arn, Some("claude-opus-9"), toml::Table::new()));
    assert!(errors[0].starts_with("family: unknown model family"), "{errors:?}");
    let errors = fields(resolve("x", arn, Some("claude-opus-5-5"), overrides("supports_thinking = true")));
    assert!(errors[0].contains("supports_thinking"), "{errors:?}");
    let errors = fields(resolve("x", arn, Some("claude-opus-5-5"), overrides("sampling = \"loose\"")));
    assert!(errors[0].contains("loose"), "{errors:?}");
    // Prompt caching can be set per model, and checked as the catalog is.
    let (model, _) =
        resolve("team-opus", arn, None, overrides("prompt_cache = { min_tokens = 2048, ttls = [\"5m\", \"1h\"] }"))
            .unwrap();
    assert_eq!(
        model.rules.prompt_cache,
        Some(PromptCacheRule { min_tokens: 2048, ttls: vec![CacheTtl::FiveMinutes, CacheTtl::OneHour] })
    );
    let errors = fields(resolve("x", arn, None, overrides("prompt_cache = { min_tokens = 2048, ttls = [] }")));
    assert!(errors[0].contains("prompt_cache.ttls"), "{errors:?}");
    let errors = fields(resolve("x", "gpt 4", None, toml::Table::new()));
    assert!(errors[0].starts_with("id: "), "{errors:?}");
}

#[test]
fn served_models_by_name_and_by_bedrock_id_from_a_path() {
    let mut models = default_models();
    let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123";
    let (team, _) = resolve("team-opus", arn, Some("claude-opus-5-5"), toml::Table::new()).unwrap();
    models.insert("team-opus".into(), team);
    assert_eq!(find_by_name(&models, "claude-opus-4-7").map(|(name, _)| name), Some("claude-opus-4-7"));
    assert!(find_by_name(&models, "gpt-4o").is_none());
    let cases = [
        ("global.anthropic.claude-opus-4-7", Some("claude-opus-4-7")),
        // Another profile, or the base id, of a served model: the configured model of that entry.
        ("us.anthropic.claude-opus-4-7", Some("claude-opus-4-7")),
        ("anthropic.claude-haiku-4-5-20251001-v1%3A0", Some("claude-haiku-4-5")),
        ("arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc123", Some("team-opus")),
        // The first configured model of the entry, by public name.
        ("us.anthropic.claude-opus-5-5", Some("claude-opus-5-5")),
        ("us.anthropic.claude-opus-4-1-20250805-v1:0", None),
        ("anthropic.claude-opus-4-7%ZZ", None),
        ("not an id", None),
    ];
    for (segment, expected) in cases {
        assert_eq!(find_by_bedrock_id(&models, segment, |_, _| true).map(|(name, _)| name), expected, "{segment}");
    }
    // A substitute the caller turns down is not served; an exact id always is.
    let none = |_: &str, _: &ModelConfig| false;
    assert_eq!(find_by_bedrock_id(&models, "us.anthropic.claude-opus-4-7", none), None);
    assert!(find_by_bedrock_id(&models, "global.anthropic.claude-opus-4-7", none).is_some());
}

/// A plan or the param of the 400, as JSON for compact tables.
fn plan_json(result: Result<ReasoningPlan, crate::error::ApiError>) -> Value {
    match result {
        Ok(plan) => json!({"thinking": plan.thinking, "effort": plan.effort, "thinks": plan.thinks}),
        Err(error) => {
            assert_eq!(error.status, 400);
            if error.code == "unsupported_parameter" {
                assert!(error.message.contains("model m"), "{}", error.message);
            }
            json!({"error": error.param})
        }
    }
}

#[test]
fn reasoning_levels_per_model() {
    let adaptive = |effort: &str, display: bool| {
        let thinking =
            if display { json!({"type": "adaptive", "display": "summarized"}) } else { json!({"type": "adaptive"}) };
        json!({"thinking": thinking, "effort": effort, "thinks": true})
    };
    let budget =
        |tokens: u32| json!({"thinking": {"type": "enabled", "budget_tokens": tokens}, "effort": null, "thinks": true});
    let off = json!({"thinking": null, "effort": null, "thinks": false});
    let disabled = json!({"thinking": {"type": "disabled"}, "effort": null, "thinks": false});
    let refused = json!({"error": "reasoning_effort"});
    let cases = [
        // Always thinks, cannot be switched off: none is the lowest effort, without text.
        ("claude-opus-5-5", "none", adaptive("low", false)),
        ("claude-opus-5-5", "minimal", adaptive("low", true)),
        ("claude-opus-5-5", "high", adaptive("high", true)),
        ("claude-opus-5-5", "xhigh", adaptive("xhigh", true)),
        ("claude-opus-5-5", "max", adaptive("max", true)),
        ("claude-sonnet-5-5", "none", adaptive("low", false)),
        ("claude-fable-5-2", "medium", adaptive("medium", true)),
        // Always thinks unless switched off.
        ("claude-haiku-5-5", "none", disabled.clone()),
        ("claude-haiku-5-5", "low", adaptive("low", true)),
        // Thinks only when asked; display omitted by default (4.7) or not (4.6).
        ("claude-opus-4-7", "none", off.clone()),
        ("claude-opus-4-7", "high", adaptive("high", true)),
        ("claude-opus-4-6", "high", adaptive("high", false)),
        ("claude-opus-4-6", "xhigh", refused.clone()),
        ("claude-sonnet-4-6", "max", adaptive("max", false)),
        // Budget models.
        ("claude-haiku-4-5", "none", off.clone()),
        ("claude-haiku-4-5", "minimal", budget(1024)),
        ("claude-sonnet-4-5", "high", budget(16384)),
        ("claude-sonnet-4-5", "xhigh", budget(32768)),
        ("claude-sonnet-4-5", "max", refused.clone()),
    ];
    for (family, level, expected) in cases {
        let level = ReasoningLevel::parse(level).unwrap();
        let got = plan_json(rules(family).plan_reasoning("m", level, "reasoning_effort"));
        assert_eq!(got, expected, "{family} {level}");
    }
    let none = catalog().unknown.clone();
    assert_eq!(plan_json(none.plan_reasoning("m", ReasoningLevel::None, "reasoning_effort")), off);
    assert_eq!(plan_json(none.plan_reasoning("m", ReasoningLevel::Low, "reasoning_effort")), refused);
}

#[test]
fn anthropic_thinking_objects_per_model() {
    use ThinkingRequest::*;
    let cases = [
        ("claude-opus-4-7", Some(Enabled { budget_tokens: Some(4000) }), None, json!({"error": "thinking.type"})),
        ("claude-opus-4-7", Some(Disabled), None, json!({"thinking": null, "effort": null, "thinks": false})),
        ("claude-opus-5-5", Some(Disabled), None, json!({"error": "thinking.type"})),
        (
            "claude-haiku-5-5",
            Some(Disabled),
            None,
            json!({"thinking": {"type": "disabled"}, "effort": null, "thinks": false}),
        ),
        (
            "claude-opus-4-7",
            Some(Adaptive { display: None }),
            Some(Effort::Xhigh),
            json!({"thinking": {"type": "adaptive", "display": "summarized"}, "effort": "xhigh", "thinks": true}),
        ),
        (
            "claude-opus-4-7",
            Some(Adaptive { display: Some(Display::Omitted) }),
            None,
            json!({"thinking": {"type": "adaptive", "display": "omitted"}, "effort": null, "thinks": true}),
        ),
        ("claude-opus-4-6", None, Some(Effort::Xhigh), json!({"error": "output_config.effort"})),
        (
            "claude-opus-4-6",
            Some(Enabled { budget_tokens: Some(2000) }),
            None,
            json!({"thinking": {"type": "enabled", "budget_tokens": 2000}, "effort": null, "thinks": true}),
        ),
        (
            "claude-opus-4-6",
            Some(Enabled { budget_tokens: Some(100) }),
            None,
            json!({"error": "thinking.budget_tokens"}),
        ),
        ("claude-sonnet-4-5", Some(Adaptive { display: None }), None, json!({"error": "thinking.type"})),
        ("claude-sonnet-4-5", None, Some(Effort::High), json!({"error": "output_config.effort"})),
        // Thinking off: only the efforts the model takes without thinking.
        ("claude-haiku-5-5", Some(Disabled), Some(Effort::Max), json!({"error": "output_config.effort"})),
        ("claude-haiku-5-5", Some(Disabled), Some(Effort::Xhigh), json!({"error": "output_config.effort"})),
        (
            "claude-haiku-5-5",
            Some(Disabled),
            Some(Effort::High),
            json!({"thinking": {"type": "disabled"}, "effort": "high", "thinks": false}),
        ),
        ("claude-opus-5", Some(Disabled), Some(Effort::Max), json!({"error": "output_config.effort"})),
        ("claude-opus-4-8", None, Some(Effort::Xhigh), json!({"error": "output_config.effort"})),
        (
            "claude-opus-4-8",
            Some(Adaptive { display: None }),
            Some(Effort::Xhigh),
            json!({"thinking": {"type": "adaptive", "display": "summarized"}, "effort": "xhigh", "thinks": true}),
        ),
        (
            "claude-opus-4-6",
            Some(Disabled),
            Some(Effort::Max),
            json!({"thinking": null, "effort": "max", "thinks": false}),
        ),
        // No thinking object: the model's default.
        ("claude-opus-5-5", None, None, json!({"thinking": null, "effort": null, "thinks": true})),
        ("claude-opus-4-6", None, None, json!({"thinking": null, "effort": null, "thinks": false})),
    ];
    for (family, thinking, effort, expected) in cases {
        let got =
            plan_json(rules(family).plan_thinking("m", thinking, effort.map(|e| (e, "output_config.effort")), true));
        assert_eq!(got, expected, "{family} {thinking:?} {effort:?}");
    }
}

#[test]
fn sampling_per_model() {
    let sampling =
        |temperature: Option<f64>, top_p: Option<f64>, top_k: Option<u32>| Sampling { temperature, top_p, top_k };
    let ok = |s: Sampling| Ok::<Sampling, &str>(s);
    let cases = [
        (
            "claude-sonnet-4",
            sampling(Some(0.2), Some(0.9), Some(5)),
            false,
            ok(sampling(Some(0.2), Some(0.9), Some(5))),
        ),
        ("claude-sonnet-4-5", sampling(Some(0.2), Some(0.9), None), false, Err("top_p")),
        ("claude-sonnet-4-5", sampling(Some(0.2), None, Some(5)), false, ok(sampling(Some(0.2), None, Some(5)))),
        ("claude-opus-4-7", sampling(Some(0.2), None, None), false, Err("temperature")),
        ("claude-opus-4-7", sampling(Some(1.0), None, None), false, ok(sampling(None, None, None))),
        ("claude-opus-4-7", sampling(None, Some(0.9), None), false, Err("top_p")),
        ("claude-opus-5-5", sampling(None, None, Some(3)), true, Err("top_k")),
        ("claude-fable-5-2", sampling(Some(1.0), Some(0.99), None), true, ok(sampling(None, None, None))),
        ("claude-fable-5-2", sampling(None, Some(0.95), None), true, Err("top_p")),
        // Thinking limits, on a model that takes sampling otherwise.
        ("claude-sonnet-4-5", sampling(Some(0.5), None, None), true, Err("temperature")),
        ("claude-sonnet-4-5", sampling(Some(1.0), Some(0.97), None), true, Err("top_p")),
        ("claude-sonnet-4", sampling(None, Some(0.97), None), true, ok(sampling(None, Some(0.97), None))),
        ("claude-sonnet-4", sampling(None, Some(0.5), None), true, Err("top_p")),
        ("claude-sonnet-4", sampling(Some(1.5), None, None), false, Err("temperature")),
    ];
    for (family, input, thinks, expected) in cases {
        let got = rules(family).check_sampling("m", input, thinks);
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{family} {input:?}"),
            (Err(error), Err(param)) => {
                assert_eq!(error.param.as_deref(), Some(param), "{family} {input:?}: {error}");
                assert_eq!(error.status, 400);
            }
            (got, want) => panic!("{family} {input:?}: got {got:?}, want {want:?}"),
        }
    }
    // A refusal names the parameter and the model; the operator's switch drops instead.
    let error = rules("claude-opus-4-7").check_sampling("claude-opus-4-7", sampling(Some(0.2), None, None), false);
    let message = error.unwrap_err().message;
    assert!(message.contains("`temperature`") && message.contains("claude-opus-4-7"), "{message}");
    let mut dropping = rules("claude-opus-4-7");
    dropping.drop_unsupported_params = true;
    assert_eq!(
        dropping.check_sampling("m", sampling(Some(0.2), Some(0.5), Some(3)), false).unwrap(),
        Sampling::default()
    );
}

#[test]
fn betas_tool_choice_prefill_and_images() {
    let opus = rules("claude-opus-5-5");
    assert!(opus.check_betas("m", &["interleaved-thinking-2025-05-14"], "anthropic_beta").is_ok());
    let error = opus.check_betas("m", &["context-1m-2025-08-07", "made-up-2030-01-01"], "anthropic_beta").unwrap_err();
    assert!(error.message.contains("context-1m-2025-08-07, made-up-2030-01-01"), "{}", error.message);
    assert_eq!(error.param.as_deref(), Some("anthropic_beta"));

    // Forced tool choice: refused while thinking; turned possible by switching thinking off where
    // the model allows it and the client did not ask for thinking.
    let mut plan = ReasoningPlan { thinking: None, effort: None, thinks: true };
    assert!(!opus.allow_forced_tool_choice(&mut plan, false));
    assert!(opus.check_forced_tool_choice("m", &plan, "tool_choice").is_err());
    let haiku = rules("claude-haiku-5-5");
    assert!(haiku.allow_forced_tool_choice(&mut plan, false));
    assert_eq!((plan.thinking, plan.thinks), (Some(ThinkingOut::Disabled), false));
    let mut chosen =
        ReasoningPlan { thinking: Some(ThinkingOut::Adaptive { display: None }), effort: None, thinks: true };
    assert!(!haiku.allow_forced_tool_choice(&mut chosen, true));
    assert!(rules("claude-sonnet-4-5").allow_forced_tool_choice(&mut ReasoningPlan::off(), false));
    // An effort the model takes only while thinking keeps thinking on: the forced choice is refused.
    let mut max = ReasoningPlan { thinking: None, effort: Some(Effort::Max), thinks: true };
    assert!(!haiku.allow_forced_tool_choice(&mut max, false));
    assert!(haiku.check_forced_tool_choice("m", &max, "tool_choice").is_err());

    // Thinking dropped (a tool continuation without its thinking block): the effort follows.
    let mut plan = ReasoningPlan {
        thinking: Some(ThinkingOut::Adaptive { display: None }),
        effort: Some(Effort::Max),
        thinks: true,
    };
    rules("claude-opus-4-8").drop_thinking(&mut plan);
    assert_eq!(plan, ReasoningPlan { thinking: None, effort: Some(Effort::High), thinks: false });
    let mut plan = ReasoningPlan { effort: Some(Effort::Max), ..ReasoningPlan::off() };
    rules("claude-opus-4-6").drop_thinking(&mut plan);
    assert_eq!(plan.effort, Some(Effort::Max), "no limit without thinking on this model");

    // Prefill: where the model takes it, and while it thinks only after its thinking block.
    let thinking =
        ReasoningPlan { thinking: Some(ThinkingOut::Enabled { budget_tokens: 2048 }), effort: None, thinks: true };
    let sonnet = rules("claude-sonnet-4-5");
    assert!(sonnet.check_prefill("m", &ReasoningPlan::off(), false, "messages[1]").is_ok());
    assert!(sonnet.check_prefill("m", &thinking, true, "messages[1]").is_ok());
    let error = sonnet.check_prefill("m", &thinking, false, "messages[1]").unwrap_err();
    assert_eq!(error.param.as_deref(), Some("messages[1]"));
    assert!(error.message.contains("model m thinks"), "{}", error.message);
    assert_eq!(
        rules("claude-opus-4-6")
            .check_prefill("m", &ReasoningPlan::off(), false, "messages[1]")
            .unwrap_err()
            .param
            .as_deref(),
        Some("messages[1]")
    );
    assert!(catalog().unknown.check_image("m", "messages[0].content[0]").is_err());
    assert!(rules("claude-haiku-4-5").check_image("m", "messages[0].content[0]").is_ok());
}

/// Runs the Messages-body check; `Ok` carries the adjusted body.
fn messages_check(family: &str, body: Value) -> Result<Value, String> {
    let Value::Object(mut body) = body else { panic!("body must be an object") };
    let turns = Turns::of(body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default());
    match check_messages_body("m", &rules(family), &mut body, &turns) {
        Ok(_) => Ok(Value::Object(body)),
        Err(error) => Err(error.param.unwrap_or_default()),
    }
}

#[test]
fn messages_shaped_bodies_get_the_same_rules() {
    let user = json!([{"role": "user", "content": "hi"}]);
    let body = |extra: Value| {
        let mut base = json!({"anthropic_version": "bedrock-2023-05-31", "messages": user});
        base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        base
    };
    // Adjusted: max_tokens defaulted and capped, default sampling values dropped.
    let adjusted = messages_check("claude-opus-5-5", body(json!({"temperature": 1.0}))).unwrap();
    assert_eq!(adjusted["max_tokens"], 16384);
    assert!(adjusted.get("temperature").is_none());
    let adjusted = messages_check("claude-sonnet-4-6", body(json!({"max_tokens": 900000}))).unwrap();
    assert_eq!(adjusted["max_tokens"], 64000);
    // A forced tool choice on a model that thinks by default but may stop: thinking turned off.
    let adjusted =
        messages_check("claude-haiku-5-5", body(json!({"max_tokens": 100, "tool_choice": {"type": "any"}}))).unwrap();
    assert_eq!(adjusted["thinking"], json!({"type": "disabled"}));

    let refusals = [
        (
            "claude-opus-4-7",
            json!({"max_tokens": 100, "thinking": {"type": "enabled", "budget_tokens": 2000}}),
            "thinking.type",
        ),
        ("claude-opus-4-7", json!({"max_tokens": 100, "temperature": 0.3}), "temperature"),
        ("claude-opus-4-6", json!({"max_tokens": 100, "output_config": {"effort": "xhigh"}}), "output_config.effort"),
        (
            "claude-opus-4-1",
            json!({"max_tokens": 100, "output_config": {"format": {"type": "json_schema"}}}),
            "output_config.format",
        ),
        (
            "claude-sonnet-4-5",
            json!({"max_tokens": 3000, "thinking": {"type": "enabled", "budget_tokens": 4000}}),
            "thinking.budget_tokens",
        ),
        (
            "claude-sonnet-4-5",
            json!({"max_tokens": 100, "anthropic_beta": ["tool-search-tool-2025-10-19"]}),
            "anthropic_beta",
        ),
        ("claude-sonnet-4-5", json!({"max_tokens": 100, "anthropic_beta": "x"}), "anthropic_beta"),
        ("claude-opus-5-5", json!({"max_tokens": 100, "tool_choice": {"type": "tool", "name": "f"}}), "tool_choice"),
        (
            "claude-sonnet-5-5",
            json!({"max_tokens": 100, "messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]}),
            "messages[1].role",
        ),
        (
            "claude-opus-4-6",
            json!({"max_tokens": 100, "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
            "messages[1]",
        ),
        (
            "claude-haiku-5-5",
            json!({"max_tokens": 100, "thinking": {"type": "disabled"}, "output_config": {"effort": "max"}}),
            "output_config.effort",
        ),
        (
            "claude-sonnet-4-5",
            json!({"max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 2000},
                   "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
            "messages[1]",
        ),
        // Not turned off for a forced tool choice while the effort needs thinking.
        (
            "claude-haiku-5-5",
            json!({"max_tokens": 100, "output_config": {"effort": "xhigh"}, "tool_choice": {"type": "any"}}),
            "tool_choice",
        ),
    ];
    for (family, extra, param) in refusals {
        assert_eq!(messages_check(family, body(extra.clone())), Err(param.to_owned()), "{family} {extra}");
    }
    // Accepted as sent.
    let system_turn =
        json!({"max_tokens": 100, "messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]});
    assert!(messages_check("claude-opus-5-5", body(system_turn)).is_ok());
    let adaptive = json!({"max_tokens": 100, "thinking": {"type": "adaptive", "display": "omitted"}, "output_config": {"effort": "max"}});
    assert_eq!(messages_check("claude-opus-5-5", body(adaptive.clone())).unwrap()["thinking"], adaptive["thinking"]);
    let prefill_after_thinking = json!({"max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 2000},
        "messages": [{"role": "user", "content": "a"},
                     {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "text", "text": "b"}]}]});
    assert!(messages_check("claude-sonnet-4-5", body(prefill_after_thinking)).is_ok());
}

/// The chat and Messages surfaces share one parser for `thinking` and `output_config.effort`: the
/// same refusals, naming the same field, on both.
#[test]
fn thinking_and_effort_parse_the_same_on_every_surface() {
    assert_eq!(ThinkingRequest::parse(Some("disabled"), None, None).unwrap(), ThinkingRequest::Disabled);
    assert_eq!(
        ThinkingRequest::parse(Some("enabled"), Some(2048), Some("omitted")).unwrap(),
        ThinkingRequest::Enabled { budget_tokens: Some(2048) }
    );
    assert_eq!(
        ThinkingRequest::parse(Some("adaptive"), None, Some("omitted")).unwrap(),
        ThinkingRequest::Adaptive { display: Some(Display::Omitted) }
    );
    for (kind, display, param) in [
        (Some("sometimes"), None, "thinking.type"),
        (None, None, "thinking.type"),
        (Some("adaptive"), Some("loud"), "thinking.display"),
    ] {
        let error = ThinkingRequest::parse(kind, None, display).unwrap_err();
        assert_eq!(error.param.as_deref(), Some(param), "{error}");
    }
    assert_eq!(rules::parse_effort("xhigh").unwrap(), Effort::Xhigh);
    let error = rules::parse_effort("extreme").unwrap_err();
    assert_eq!(error.param.as_deref(), Some("output_config.effort"));
    assert!(error.message.contains("`extreme`"), "{}", error.message);

    let messages = |extra: Value| {
        let mut body = json!({"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        messages_check("claude-opus-4-6", body).unwrap_err()
    };
    assert_eq!(messages(json!({"thinking": {"type": 3}})), "thinking.type");
    assert_eq!(messages(json!({"thinking": {"type": "adaptive", "display": "loud"}})), "thinking.display");
    assert_eq!(messages(json!({"output_config": {"effort": "extreme"}})), "output_config.effort");
    assert_eq!(messages(json!({"output_config": {"effort": 2}})), "output_config.effort");
}
