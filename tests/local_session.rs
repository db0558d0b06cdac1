//! Local mode: a person's own AWS profile through the standard credential chain, read from
//! temporary config and credentials files (the process environment is never changed), the
//! `byollm doctor` report over the same chain, and `byollm local` usable by its owner only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use byollm::broker::local::{LocalSession, LocalSource};
use byollm_testkit::harness;
use byollm_testkit::harness::Harness;

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

/// A temporary `~/.aws` with a config file, a credentials file and a `credential_process` script
/// that prints new credentials on every call (a counter file), or expired ones.
struct AwsDir {
    dir: tempfile::TempDir,
}

fn rfc3339(time: SystemTime) -> String {
    byollm::broker::rfc3339(time)
}

impl AwsDir {
    fn new() -> AwsDir {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("creds.sh");
        let counter = dir.path().join("count");
        let future = rfc3339(SystemTime::now() + Duration::from_secs(3600));
        // Within the five-minute refresh margin, but still valid.
        let soon = rfc3339(SystemTime::now() + Duration::from_secs(240));
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
n=$(cat '{counter}' 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > '{counter}'
expiration={future}
case "$1" in
  expired) expiration=2020-01-01T00:00:00Z ;;
  slow) sleep 1 ;;
  soon) if [ "$n" -gt 1 ]; then sleep 2; fi; expiration={soon} ;;
  noisy) echo "token=SECRET-ON-STDERR-0123456789 and a stack trace" >&2; exit 3 ;;
esac
printf '{{"Version": 1, "AccessKeyId": "ASIALOCALTEST%04d", "SecretAccessKey": "local-secret-%d", "SessionToken": "local-token-%d", "Expiration": "%s"}}\n' "$n" "$n" "$n" "$expiration"
"#,
                counter = counter.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let script = script.display();
        std::fs::write(
            dir.path().join("config"),
            format!(
                "[profile rotating]\ncredential_process = {script}\nregion = us-east-1\n\n\
                 [profile expired]\ncredential_process = {script} expired\n\n\
                 [profile slow]\ncredential_process = {script} slow\n\n\
                 [profile soon]\ncredential_process = {script} soon\n\n\
                 [profile noisy]\ncredential_process = {script} noisy\n\n\
                 [profile work]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = Developer\nregion = us-east-1\n\n\
                 [sso-session corp]\nsso_start_url = https://byollm-test.awsapps.com/start\nsso_region = us-east-1\n\n\
                 [profile static]\nregion = eu-west-1\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("credentials"),
            "[static]\naws_access_key_id = AKIALOCALSTATIC12345\naws_secret_access_key = static-secret-value\n",
        )
        .unwrap();
        AwsDir { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn source(&self, profile: &str) -> LocalSource {
        LocalSource {
            profile: Some(profile.into()),
            config_file: Some(self.path("config")),
            credentials_file: Some(self.path("credentials")),
            refresh_interval: Duration::from_secs(900),
        }
    }

    fn calls(&self) -> u32 {
        read_count(&self.path("count"))
    }
}

fn read_count(path: &Path) -> u32 {
    std::fs::read_to_string(path).map(|s| s.trim().parse().unwrap()).unwrap_or(0)
}

async fn session(aws: &AwsDir, profile: &str) -> Arc<LocalSession> {
    Arc::new(tokio::time::timeout(Duration::from_secs(30), LocalSession::new(aws.source(profile))).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_no_credentials_share_one_resolution() {
    let aws = AwsDir::new();
    let session = session(&aws, "slow").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.credentials().await.map(|c| c.access_key_id) })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), "ASIALOCALTEST0001");
    }
    assert_eq!(aws.calls(), 1, "8 concurrent requests, one credential_process run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_near_expiry_are_served_at_once_while_one_task_refreshes() {
    let aws = AwsDir::new();
    let session = session(&aws, "soon").await;
    // Valid for four more minutes: inside the refresh margin. The next resolution takes 2 s.
    assert_eq!(session.credentials().await.unwrap().access_key_id, "ASIALOCALTEST0001");
    let started = std::time::Instant::now();
    for _ in 0..10 {
        assert_eq!(session.credentials().await.unwrap().access_key_id, "ASIALOCALTEST0001");
    }
    assert!(started.elapsed() < Duration::from_millis(1000), "nobody waited: {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(aws.calls(), 2, "one background refresh for ten requests");
    assert_eq!(session.credentials().await.unwrap().access_key_id, "ASIALOCALTEST0002");
}

#[tokio::test]
async fn a_credential_process_stderr_never_reaches_the_client() {
    let aws = AwsDir::new();
    let session = session(&aws, "noisy").await;
    let error = session.credentials().await.expect_err("the command failed");
    let api = error.to_api_error();
    assert_eq!((api.status.as_u16(), api.code), (401, "aws_credentials_missing"));
    assert!(
        api.message.contains("\"noisy\"") && api.message.contains("byollm doctor --profile noisy"),
        "{}",
        api.message
    );
    assert!(!api.message.contains("SECRET-ON-STDERR"), "{}", api.message);
    assert!(!byollm::broker::local::without_stderr(&error.detail).contains("SECRET-ON-STDERR"));
    // The person's own doctor shows it, to the person.
    let report = byollm::ops::doctor::local_report(aws.source("noisy")).await;
    assert!(report.to_string().contains("SECRET-ON-STDERR"), "{report}");
}

#[tokio::test]
async fn credential_process_profiles_are_re_resolved_on_every_refresh() {
    let aws = AwsDir::new();
    let session = session(&aws, "rotating").await;
    let first = session.refresh().await.expect("credentials from credential_process");
    let second = session.refresh().await.expect("credentials from credential_process");
    assert_eq!(first.access_key_id, "ASIALOCALTEST0001");
    assert_eq!(second.access_key_id, "ASIALOCALTEST0002");
    assert!(second.secret_access_key.expose() == "local-secret-2", "the second secret came from the second run");
    assert!(second.session_token.as_ref().is_some_and(|t| t.expose() == "local-token-2"));
    let expires = second.expiration.expect("an expiration");
    assert!(expires > SystemTime::now() + Duration::from_secs(3000));
    assert_eq!(aws.calls(), 2);

    // Between refreshes, requests reuse what was resolved.
    let again = session.credentials().await.unwrap();
    assert_eq!(again.access_key_id, "ASIALOCALTEST0002");
    assert_eq!(aws.calls(), 2);
}

#[tokio::test]
async fn expired_credentials_say_which_profile_and_how_to_sign_in_again() {
    let aws = AwsDir::new();
    let session = session(&aws, "expired").await;
    let error = session.refresh().await.expect_err("expired credentials are refused");
    assert!(error.expired);
    assert_eq!(error.profile, "expired");
    let api = error.to_api_error();
    assert_eq!((api.status.as_u16(), api.code), (401, "aws_session_expired"));
    assert!(api.message.contains("\"expired\""), "{}", api.message);
    assert!(api.message.contains("aws login --profile expired"), "{}", api.message);
    assert!(session.credentials().await.is_err(), "requests keep failing until the session is renewed");
}

#[tokio::test]
async fn sso_profiles_without_a_cached_token_point_to_aws_sso_login() {
    let aws = AwsDir::new();
    let session = session(&aws, "work").await;
    let error = tokio::time::timeout(Duration::from_secs(30), session.refresh()).await.unwrap().unwrap_err();
    assert_eq!(error.hint, "aws sso login --profile work");
    let api = error.to_api_error();
    assert_eq!(api.status.as_u16(), 401);
    assert!(api.message.contains("aws sso login --profile work"), "{}", api.message);
}

#[tokio::test]
async fn a_missing_profile_is_reported_as_missing_credentials() {
    let aws = AwsDir::new();
    let session = session(&aws, "nowhere").await;
    let error = tokio::time::timeout(Duration::from_secs(30), session.refresh()).await.unwrap().unwrap_err();
    assert!(!error.expired);
    let api = error.to_api_error();
    assert_eq!((api.status.as_u16(), api.code), (401, "aws_credentials_missing"));
    assert!(api.message.contains("\"nowhere\""), "{}", api.message);
}

#[tokio::test]
async fn static_keys_work_and_never_expire() {
    let aws = AwsDir::new();
    let session = session(&aws, "static").await;
    let credentials = session.refresh().await.expect("static keys");
    assert_eq!(credentials.access_key_id, "AKIALOCALSTATIC12345");
    assert!(credentials.secret_access_key.expose() == "static-secret-value");
    assert!(credentials.session_token.is_none() && credentials.expiration.is_none());
}

// `byollm doctor --profile ...`

#[tokio::test]
async fn doctor_reports_the_source_the_masked_key_and_the_expiry() {
    let aws = AwsDir::new();
    let report = byollm::ops::doctor::local_report(aws.source("rotating")).await;
    let text = report.to_string();
    assert!(report.ok, "{text}");
    assert_eq!(report.access_key.as_deref(), Some("****0001"));
    assert!(report.source.as_deref().is_some_and(|s| !s.is_empty() && s != "unknown"), "{text}");
    let left = report.time_left().expect("time left");
    assert!(left > Duration::from_secs(3000) && left <= Duration::from_secs(3600), "{left:?}");
    assert!(text.contains("profile \"rotating\"") && text.contains("****0001") && text.contains("(in "), "{text}");
    assert!(!text.contains("ASIALOCALTEST") && !text.contains("local-secret") && !text.contains("local-token"));

    let report = byollm::ops::doctor::local_report(aws.source("static")).await;
    assert!(report.ok);
    assert!(report.to_string().contains("never"), "{report}");
    assert!(!report.to_string().contains("static-secret-value"));
}

#[tokio::test]
async fn doctor_reports_an_expired_session_with_the_command_that_fixes_it() {
    let aws = AwsDir::new();
    let report = byollm::ops::doctor::local_report(aws.source("expired")).await;
    let text = report.to_string();
    assert!(!report.ok);
    let error = report.error.as_ref().expect("an error");
    assert_eq!(error.code, "aws_session_expired");
    assert!(error.hint.as_deref().is_some_and(|h| h.starts_with("aws login --profile expired")), "{text}");
    assert!(text.contains("fix:") && text.contains("FAILED"), "{text}");
    assert!(!text.contains("local-secret") && !text.contains("local-token"));

    let report = byollm::ops::doctor::local_report(aws.source("work")).await;
    assert_eq!(report.error.and_then(|e| e.hint).as_deref(), Some("aws sso login --profile work"));
}

// `byollm local`, the binary: only the holder of the session key gets anything.

#[tokio::test]
async fn another_local_user_without_the_session_key_gets_a_401() {
    use std::os::unix::fs::PermissionsExt;
    let aws = AwsDir::new();
    // A shared config (say, the Kubernetes one) asks for 0.0.0.0: local mode ignores it.
    let shared_port = harness::free_port();
    let gateway = BYOLLM.start_local(
        &format!("[server]\nlisten = \"0.0.0.0:{shared_port}\"\n"),
        &["--profile", "rotating"],
        &[("AWS_CONFIG_FILE", aws.path("config").to_str().unwrap())],
    );
    let key = gateway.local_key().to_owned();
    assert!(key.starts_with("byollm_") && key.len() > 40);
    let client = reqwest::Client::new();
    let models = format!("{}/v1/models", gateway.url);
    let chat = format!("{}/v1/chat/completions", gateway.url);
    let body = serde_json::json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]});
    type Case<'a> = (&'a str, Option<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (&models, None, "missing_api_key"),
        (&models, Some(("authorization", "Bearer local".into())), "invalid_api_key"),
        (&models, Some(("authorization", format!("Bearer {key}x"))), "invalid_api_key"),
        (&models, Some(("x-api-key", "anything".into())), "invalid_api_key"),
        (&chat, None, "missing_api_key"),
        (&chat, Some(("authorization", "Bearer".into())), "invalid_api_key"),
    ];
    for (url, header, code) in cases {
        let mut request = if url.ends_with("models") { client.get(url) } else { client.post(url).json(&body) };
        if let Some((name, value)) = &header {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{url} {header:?}");
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{url} {header:?}");
    }
    // The owner's clients: OpenAI style and Anthropic style.
    for (name, value) in [("authorization", format!("Bearer {key}")), ("x-api-key", key.clone())] {
        let response = client.get(&models).header(name, value).send().await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
    }
    // Health needs no key (and says nothing secret).
    assert_eq!(client.get(format!("{}/healthz", gateway.url)).send().await.unwrap().status(), 200);
    // The key file: the owner's only; loopback only, whatever the config said.
    let key_file = gateway.dir.path().join("local.key");
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(gateway.logs().contains(&format!("listen=127.0.0.1:{}", gateway.url.rsplit(':').next().unwrap())));
    assert!(std::net::TcpStream::connect(("127.0.0.1", shared_port)).is_err(), "server.listen was not used");
    let mut gateway = gateway;
    let (code, _) = gateway.terminate(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(!key_file.exists(), "the key is removed when the session ends");
}

#[tokio::test]
async fn a_failing_credential_process_never_shows_its_stderr_in_responses_or_healthz() {
    let aws = AwsDir::new();
    let gateway =
        BYOLLM.start_local("", &["--profile", "noisy"], &[("AWS_CONFIG_FILE", aws.path("config").to_str().unwrap())]);
    let client = reqwest::Client::new();
    let mut health = String::new();
    for _ in 0..100 {
        let response = client.get(format!("{}/healthz", gateway.url)).send().await.unwrap();
        let status = response.status();
        health = response.text().await.unwrap();
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(health.contains("aws_credentials_missing"), "{health}");
    let response = client
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(gateway.local_key())
        .json(&serde_json::json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body = response.text().await.unwrap();
    assert!(body.contains("byollm doctor --profile noisy"), "{body}");
    for text in [&health, &body, &gateway.logs()] {
        assert!(!text.contains("SECRET-ON-STDERR"), "stderr leaked: {text}");
    }
}
