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
        assert_eq!(s["Action"], json!(["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"]));
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
        (Box::new(|i| i.model_ids = vec!["arn:aws:bedrock:us-east-1::foundation-model/a.b".to_owned()]), "model id"),
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
