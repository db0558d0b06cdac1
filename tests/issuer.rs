//! The issuer as AWS and cloud workers see it: the real binary on 127.0.0.1, its tokens verified
//! only through what it serves over HTTP.

use std::time::Duration;

use byollm_testkit::harness::{API_KEY, Gateway, Harness, OTHER_API_KEY, callers_toml, verify_like_aws};
use serde_json::{Value, json};

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

async fn mint(gateway: &Gateway, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(format!("{}/v1/tokens", gateway.url)).json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Team `acme` with the agent `reviewer`, as the token tests name it.
fn acme_team() -> String {
    format!(
        "{}\n[[teams]]\nuid = \"acme\"\n[[teams.agents]]\nname = \"reviewer\"\nrole_arn = \"arn:aws:iam::111111111111:role/byollm-acme-reviewer\"\n",
        callers_toml()
    )
}

#[tokio::test]
async fn minted_tokens_verify_the_way_aws_verifies_them() {
    let gateway = BYOLLM.start(&acme_team());
    let body = json!({"actor": "service_account", "principal": "ci-bot", "agent": "reviewer", "run_id": "run-1"});
    let (status, minted) = mint(&gateway, Some(API_KEY), body).await;
    assert_eq!(status, 200, "{minted}");
    let token = minted["token"].as_str().unwrap();
    let claims = verify_like_aws(token, "sts.amazonaws.com").await.unwrap();
    assert_eq!(claims["iss"], gateway.url.as_str());
    assert_eq!(claims["sub"], "scoped_principal:acme/service_account:ci-bot");
    assert_eq!(claims["agent"], "reviewer");
    assert_eq!(claims["run_id"], "run-1");
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 300);
    assert_eq!(minted["subject"], claims["sub"]);

    // A lifetime up to the configured one (300 s) is honoured; none beyond it is signed.
    let body = json!({"actor": "user", "principal": "alice", "lifetime_secs": 120});
    let (status, short) = mint(&gateway, Some(API_KEY), body).await;
    assert_eq!((status, short["expires_in"].as_u64()), (200, Some(120)), "{short}");
    let body = json!({"actor": "user", "principal": "alice", "lifetime_secs": 301});
    let (status, error) = mint(&gateway, Some(API_KEY), body).await;
    assert_eq!((status, error["error"]["code"].as_str()), (400, Some("invalid_lifetime")), "{error}");
    assert!(error["error"]["message"].as_str().unwrap().contains("60..=300"), "{error}");

    // Signing tokens is a permission of its own, off by default (team `other`'s caller lacks it).
    let (status, error) = mint(&gateway, Some(OTHER_API_KEY), json!({"actor": "user", "principal": "carol"})).await;
    assert_eq!((status, error["error"]["code"].as_str()), (403, Some("token_minting_not_allowed")), "{error}");

    // A tampered token must not verify: the check above really checks.
    let mut forged = token.to_owned();
    forged.replace_range(forged.len() - 4.., "AAAA");
    assert!(verify_like_aws(&forged, "sts.amazonaws.com").await.is_err());
}

#[tokio::test]
async fn jwks_is_cacheable_and_answers_if_none_match() {
    let gateway = BYOLLM.start("");
    let client = reqwest::Client::new();
    let first = client.get(format!("{}/.well-known/jwks.json", gateway.url)).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "public, max-age=300");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let jwks: Value = first.json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "active and next are both published");
    let again = client
        .get(format!("{}/.well-known/jwks.json", gateway.url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    let metrics = client.get(format!("{}/metrics", gateway.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("byollm_discovery_requests_total{document=\"jwks_not_modified\"} 1"), "{metrics}");
}

#[tokio::test]
async fn public_listener_serves_only_well_known() {
    let gateway = BYOLLM.start_with(&callers_toml(), true, &[]);
    let public = gateway.public_url.clone().unwrap();
    let client = reqwest::Client::new();
    for path in ["/.well-known/openid-configuration", "/.well-known/jwks.json"] {
        assert_eq!(client.get(format!("{public}{path}")).send().await.unwrap().status(), 200, "{path}");
    }
    for path in ["/v1/tokens", "/metrics", "/healthz"] {
        let response = client.post(format!("{public}{path}")).bearer_auth(API_KEY).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path} must not be public");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unknown_route");
    }
}

#[tokio::test]
async fn bad_requests_get_the_right_status_code_and_param() {
    let gateway = BYOLLM.start_with(&callers_toml(), false, &[("BYOLLM_SERVER__MAX_BODY_BYTES", "65536")]);
    let long = "a".repeat(129);
    // (API key, body, status, error code, param)
    type Case<'a> = (Option<&'a str>, Value, u16, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (None, json!({"actor": "user", "principal": "alice"}), 401, "missing_api_key", None),
        (Some("wrong"), json!({"actor": "user", "principal": "alice"}), 401, "invalid_api_key", None),
        (Some(API_KEY), json!({"team": "other", "actor": "user", "principal": "alice"}), 403, "team_not_allowed", None),
        (
            Some(OTHER_API_KEY),
            json!({"team": "acme", "actor": "user", "principal": "a"}),
            403,
            "token_minting_not_allowed",
            None,
        ),
        (Some(API_KEY), json!({"actor": "user", "principal": "abc/evil"}), 400, "invalid_uid", Some("principal")),
        (Some(API_KEY), json!({"actor": "user", "principal": "a*"}), 400, "invalid_uid", Some("principal")),
        (Some(API_KEY), json!({"actor": "user", "principal": "a:b"}), 400, "invalid_uid", Some("principal")),
        (Some(API_KEY), json!({"actor": "user", "principal": ""}), 400, "invalid_uid", Some("principal")),
        (Some(API_KEY), json!({"actor": "user", "principal": long}), 400, "invalid_uid", Some("principal")),
        (Some(API_KEY), json!({"actor": "user", "principal": "ünï"}), 400, "invalid_uid", Some("principal")),
        (Some(API_KEY), json!({"team": "acme/x", "actor": "user", "principal": "a"}), 400, "invalid_uid", Some("team")),
        (Some(API_KEY), json!({"actor": "robot", "principal": "a"}), 400, "invalid_actor", Some("actor")),
        (
            Some(API_KEY),
            json!({"actor": "user", "principal": "a", "lifetime_secs": 7200}),
            400,
            "invalid_lifetime",
            Some("lifetime_secs"),
        ),
        (
            Some(API_KEY),
            json!({"actor": "user", "principal": "a", "lifetime_secs": 10}),
            400,
            "invalid_lifetime",
            Some("lifetime_secs"),
        ),
        (
            Some(API_KEY),
            json!({"actor": "user", "principal": "a", "agent": "x y"}),
            400,
            "invalid_run_field",
            Some("agent"),
        ),
        (
            Some(API_KEY),
            json!({"actor": "user", "principal": "a", "agent": ""}),
            400,
            "invalid_run_field",
            Some("agent"),
        ),
        (
            Some(API_KEY),
            json!({"actor": "user", "principal": "a", "agent": "nobody"}),
            400,
            "unknown_agent",
            Some("agent"),
        ),
        (
            Some(API_KEY),
            json!({"actor": "user", "principal": "a", "run_id": ""}),
            400,
            "invalid_run_field",
            Some("run_id"),
        ),
        (Some(API_KEY), json!({"actor": "user", "principal": "a", "colour": "red"}), 400, "invalid_json", None),
        (Some(API_KEY), json!({"actor": "user"}), 400, "missing_principal", Some("principal")),
    ];
    for (key, body, status, code, param) in cases {
        let (got, error) = mint(&gateway, key, body.clone()).await;
        assert_eq!(got, status, "{body}: {error}");
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
        if let Some(param) = param {
            assert_eq!(error["error"]["param"], param, "{body}");
        }
        assert!(!error["error"]["message"].as_str().unwrap().is_empty());
    }

    let client = reqwest::Client::new();
    let malformed = client
        .post(format!("{}/v1/tokens", gateway.url))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let oversized = client
        .post(format!("{}/v1/tokens", gateway.url))
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .body(vec![b' '; 70_000])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    let body: Value = oversized.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_too_large");
}

#[tokio::test]
async fn rotation_never_breaks_a_token_and_publishes_next_before_it_signs() {
    let gateway = BYOLLM.start(&callers_toml());
    let body = json!({"actor": "user", "principal": "alice"});
    let (_, before) = mint(&gateway, Some(API_KEY), body.clone()).await;
    let old_token = before["token"].as_str().unwrap().to_owned();
    let jwks: Value =
        reqwest::get(format!("{}/.well-known/jwks.json", gateway.url)).await.unwrap().json().await.unwrap();
    let published_before: Vec<String> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();

    let (code, stdout, stderr) = gateway.cli(&["keys", "rotate"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    gateway.sighup();
    let mut rotated = None;
    for _ in 0..100 {
        let (_, after) = mint(&gateway, Some(API_KEY), body.clone()).await;
        if after["kid"] != before["kid"] {
            rotated = Some(after);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = rotated.expect("the gateway picked up the rotation");
    let new_kid = after["kid"].as_str().unwrap();
    assert!(published_before.iter().any(|k| k == new_kid), "the key now signing was published before rotation");
    verify_like_aws(&old_token, "sts.amazonaws.com").await.expect("token signed before rotation still verifies");
    verify_like_aws(after["token"].as_str().unwrap(), "sts.amazonaws.com").await.unwrap();
    let jwks: Value =
        reqwest::get(format!("{}/.well-known/jwks.json", gateway.url)).await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 3, "active, next and the retired key");

    let (code, list, _) = gateway.cli(&["keys", "list"]);
    assert_eq!(code, 0);
    assert_eq!(list.matches("retired").count(), 1, "{list}");
}

#[tokio::test]
async fn logs_never_carry_keys_api_keys_or_tokens() {
    let gateway = BYOLLM.start(&callers_toml());
    let mut tokens = Vec::new();
    for principal in ["alice", "bob"] {
        let (status, minted) = mint(&gateway, Some(API_KEY), json!({"actor": "user", "principal": principal})).await;
        assert_eq!(status, 200);
        tokens.push(minted["token"].as_str().unwrap().to_owned());
    }
    mint(&gateway, Some("wrong-key-value"), json!({"actor": "user", "principal": "a"})).await;
    mint(&gateway, Some(OTHER_API_KEY), json!({"team": "acme", "actor": "user", "principal": "a"})).await;
    let (code, _, rotate_err) = gateway.cli(&["keys", "rotate"]);
    assert_eq!(code, 0);
    gateway.sighup();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let logs = format!("{}{rotate_err}", gateway.logs());
    assert!(logs.contains("token minted"), "the run was logged at all:\n{logs}");
    let mut secrets: Vec<String> = vec![API_KEY.into(), OTHER_API_KEY.into(), "wrong-key-value".into()];
    secrets.extend(tokens.iter().cloned());
    secrets.extend(tokens.iter().map(|t| t.split('.').nth(2).unwrap().to_owned()));
    for entry in std::fs::read_dir(gateway.key_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pem") {
            let pem = std::fs::read_to_string(&path).unwrap();
            secrets.extend(pem.lines().filter(|l| !l.starts_with("-----")).map(str::to_owned));
        }
    }
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret leaked into the logs");
    }
    assert!(!logs.contains("PRIVATE KEY"));
    assert!(!logs.contains("eyJ"), "no JWT header in logs");
}

#[test]
fn bad_config_is_reported_by_path_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("byollm.toml");
    std::fs::write(
        &path,
        "[issuer]\nurl = \"http://issuer.example.com/\"\ntoken_lifetime_secs = 0\n[keys]\nbits = 2048\n",
    )
    .unwrap();
    let (code, _, stderr) = BYOLLM.run_cli(&["serve"], Some(&path));
    assert_eq!(code, 2, "{stderr}");
    for path in ["issuer.url", "issuer.token_lifetime_secs", "keys.bits: unknown field"] {
        assert!(stderr.contains(path), "{path} missing from:\n{stderr}");
    }
}

#[test]
fn unreadable_or_open_key_files_stop_the_server_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("jwks");
    let config = dir.path().join("byollm.toml");
    std::fs::write(
        &config,
        format!("[issuer]\nurl = \"https://issuer.example.com\"\n[keys]\ndir = {:?}\n", keys.display().to_string()),
    )
    .unwrap();
    let (code, _, stderr) = BYOLLM.run_cli(&["serve"], Some(&config));
    assert_eq!(code, 1);
    assert!(stderr.contains("keys generate"), "{stderr}");

    let (code, stdout, _) = BYOLLM.run_cli(&["keys", "generate"], Some(&config));
    assert_eq!(code, 0);
    assert!(stdout.contains("active") && stdout.contains("next"));
    let pem = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pem"))
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, stderr) = BYOLLM.run_cli(&["serve"], Some(&config));
    assert_eq!(code, 1);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!stderr.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn token_mint_cli_signs_for_operators() {
    let gateway = BYOLLM.start("");
    let (code, stdout, stderr) =
        gateway.cli(&["token", "mint", "--team", "acme", "--actor", "service_account", "--principal", "ops"]);
    assert_eq!(code, 0, "{stderr}");
    let claims = verify_like_aws(stdout.trim(), "sts.amazonaws.com").await.unwrap();
    assert_eq!(claims["sub"], "scoped_principal:acme/service_account:ops");
    assert!(!stderr.contains("eyJ"));
    let (code, _, stderr) = gateway.cli(&["token", "mint", "--team", "a/b", "--actor", "user", "--principal", "x"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("only A-Z"), "{stderr}");
}

#[tokio::test]
async fn token_mint_cli_goes_through_the_same_authorization_and_mints_session_tags() {
    let team = "[[teams]]\nuid = \"acme\"\nsession_tags = true\n[[teams.agents]]\nname = \"reviewer\"\nrole_arn = \"arn:aws:iam::111111111111:role/byollm-acme-reviewer\"\n";
    let gateway = BYOLLM.start(team);
    let args = ["token", "mint", "--team", "acme", "--actor", "user", "--principal", "ops", "--run-id", "run-9"];
    let (code, stdout, stderr) = gateway.cli(&[&args[..], &["--agent", "reviewer"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let claims = verify_like_aws(stdout.trim(), "sts.amazonaws.com").await.unwrap();
    let tags = &claims["https://aws.amazon.com/tags"];
    assert_eq!(tags["principal_tags"]["agent"], json!(["reviewer"]), "{claims}");
    assert_eq!(tags["principal_tags"]["team"], json!(["acme"]));
    assert_eq!(tags["principal_tags"]["run"], json!(["run-9"]));
    assert!(claims["https://aws.amazon.com/source_identity"].as_str().unwrap().starts_with("acme.ops."));
    // An agent the team does not configure, an empty one, a lifetime above the configured one.
    for (extra, expected) in [
        (&["--agent", "deployer"][..], "has no agent"),
        (&["--agent", ""][..], "agent"),
        (&["--lifetime-secs", "900"][..], "60..=300"),
    ] {
        let (code, _, stderr) = gateway.cli(&[&args[..], extra].concat());
        assert_eq!(code, 1, "{extra:?}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
}

#[tokio::test]
async fn slow_headers_are_cut_off_and_sigterm_stops_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut gateway = BYOLLM.start_with(
        &callers_toml(),
        false,
        &[("BYOLLM_SERVER__HEADER_READ_TIMEOUT_SECS", "1"), ("BYOLLM_SERVER__BODY_READ_TIMEOUT_SECS", "1")],
    );
    let address = gateway.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the connection was closed by the server");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!String::from_utf8_lossy(&buffer).contains("200 OK"));

    // A body that trickles is cut off once the caller is known; an unknown caller's body is never read.
    let post = |key: &str| {
        format!(
            "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"actor\""
        )
    };
    for (key, status, code) in [(API_KEY, "408", "body_timeout"), ("unknown-key", "401", "invalid_api_key")] {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(post(key).as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let mut buffer = vec![0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await.unwrap().unwrap();
        let answer = String::from_utf8_lossy(&buffer[..read]).into_owned();
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")) && answer.contains(code), "{answer}");
        // The body is left unread: the answer says the connection closes, so no client reuses it.
        assert!(answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    let healthy = reqwest::get(format!("{}/healthz", gateway.url)).await.unwrap();
    assert_eq!(healthy.status(), 200);
    let (status, _) = gateway.terminate(Duration::from_secs(5));
    assert_eq!(status, Some(0), "SIGTERM ends the process cleanly");
}

#[tokio::test]
async fn bodies_in_flight_share_one_budget_and_connections_are_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Bodies of up to 64 KiB, 100 KiB of them at once; two connections at most.
    let gateway = BYOLLM.start_with(
        &callers_toml(),
        false,
        &[
            ("BYOLLM_SERVER__MAX_BODY_BYTES", "65536"),
            ("BYOLLM_SERVER__MAX_BODY_BYTES_IN_FLIGHT", "102400"),
            ("BYOLLM_SERVER__MAX_CONNECTIONS", "3"),
        ],
    );
    let address = gateway.url.trim_start_matches("http://").to_owned();
    let head_for = |key: &str, length: usize| {
        format!(
            "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    let head = |length: usize| head_for(API_KEY, length);
    let read_answer = |mut stream: tokio::net::TcpStream| async move {
        let mut buffer = vec![0u8; 8192];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await.unwrap().unwrap();
        String::from_utf8_lossy(&buffer[..read]).into_owned()
    };
    // A 60 KiB body of which 59 KiB arrived holds 59 KiB of the budget (what arrived, not what
    // it declared)...
    let mut holder = tokio::net::TcpStream::connect(&address).await.unwrap();
    holder.write_all(head(60 * 1024).as_bytes()).await.unwrap();
    holder.write_all(&[b' '; 59 * 1024]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...so another team's 60 KiB body finds room for 41 KiB only, and is turned away with
    // Retry-After before the rest is read (the whole budget is spent, not its team's share).
    let mut second = tokio::net::TcpStream::connect(&address).await.unwrap();
    second.write_all(head_for(OTHER_API_KEY, 60 * 1024).as_bytes()).await.unwrap();
    second.write_all(&[b' '; 60 * 1024]).await.unwrap();
    let answer = read_answer(second).await;
    assert!(answer.starts_with("HTTP/1.1 503") && answer.contains("server_busy"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    // A small body still fits.
    let body = br#"{"actor": "user", "principal": "alice"}"#;
    let mut small = tokio::net::TcpStream::connect(&address).await.unwrap();
    small.write_all(head(body.len()).as_bytes()).await.unwrap();
    small.write_all(body).await.unwrap();
    let answer = read_answer(small).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Connection cap (3): the holder plus two idle connections fill it; a fourth is not served
    // until one of them closes.
    let idle: Vec<_> = futures_util::future::join_all((0..2).map(|_| tokio::net::TcpStream::connect(&address))).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut waiting = tokio::net::TcpStream::connect(&address).await.unwrap();
    waiting.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buffer = vec![0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(700), waiting.read(&mut buffer)).await;
    assert!(early.is_err(), "a connection beyond the cap was served");
    drop(idle);
    let answer = read_answer(waiting).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(holder);
}
