//! Session policy figures: how many models fit STS's 2,048 characters in the exact and the
//! compact form, and what a scope's policy costs per `/v1/credentials` request: the scope's routes
//! from the routing policy, then the document and its digest, or a lookup in the broker's cache of
//! built policies.
//!
//! ```text
//! cargo run --release --example bench_session_policy -- --iterations 20000
//! ```

use std::time::Instant;

use clap::Parser;

use byollm::bedrock_iam::{self, Form, Target};
use byollm::broker::session_policy;
use byollm::config::Config;
use byollm::routing::policy::MapSecrets;
use byollm::routing::{Mode, RoutingPolicy};

#[derive(Parser)]
struct Args {
    /// Policies built per timed case.
    #[arg(long, default_value_t = 20_000)]
    iterations: u32,
}

const ACCOUNT: &str = "111111111111";

fn chars(targets: &[Target], form: Form) -> usize {
    let statements = bedrock_iam::statements(targets, form).map(|s| s.statements).unwrap_or_default();
    let statements: Vec<_> = statements
        .into_iter()
        .map(|mut s| {
            if let Some(map) = s.as_object_mut() {
                map.remove("Sid");
            }
            s
        })
        .collect();
    bedrock_iam::document(statements).to_string().chars().count()
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let max = session_policy::max_chars();
    println!("# bench_session_policy: STS limit {max} characters");

    // 1. Sizes: the catalog's models as global profiles, then as US profiles, from one region.
    let catalog = &byollm::models::catalog().models;
    for prefix in ["global", "us"] {
        println!("\n{prefix}. profiles from us-east-1: models, exact chars, compact chars, form used");
        let mut targets = Vec::new();
        for entry in catalog.iter().filter(|e| e.profiles.iter().any(|p| p == prefix)) {
            targets.push(Target {
                id: format!("{prefix}.{}", entry.base_id),
                region: "us-east-1".into(),
                account: ACCOUNT.into(),
                wraps: None,
            });
            let form = match session_policy::build(&targets) {
                Ok(policy) => format!("{:?}", policy.form),
                Err(error) => format!("refused ({error})").chars().take(40).collect(),
            };
            println!(
                "{:>3} {:>6} {:>6}  {form}",
                targets.len(),
                chars(&targets, Form::Exact),
                chars(&targets, Form::Compact)
            );
        }
    }

    // 2. Cost per request: the scope's routes from a routing policy, then the policy.
    let mut models = String::new();
    let ids: Vec<String> = catalog.iter().take(8).map(|e| format!("global.{}", e.base_id)).collect();
    for (i, id) in ids.iter().enumerate() {
        models.push_str(&format!("[models.m{i}]\nid = \"{id}\"\n"));
    }
    let config = Config::from_toml(&format!(
        "dev = true\n[[teams]]\nuid = \"acme\"\nrole_arn = \"arn:aws:iam::{ACCOUNT}:role/r\"\n{models}\n[routing.teams.acme.agents.small]\nmodels = [\"m0\", \"m1\"]\n[[teams.agents]]\nname = \"small\"\nrole_arn = \"arn:aws:iam::{ACCOUNT}:role/s\"\n"
    ))
    .map_err(|e| e.to_string())?;
    let routing = RoutingPolicy::from_config(&config, Mode::Hosted, &MapSecrets(Default::default()))
        .map_err(|e| format!("{e:?}"))?;
    println!("\nper request ({} iterations): scope, form, chars, µs per policy", args.iterations);
    for (label, agent) in [("agent with 2 models", Some("small")), ("team with 8 models", None)] {
        let mut last = None;
        let started = Instant::now();
        for _ in 0..args.iterations {
            let routes = session_policy::scope_routes(&config, &routing, "acme", agent);
            let targets = session_policy::targets(&routes, "us-east-1", ACCOUNT);
            last = Some(session_policy::build(&targets));
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(args.iterations);
        let started = Instant::now();
        for _ in 0..args.iterations {
            let routes = session_policy::scope_routes(&config, &routing, "acme", agent);
            std::hint::black_box(session_policy::targets(&routes, "us-east-1", ACCOUNT));
        }
        let routes_micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(args.iterations);
        match last {
            Some(Ok(policy)) => println!(
                "{label:<22} {:?} {:>5} {micros:>8.1} (of which the scope's routes {routes_micros:.1})",
                policy.form,
                policy.chars()
            ),
            other => println!("{label:<22} {other:?}"),
        }
        // What a request pays with the broker's cache of built policies (the same scope again).
        let cache = session_policy::PolicyCache::default();
        let started = Instant::now();
        for _ in 0..args.iterations {
            let routes = session_policy::scope_routes(&config, &routing, "acme", agent);
            let targets = session_policy::targets(&routes, "us-east-1", ACCOUNT);
            std::hint::black_box(cache.get_or_build(targets).is_ok());
        }
        let cached = started.elapsed().as_secs_f64() * 1e6 / f64::from(args.iterations);
        println!("{:<22} with the policy cache: {cached:.1} µs per request", "");
    }
    Ok(())
}
