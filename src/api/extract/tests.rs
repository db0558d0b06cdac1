use super::*;
use axum::http::HeaderMap;

use crate::identity::authz::{FieldSource, run_request_from_headers};

#[tokio::test]
async fn answers_given_before_the_body_is_read_close_the_connection() {
    use axum::routing::post;
    use tower_service::Service;

    let mut app = axum::Router::new()
        .route("/refuse", post(|| async { StatusCode::UNAUTHORIZED }))
        .route("/read", post(|body: Bytes| async move { body.len().to_string() }))
        .layer(axum::middleware::from_fn(close_if_body_unread));
    let call = |path: &str, body: &'static str, declared: Option<&str>| {
        let mut request = Request::post(path);
        if let Some(length) = declared {
            request = request.header(header::CONTENT_LENGTH, length);
        }
        request.body(axum::body::Body::from(body)).unwrap()
    };
    for (path, body, declared, closes) in [
        ("/refuse", "{\"a\":1}", Some("7"), true),
        ("/read", "{\"a\":1}", Some("7"), false),
        // No body to leave unread.
        ("/refuse", "", Some("0"), false),
        ("/refuse", "", None, false),
    ] {
        let response = app.call(call(path, body, declared)).await.unwrap();
        let connection = response.headers().get(header::CONNECTION).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(connection.as_deref() == Some("close"), closes, "{path} {declared:?}");
    }
}

#[test]
fn identity_headers_present_but_empty_are_not_absent() {
    let mut headers = HeaderMap::new();
    headers.insert("x-byollm-actor", "user".parse().unwrap());
    headers.insert("x-byollm-principal", " alice ".parse().unwrap());
    headers.insert("x-byollm-agent", "".parse().unwrap());
    let request = run_request_from_headers(&headers).unwrap();
    assert_eq!(request.principal.as_deref(), Some("alice"));
    assert_eq!(request.agent.as_deref(), Some(""), "an empty header is a value for authz to refuse");
    assert_eq!((request.team, request.run_id, request.source), (None, None, FieldSource::Headers));

    headers.insert("x-byollm-run-id", HeaderValue::from_bytes(b"r\xff").unwrap());
    assert_eq!(run_request_from_headers(&headers).unwrap_err().code, "invalid_header");
    headers.remove("x-byollm-run-id");
    headers.append("x-byollm-team", "a".parse().unwrap());
    headers.append("x-byollm-team", "b".parse().unwrap());
    assert_eq!(run_request_from_headers(&headers).unwrap_err().code, "duplicate_header");
}

#[tokio::test]
async fn body_errors_do_not_echo_a_whole_value() {
    #[derive(Debug, serde::Deserialize)]
    struct Shape {
        #[allow(dead_code)]
        lifetime_secs: Option<u64>,
    }
    let server = server(4 << 20);
    let text = serde_json::json!({"lifetime_secs": "A".repeat(1 << 20)}).to_string();
    let length = text.len();
    let mut body = body(0, false, &BodyBudget::new(8 << 20));
    body.body = axum::body::Body::from(text);
    body.content_length = Some(length as u64);
    let json = ApiJson::<Shape> { body, _type: std::marker::PhantomData };
    let error = json.read(&server, BodyOwner::local()).await.unwrap_err();
    assert_eq!((error.status.as_u16(), error.code), (400, "invalid_json"));
    assert!(error.message.len() < 2048, "{} bytes", error.message.len());
}

const KIB: usize = 1024;

fn server(max_body: usize) -> ServerConfig {
    let mut config = crate::config::Config::from_toml("dev = true").unwrap().server;
    config.max_body_bytes = max_body;
    config
}

/// `max_body` bytes a body, `team` and `caller` bytes the shares; 1 KiB/s over 5 s windows,
/// the first byte within 10 s, the whole body within 60 s.
fn shared(max_body: usize, team: usize, caller: usize) -> ServerConfig {
    let mut config = server(max_body);
    config.max_body_bytes_in_flight_per_team = team;
    config.max_body_bytes_in_flight_per_caller = caller;
    config.body_first_byte_timeout = Duration::from_secs(10);
    config.min_body_bytes_per_sec = KIB;
    config.body_rate_window = Duration::from_secs(5);
    config.body_read_timeout = Duration::from_secs(60);
    config
}

fn body(bytes: usize, declared: bool, budget: &BodyBudget) -> ApiBody {
    ApiBody {
        body: axum::body::Body::from(vec![b' '; bytes]),
        content_length: declared.then_some(bytes as u64),
        budget: Some(budget.clone()),
        json: true,
    }
}

/// A body the test sends chunk by chunk (it ends when the sender is dropped).
fn fed(declared: Option<usize>, budget: &BodyBudget) -> (ApiBody, tokio::sync::mpsc::UnboundedSender<Bytes>) {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), receiver))
    });
    let body = ApiBody {
        body: axum::body::Body::from_stream(chunks),
        content_length: declared.map(|d| d as u64),
        budget: Some(budget.clone()),
        json: true,
    };
    (body, sender)
}

fn spaces(bytes: usize) -> Bytes {
    Bytes::from(vec![b' '; bytes])
}

async fn read(body: ApiBody, server: &ServerConfig, owner: &BodyOwner) -> Result<BoundedBytes, ApiError> {
    body.read(server, owner.clone()).await
}

/// Wait (in paused time) until `budget` holds `bytes`.
async fn until_held(budget: &BodyBudget, bytes: usize) {
    for _ in 0..1000 {
        if budget.held() == bytes {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the budget holds {} bytes, not {bytes}", budget.held());
}

#[tokio::test(start_paused = true)]
async fn bodies_are_charged_as_their_bytes_arrive_not_on_their_declared_length() {
    let budget = BodyBudget::new(100 * KIB);
    let server = shared(64 * KIB, 100 * KIB, 100 * KIB);
    let team_a = BodyOwner::caller("a", "a1");
    // Declares 60 KiB, has sent 10: holds 10.
    let (slow, sender) = fed(Some(60 * KIB), &budget);
    let reading = tokio::spawn({
        let (server, owner) = (server.clone(), team_a.clone());
        async move { read(slow, &server, &owner).await.map(|b| (b.len(), b)) }
    });
    sender.send(spaces(10 * KIB)).unwrap();
    until_held(&budget, 10 * KIB).await;
    // So another body of 64 KiB fits beside it (a reservation of 60 would have left 40).
    let other = read(body(64 * KIB, true, &budget), &server, &BodyOwner::caller("b", "b1")).await.unwrap();
    assert_eq!((budget.held(), budget.held_by(&team_a)), (74 * KIB, (10 * KIB, 10 * KIB)));
    drop(other);
    sender.send(spaces(50 * KIB)).unwrap();
    drop(sender);
    let (length, whole) = reading.await.unwrap().unwrap();
    assert_eq!((length, budget.held()), (60 * KIB, 60 * KIB));
    drop(whole);
    assert_eq!(budget.held(), 0);
    assert!(budget.lock().teams.is_empty(), "owners holding nothing leave no entry");
    // Without Content-Length: what arrived, no more.
    let chunked = read(body(5 * KIB, false, &budget), &server, &team_a).await.unwrap();
    assert_eq!((chunked.len(), budget.held()), (5 * KIB, 5 * KIB));
    // A declared size above the maximum is refused before anything is read.
    let error = read(body(65 * KIB, true, &budget), &server, &team_a).await.err().unwrap();
    assert_eq!((error.status.as_u16(), error.code, budget.held()), (413, "body_too_large", 5 * KIB));
    // So is one that sends more than the maximum without declaring it; what it held goes back.
    let error = read(body(65 * KIB, false, &budget), &server, &team_a).await.err().unwrap();
    assert_eq!((error.status.as_u16(), budget.held()), (413, 5 * KIB));
}

#[tokio::test(start_paused = true)]
async fn a_team_and_a_caller_key_hold_at_most_their_shares() {
    let budget = BodyBudget::new(100 * KIB);
    let server = shared(40 * KIB, 60 * KIB, 40 * KIB);
    let (a1, a2, b1) = (BodyOwner::caller("a", "a1"), BodyOwner::caller("a", "a2"), BodyOwner::caller("b", "b1"));
    let first = read(body(40 * KIB, true, &budget), &server, &a1).await.unwrap();
    // The caller key's share is spent: a 429 after a short wait, naming the setting.
    let started = Instant::now();
    let error = read(body(KIB, true, &budget), &server, &a1).await.err().unwrap();
    assert_eq!((error.status.as_u16(), error.code, error.retry_after), (429, "body_share_exhausted", Some(1)));
    assert_eq!(error.kind, crate::error::ErrorKind::RateLimit);
    assert!(error.message.contains("max_body_bytes_in_flight_per_caller"), "{}", error.message);
    assert!(started.elapsed() >= BUDGET_WAIT, "it waited for room first");
    // Another key of the team has the rest of the team's share, no more.
    let second = read(body(20 * KIB, true, &budget), &server, &a2).await.unwrap();
    let error = read(body(KIB, true, &budget), &server, &a2).await.err().unwrap();
    assert_eq!((error.status.as_u16(), error.code), (429, "body_share_exhausted"));
    assert!(error.message.contains("max_body_bytes_in_flight_per_team"), "{}", error.message);
    assert_eq!(budget.held_by(&a2), (60 * KIB, 20 * KIB));
    // Another team is unaffected.
    let third = read(body(40 * KIB, true, &budget), &server, &b1).await.unwrap();
    // The process is full: 503 for anyone.
    let error = read(body(KIB, true, &budget), &server, &BodyOwner::caller("c", "c1")).await.err().unwrap();
    assert_eq!((error.status.as_u16(), error.code, error.retry_after), (503, "server_busy", Some(1)));
    let error = read(body(KIB, true, &budget), &server, &BodyOwner::local()).await.err().unwrap();
    assert_eq!(error.status.as_u16(), 503);
    // Refused reads gave back what they had taken.
    assert_eq!(budget.held(), 100 * KIB);
    drop(first);
    assert_eq!((budget.held_by(&a1), budget.held()), ((20 * KIB, 0), 60 * KIB));
    drop((second, third));
    assert_eq!(budget.held(), 0);
    assert!(budget.lock().teams.is_empty());
    // Local mode's one tenant may use the whole budget.
    let local = BodyOwner::local();
    let (one, two) =
        (read(body(40 * KIB, true, &budget), &server, &local), read(body(40 * KIB, true, &budget), &server, &local));
    let (one, two) = tokio::join!(one, two);
    assert!(one.is_ok() && two.is_ok());
    assert_eq!(budget.held(), 80 * KIB);
}

#[tokio::test(start_paused = true)]
async fn a_chunk_gets_bytes_given_back_while_it_waits() {
    let budget = BodyBudget::new(100 * KIB);
    let server = shared(40 * KIB, 60 * KIB, 40 * KIB);
    let a1 = BodyOwner::caller("a", "a1");
    let first = read(body(40 * KIB, true, &budget), &server, &a1).await.unwrap();
    let started = Instant::now();
    let waiting = tokio::spawn({
        let (server, budget, a1) = (server.clone(), budget.clone(), a1.clone());
        async move { read(body(10 * KIB, true, &budget), &server, &a1).await.map(|b| b.len()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(first);
    assert_eq!(waiting.await.unwrap().unwrap(), 10 * KIB);
    assert!(started.elapsed() < BUDGET_WAIT, "served when room was given back, {:?}", started.elapsed());
}

#[tokio::test(start_paused = true)]
async fn what_parsing_built_is_charged_to_the_budget_with_the_body() {
    let budget = BodyBudget::new(100 * KIB);
    let server = shared(64 * KIB, 100 * KIB, 100 * KIB);
    let local = BodyOwner::local();
    let mut parsed = read(body(10 * KIB, true, &budget), &server, &local).await.unwrap();
    parsed.charge(50 * KIB).await.unwrap();
    assert_eq!(budget.held(), 60 * KIB);
    // Another body's parse finds no room: turned away rather than overdrawn.
    let mut other = read(body(10 * KIB, true, &budget), &server, &local).await.unwrap();
    let error = other.charge(40 * KIB).await.unwrap_err();
    assert_eq!((error.status.as_u16(), error.code), (503, "server_busy"));
    assert_eq!(budget.held(), 70 * KIB);
    // The charge goes back with the body.
    drop(parsed);
    drop(other);
    assert_eq!(budget.held(), 0);
    // A tenant's body and its parse hold at most the caller key's share, so it always fits.
    let server = shared(20 * KIB, 60 * KIB, 40 * KIB);
    let a1 = BodyOwner::caller("a", "a1");
    let mut parsed = read(body(10 * KIB, true, &budget), &server, &a1).await.unwrap();
    parsed.charge(100 * KIB).await.unwrap();
    assert_eq!(budget.held_by(&a1), (40 * KIB, 40 * KIB));
    let error = read(body(KIB, true, &budget), &server, &a1).await.err().unwrap();
    assert_eq!(error.status.as_u16(), 429);
}

/// Reads `body` in paused time; what it answered and how long (virtual) it took.
async fn timed(body: ApiBody, server: &ServerConfig) -> (Result<usize, ApiError>, Duration) {
    let started = Instant::now();
    let result = read(body, server, &BodyOwner::caller("a", "a1")).await.map(|b| b.len());
    (result, started.elapsed())
}

fn assert_cut(result: (Result<usize, ApiError>, Duration), after_secs: u64, says: &str) {
    let (result, elapsed) = result;
    let error = result.expect_err("cut");
    assert_eq!((error.status.as_u16(), error.code), (408, "body_timeout"));
    assert!(error.message.contains(says), "{}", error.message);
    let after = Duration::from_secs(after_secs);
    assert!(elapsed >= after && elapsed < after + Duration::from_millis(100), "cut after {elapsed:?}, not {after:?}");
}

/// Sends `chunks` (at seconds from now) then keeps the body open, sending nothing more, until
/// `open_secs`.
fn feed(sender: tokio::sync::mpsc::UnboundedSender<Bytes>, chunks: Vec<(u64, usize)>, open_secs: u64) {
    let started = Instant::now();
    tokio::spawn(async move {
        for (at, bytes) in chunks {
            tokio::time::sleep_until(started + Duration::from_secs(at)).await;
            let _ = sender.send(spaces(bytes));
        }
        tokio::time::sleep_until(started + Duration::from_secs(open_secs)).await;
        drop(sender);
    });
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_starts_is_cut_at_the_first_byte_timeout() {
    let budget = BodyBudget::new(100 * KIB);
    let server = shared(64 * KIB, 100 * KIB, 100 * KIB);
    let (silent, sender) = fed(Some(20 * KIB), &budget);
    feed(sender, vec![], 120);
    assert_cut(timed(silent, &server).await, 10, "body_first_byte_timeout_secs");
}

#[tokio::test(start_paused = true)]
async fn a_body_slower_than_the_minimum_rate_is_cut_after_one_window() {
    let budget = BodyBudget::new(100 * KIB);
    let server = shared(64 * KIB, 100 * KIB, 100 * KIB);
    // 512 bytes a second from t = 2 s: the window from the first byte (2..7 s) brings 2.5 KiB of 5.
    let (trickle, sender) = fed(Some(60 * KIB), &budget);
    feed(sender, (2..60).map(|at| (at, 512)).collect(), 120);
    assert_cut(timed(trickle, &server).await, 7, "min_body_bytes_per_sec");
    assert_eq!(budget.held(), 0, "what it held went back");
    // A burst, then nothing: the first window is kept, the second is not.
    let (stalled, sender) = fed(Some(60 * KIB), &budget);
    feed(sender, vec![(0, 20 * KIB)], 120);
    assert_cut(timed(stalled, &server).await, 10, "min_body_bytes_per_sec");
    // A small body owes what it declared within a window: 1 KiB, then the other 2 after 6 s.
    let (late, sender) = fed(Some(3 * KIB), &budget);
    feed(sender, vec![(0, KIB), (6, 2 * KIB)], 120);
    assert_cut(timed(late, &server).await, 5, "min_body_bytes_per_sec");
    // With no minimum rate, only the whole-body timeout cuts a trickle.
    let mut unpaced = server.clone();
    unpaced.min_body_bytes_per_sec = 0;
    let (trickle, sender) = fed(Some(60 * KIB), &budget);
    feed(sender, (0..100).map(|at| (at, 100)).collect(), 120);
    assert_cut(timed(trickle, &unpaced).await, 60, "body_read_timeout_secs");
}

#[tokio::test(start_paused = true)]
async fn bodies_that_keep_the_pace_are_read_whole() {
    let budget = BodyBudget::new(100 * KIB);
    let server = shared(64 * KIB, 100 * KIB, 100 * KIB);
    // 2 KiB a second for 20 s, after a first byte at 9 s.
    let (steady, sender) = fed(None, &budget);
    feed(sender, (9..29).map(|at| (at, 2 * KIB)).collect(), 29);
    let (result, _) = timed(steady, &server).await;
    assert_eq!(result.unwrap(), 40 * KIB);
    // A small body whose rest comes within the window.
    let (small, sender) = fed(Some(3 * KIB), &budget);
    feed(sender, vec![(0, KIB), (4, 2 * KIB)], 4);
    assert_eq!(timed(small, &server).await.0.unwrap(), 3 * KIB);
}

#[test]
fn time_the_gateway_kept_a_body_waiting_is_not_counted_against_it() {
    let server = shared(64 * KIB, 100 * KIB, 100 * KIB);
    let start = Instant::now();
    let at = |secs: u64| start + Duration::from_secs(secs);
    let mut pace = Pace::new(&server, Some(60 * KIB as u64), start);
    pace.arrived(at(0), KIB);
    assert!(pace.check(at(5)).is_err(), "1 KiB in a 5 s window is too slow");
    let mut pace = Pace::new(&server, Some(60 * KIB as u64), start);
    pace.arrived(at(0), KIB);
    // The budget kept it waiting until 4 s: its window starts again then.
    pace.restart(at(4));
    assert!(pace.check(at(8)).is_ok());
    assert_eq!(pace.deadline(), at(9));
    assert!(pace.check(at(9)).is_err());
}
