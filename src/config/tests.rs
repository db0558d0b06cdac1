use super::sections::validate_issuer_url;
use super::*;

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn errors_of(text: &str) -> Vec<(String, String)> {
    match Config::from_toml(text) {
        Ok(_) => Vec::new(),
        Err(error) => error.errors.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

#[test]
fn empty_file_needs_an_issuer_url_unless_dev() {
    let errors = errors_of("");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, "issuer.url");
    let config = Config::from_toml("dev = true").unwrap();
    assert_eq!(config.issuer.url, "http://127.0.0.1:8080");
    assert_eq!(config.issuer.audience, "sts.amazonaws.com");
    assert_eq!(config.issuer.token_lifetime, Duration::from_secs(300));
    assert_eq!(config.keys.dir, PathBuf::from("jwks"));
    assert!(config.models.contains_key("claude-opus-5-5"));
}

#[test]
fn tls_takes_both_files_or_neither() {
    let errors = errors_of("dev = true\n[server]\ntls_cert_file = \"tls.crt\"");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "server.tls_key_file");
    assert!(errors[0].1.contains("tls_cert_file is set"), "{}", errors[0].1);
    let errors = errors_of("dev = true\n[server]\ntls_key_file = \"tls.key\"");
    assert_eq!(errors[0].0, "server.tls_cert_file");
    let config =
        Config::from_toml("dev = true\n[server]\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"").unwrap();
    let files = config.server.tls.unwrap();
    assert_eq!((files.cert, files.key), (PathBuf::from("c.pem"), PathBuf::from("k.pem")));
    assert!(Config::from_toml("dev = true").unwrap().server.tls.is_none());
}

#[test]
fn no_file_means_dev_defaults() {
    let config = Config::load(None, Vec::new()).unwrap();
    assert!(config.dev);
    assert_eq!(config.issuer.host_path, "127.0.0.1:8080");
}

#[test]
fn every_bad_field_is_reported_by_path() {
    let text = format!(
        r#"
        surprise = 1
        [server]
        listen = "nope"
        [issuer]
        url = "https://issuer.example.com/"
        token_lifetime_secs = 7200
        colour = "red"
        [keys]
        rsa_bits = 1024
        [[callers]]
        name = "w"
        key_sha256 = "abc"
        team = "a/b"
        actors = ["robot"]
        [[callers]]
        name = "ok"
        key_sha256 = "{HASH}"
        team = "acme"
        [[teams]]
        uid = "acme"
        role_arn = "arn:aws:iam::12345:role/x"
        [sts]
        duration_secs = 60
        [models.bad]
        id = "gpt 4"
        "#
    );
    let paths: Vec<String> = errors_of(&text).into_iter().map(|(path, _)| path).collect();
    for expected in [
        "server.listen",
        "issuer.url",
        "issuer.token_lifetime_secs",
        "issuer.colour",
        "keys.rsa_bits",
        "callers[0].key_sha256",
        "callers[0].team",
        "callers[0].actors",
        "teams[0].role_arn",
        "sts.duration_secs",
        "models.bad.id",
        "surprise",
    ] {
        assert!(paths.iter().any(|p| p == expected), "missing {expected} in {paths:?}");
    }
}

#[test]
fn issuer_url_rules() {
    let cases = [
        ("https://issuer.example.com", false, Ok("issuer.example.com")),
        ("https://issuer.example.com/tenant", false, Ok("issuer.example.com/tenant")),
        ("http://127.0.0.1:9000", true, Ok("127.0.0.1:9000")),
        ("http://127.0.0.1:9000", false, Err("https")),
        ("http://example.com", true, Err("https")),
        ("https://issuer.example.com/", false, Err("trailing slash")),
        ("https://issuer.example.com?x=1", false, Err("query")),
        ("ftp://issuer.example.com", false, Err("scheme")),
    ];
    for (url, dev, expected) in cases {
        match (validate_issuer_url(url, dev), expected) {
            (Ok(host), Ok(want)) => assert_eq!(host, want),
            (Err(message), Err(want)) => assert!(message.contains(want), "{url}: {message}"),
            (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn env_overrides_fields_and_are_validated() {
    let env = vec![
        ("BYOLLM_ISSUER__URL".to_owned(), "https://id.example.com".to_owned()),
        ("BYOLLM_KEYS__RSA_BITS".to_owned(), "3072".to_owned()),
        ("BYOLLM_LOG".to_owned(), "debug".to_owned()),
        ("OTHER".to_owned(), "x".to_owned()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("byollm.toml");
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:9999\"\n").unwrap();
    let config = Config::load(Some(&file), env).unwrap();
    assert_eq!(config.issuer.url, "https://id.example.com");
    assert_eq!(config.keys.rsa_bits, 3072);
    assert_eq!(config.server.listen.port(), 9999);

    let bad = vec![("BYOLLM_ISSUER__TOKEN_LIFETIME_SECS".to_owned(), "999999".to_owned())];
    let error = Config::load(Some(&file), bad).unwrap_err();
    assert_eq!(error.errors[0].path, "issuer.url");
    assert!(error.errors.iter().any(|e| e.path == "issuer.token_lifetime_secs"));
}

#[test]
fn callers_teams_and_agents_parse() {
    let text = format!(
        r#"
        dev = true
        [[callers]]
        name = "worker"
        key_sha256 = "{HASH}"
        team = "acme"
        actors = ["service_account"]
        principals = ["svc-1", "svc-2"]
        agents = ["reviewer"]
        [[teams]]
        uid = "acme"
        role_arn = "arn:aws:iam::123456789012:role/path/byollm-acme"
        region = "eu-west-1"
        [[teams.agents]]
        name = "reviewer"
        role_arn = "arn:aws:iam::123456789012:role/reviewer"
        "#
    );
    let config = Config::from_toml(&text).unwrap();
    let caller = &config.callers[0];
    assert_eq!(caller.actors, vec![ActorType::ServiceAccount]);
    assert_eq!(caller.principals.as_ref().map(Vec::len), Some(2));
    assert_eq!(caller.agents.as_deref(), Some(&["reviewer".to_owned()][..]));
    assert!(!format!("{caller:?}").contains("key_sha256"));
    let team = config.team(&Uid::parse("acme").unwrap()).unwrap();
    let role = team.role_arn.as_ref().unwrap();
    assert_eq!(role.account_id(), "123456789012");
    assert_eq!(role.role_name(), "byollm-acme");
    assert_eq!(team.agents[0].role_arn.role_name(), "reviewer");
}

#[test]
fn running_without_an_agent_is_off_for_agent_restricted_callers_unless_asked_for() {
    let caller = |extra: &str| {
        format!("dev = true\n[[callers]]\nname = \"w\"\nkey_sha256 = \"{HASH}\"\nteam = \"acme\"\n{extra}")
    };
    let config = |extra: &str| Config::from_toml(&caller(extra)).map(|c| c.callers[0].clone());
    let open = config("").unwrap();
    assert!(open.allow_no_agent && !open.mint_tokens, "unrestricted: may run under the team role, no tokens");
    assert!(config("agents = [\"*\"]").unwrap().allow_no_agent);
    assert!(config("agents = []").unwrap().allow_no_agent, "no agents at all: the team role is all it has");
    assert!(!config("agents = [\"reviewer\"]").unwrap().allow_no_agent, "an agent's worker stays its agent");
    assert!(config("agents = [\"reviewer\"]\nallow_no_agent = true").unwrap().allow_no_agent);
    assert!(config("mint_tokens = true").unwrap().mint_tokens);
    let errors = errors_of(&caller("agents = []\nallow_no_agent = false"));
    assert_eq!(errors[0].0, "callers[0].allow_no_agent");
}

#[test]
fn an_agent_restricted_caller_may_mint_tokens_only_where_iam_tells_agents_apart() {
    // Without session tags every role of the team trusts scoped_principal:<team>/*: a token
    // minted for the caller's own agent would assume every other agent's role too.
    let config = |caller: &str, tags: bool| {
        format!(
            "dev = true\n[[callers]]\nname = \"w\"\nkey_sha256 = \"{HASH}\"\nteam = \"acme\"\nmint_tokens = true\n{caller}\n\
             [[teams]]\nuid = \"acme\"\nsession_tags = {tags}\n"
        )
    };
    for restricted in ["agents = [\"reviewer\"]", "agents = []", "agents = [\"reviewer\"]\nallow_no_agent = true"] {
        let errors = errors_of(&config(restricted, false));
        assert_eq!(errors.len(), 1, "{restricted}: {errors:?}");
        assert_eq!(errors[0].0, "callers[0].mint_tokens", "{restricted}");
        assert!(errors[0].1.contains("session_tags = true"), "{}", errors[0].1);
        assert!(Config::from_toml(&config(restricted, true)).is_ok(), "{restricted} with session tags");
    }
    // Unrestricted callers may act for every role anyway; a team not configured has no tags.
    assert!(Config::from_toml(&config("", false)).is_ok());
    assert!(Config::from_toml(&config("agents = [\"*\"]", false)).is_ok());
    let unconfigured = format!(
        "dev = true\n[[callers]]\nname = \"w\"\nkey_sha256 = \"{HASH}\"\nteam = \"acme\"\nmint_tokens = true\nagents = [\"x\"]\n"
    );
    assert_eq!(errors_of(&unconfigured)[0].0, "callers[0].mint_tokens");
}

#[test]
fn new_server_and_team_settings_have_safe_defaults() {
    let config = Config::from_toml("dev = true\n[[teams]]\nuid = \"acme\"\n").unwrap();
    assert!(!config.teams[0].session_tags);
    assert!(config.sts.session_policy);
    assert_eq!(config.server.max_body_bytes_in_flight, DEFAULT_BODY_BYTES_IN_FLIGHT);
    assert!(config.server.max_body_bytes_in_flight >= config.server.max_body_bytes);
    let errors = errors_of("dev = true\n[server]\nmax_body_bytes = 2048\nmax_body_bytes_in_flight = 1024\n");
    assert_eq!(errors[0].0, "server.max_body_bytes_in_flight");
    assert_eq!(config.server.max_answer_bytes_in_flight, DEFAULT_ANSWER_BYTES_IN_FLIGHT);
    let set = Config::from_toml("dev = true\n[server]\nmax_answer_bytes_in_flight = 33554432\n").unwrap();
    assert_eq!(set.server.max_answer_bytes_in_flight, 32 << 20);
    for bad in ["1024", "\"lots\"", "-1", "17179869185"] {
        let errors = errors_of(&format!("dev = true\n[server]\nmax_answer_bytes_in_flight = {bad}\n"));
        assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
        assert_eq!(errors[0].0, "server.max_answer_bytes_in_flight", "{bad}");
    }
}

#[test]
fn body_shares_default_to_halves_that_still_fit_a_maximum_size_body() {
    let server = Config::from_toml("dev = true\n").unwrap().server;
    assert_eq!(server.max_body_bytes_in_flight_per_team, DEFAULT_BODY_BYTES_IN_FLIGHT / 2);
    // Half the team's share would be 16 MiB: raised to one maximum-size body (20 MiB).
    assert_eq!(server.max_body_bytes_in_flight_per_caller, server.max_body_bytes);
    assert_eq!(server.body_first_byte_timeout, Duration::from_secs(10));
    assert_eq!((server.min_body_bytes_per_sec, server.body_rate_window), (64 << 10, Duration::from_secs(5)));
    // Derived from what is set.
    let server = Config::from_toml(
        "dev = true\n[server]\nmax_body_bytes = 1048576\nmax_body_bytes_in_flight = 16777216\nmin_body_bytes_per_sec = 0\n",
    )
    .unwrap()
    .server;
    assert_eq!(
        (server.max_body_bytes_in_flight_per_team, server.max_body_bytes_in_flight_per_caller),
        (8 << 20, 4 << 20)
    );
    assert_eq!(server.min_body_bytes_per_sec, 0, "0 turns the minimum rate off");
    // A share below one maximum-size body, or above the budget it is part of, is refused.
    for (setting, path) in [
        ("max_body_bytes_in_flight_per_team = 1048576", "server.max_body_bytes_in_flight_per_team"),
        ("max_body_bytes_in_flight_per_team = 134217728", "server.max_body_bytes_in_flight_per_team"),
        ("max_body_bytes_in_flight_per_caller = 2048", "server.max_body_bytes_in_flight_per_caller"),
        ("max_body_bytes_in_flight_per_caller = 41943040", "server.max_body_bytes_in_flight_per_caller"),
    ] {
        let errors = errors_of(&format!("dev = true\n[server]\n{setting}\n"));
        assert_eq!(errors.len(), 1, "{setting}: {errors:?}");
        assert_eq!(errors[0].0, path, "{setting}");
    }
    let server =
        Config::from_toml("dev = true\n[server]\nmax_body_bytes_in_flight_per_team = 41943040\n").unwrap().server;
    assert_eq!(server.max_body_bytes_in_flight_per_caller, 20 << 20);
}

#[test]
fn role_arn_rules() {
    for good in ["arn:aws:iam::123456789012:role/a", "arn:aws-us-gov:iam::123456789012:role/p/a+b=c,d.e@f_g-h"] {
        assert!(RoleArn::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "arn:aws:iam::12345678901:role/a",
        "arn:aws:iam::123456789012:user/a",
        "arn:aws:sts::123456789012:role/a",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/a b",
        "role/a",
    ] {
        assert!(RoleArn::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn jwks_max_age_must_stay_well_below_the_prepublication_window() {
    let errors = errors_of("dev = true\n[keys]\njwks_max_age_secs = 3000\nmin_next_age_secs = 3600\n");
    assert_eq!(errors[0].0, "keys.jwks_max_age_secs");
}

#[test]
fn egress_name_resolution_settings() {
    let config = Config::from_toml("dev = true").unwrap();
    assert_eq!(config.egress, EgressConfig::default());
    let config = Config::from_toml(
        "dev = true\n[egress]\nnameservers = [\"10.0.0.2\", \"127.0.0.1:5353\", \"[::1]:53\"]\nmax_lookups = 8\nmax_lookups_per_team = 2\n",
    )
    .unwrap();
    let expected: Vec<SocketAddr> =
        vec!["10.0.0.2:53".parse().unwrap(), "127.0.0.1:5353".parse().unwrap(), "[::1]:53".parse().unwrap()];
    assert_eq!(config.egress.nameservers, Some(expected));
    assert_eq!((config.egress.max_lookups, config.egress.max_lookups_per_team), (8, 2));
    // A smaller global cap lowers the default team share with it.
    assert_eq!(Config::from_toml("dev = true\n[egress]\nmax_lookups = 4\n").unwrap().egress.max_lookups_per_team, 4);
    let errors = errors_of(
        "dev = true\n[egress]\nnameservers = [\"dns.example.com\", \"10.0.0.2\"]\nmax_lookups = 0\nsurprise = 1\n",
    );
    let paths: Vec<&str> = errors.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(paths, ["egress.nameservers", "egress.max_lookups", "egress.surprise"], "{errors:?}");
    assert!(errors[0].1.contains("dns.example.com"), "{}", errors[0].1);
    assert_eq!(errors_of("dev = true\n[egress]\nnameservers = []\n")[0].0, "egress.nameservers");
    let errors = errors_of("dev = true\n[egress]\nmax_lookups = 8\nmax_lookups_per_team = 9\n");
    assert_eq!(errors[0].0, "egress.max_lookups_per_team");
}
