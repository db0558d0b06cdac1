//! Limits shared by replicas through a real Redis (`redis-server` on loopback, started here): two
//! `byollm serve` processes admit exactly 10 of 16 concurrent requests for a team limited to 10 a
//! minute; with Redis stopped they keep serving on their own counters under
//! `on_store_error = "allow"` and refuse under `"deny"`; once Redis is back they share counts
//! again; `byollm usage` reads the replicas' shared usage from Redis.

use byollm_testkit::cloud;
use byollm_testkit::harness::{API_KEY, Gateway, Harness};
use byollm_testkit::redis::RedisServer;
use byollm_testkit::support::{FakeBedrock, FakeBedrockOptions, FakeSts, FakeStsOptions};
use serde_json::json;

const BYOLLM: Harness = Harness::new(env!("CARGO_BIN_EXE_byollm"));

async fn replicas(redis: &RedisServer, on_store_error: &str) -> (FakeSts, FakeBedrock, Gateway, Gateway) {
    let (sts, bedrock) = cloud::fakes(FakeStsOptions::default(), FakeBedrockOptions::default()).await;
    let limits = format!(
        "[limits]\nredis_url = \"{}\"\non_store_error = \"{on_store_error}\"\nredis_timeout_ms = 200\n[limits.teams.acme]\nrequests_per_minute = 10\n",
        redis.url()
    );
    let config = cloud::config(&sts, &bedrock, &limits);
    let (first, second) = (BYOLLM.start(&config), BYOLLM.start(&config));
    sts.set_providers(vec![first.issuer_host(), second.issuer_host()]);
    (sts, bedrock, first, second)
}

fn chat(gateway: &Gateway) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gateway.url))
        .bearer_auth(API_KEY)
        .header("x-byollm-actor", "service_account")
        .header("x-byollm-principal", "ci-bot")
        .json(&json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]}))
}

/// `byollm usage --team <team> --json` over the gateway's config: the report it prints.
fn usage_cli(gateway: &Gateway, team: &str) -> serde_json::Value {
    let (status, stdout, stderr) = BYOLLM.run_cli(&["usage", "--json", "--team", team], Some(&gateway.config_path()));
    assert_eq!(status, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// 16 requests at once, alternating between the replicas: how many were answered 200, 429, 503.
async fn burst(first: &Gateway, second: &Gateway) -> (usize, usize, usize) {
    let requests = (0..16).map(|n| chat(if n % 2 == 0 { first } else { second }).send());
    let statuses: Vec<u16> =
        futures_util::future::join_all(requests).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    let count = |status: u16| statuses.iter().filter(|s| **s == status).count();
    assert_eq!(count(200) + count(429) + count(503), 16, "{statuses:?}");
    (count(200), count(429), count(503))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_share_one_teams_rate_and_keep_serving_while_redis_is_away() {
    let Some(mut redis) = RedisServer::start() else { return };
    let (_sts, bedrock, first, second) = replicas(&redis, "allow").await;
    assert_eq!(burst(&first, &second).await, (10, 6, 0), "exactly the team's 10 of 16, across both replicas");
    assert_eq!(bedrock.requests().len(), 10);
    // `byollm usage` reads the same counters from Redis: both replicas' answers, once each.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let report = usage_cli(&first, "acme");
        if report["usage"][0]["requests"] == 10 {
            assert_eq!(
                (report["team"].clone(), report["usage"][0]["model"].clone()),
                (json!("acme"), json!("claude-haiku-4-5"))
            );
            assert_eq!(report["usage"].as_array().unwrap().len(), 1, "{report}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{report}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Redis goes away: each replica serves on its own counters (fresh: 10 more each at most).
    redis.stop();
    let (ok, throttled, unavailable) = burst(&first, &second).await;
    assert_eq!((ok, throttled, unavailable), (16, 0, 0), "under allow, both keep serving");
    for gateway in [&first, &second] {
        let metrics = reqwest::get(format!("{}/metrics", gateway.url)).await.unwrap().text().await.unwrap();
        assert!(!metrics.contains("byollm_limit_store_errors_total{operation=\"acquire\"} 0"), "{metrics}");
        assert!(gateway.logs().contains("limits store unavailable"), "{}", gateway.logs());
    }

    // Redis is back (empty): the replicas share its counters again.
    redis.restart();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(burst(&first, &second).await, (10, 6, 0), "shared again once Redis answers");
}

#[tokio::test(flavor = "multi_thread")]
async fn under_deny_a_replica_refuses_while_redis_is_away() {
    let Some(mut redis) = RedisServer::start() else { return };
    let (_sts, bedrock, first, second) = replicas(&redis, "deny").await;
    assert_eq!(chat(&first).send().await.unwrap().status(), 200);
    redis.stop();
    let refused = chat(&second).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "limits_unavailable");
    assert_eq!(bedrock.requests().len(), 1, "nothing reaches Bedrock unchecked");
    redis.restart();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(chat(&second).send().await.unwrap().status(), 200, "served again once Redis answers");
}
