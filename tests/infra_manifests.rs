//! Checks that the deployment manifests and the customer-side infrastructure agree with the
//! binary and with `byollm::ops::aws_setup`: ports, probe paths, the embedded `byollm.toml`, and the
//! trust policy Terraform and CloudFormation build.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use byollm::ops::aws_setup::{SetupInput, SubjectScope, generate, subject_pattern};
use byollm::principal::{ActorType, Uid};
use byollm_testkit::not_run::not_run;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every document of every YAML file under infra/deploy/k8s, as JSON values.
fn k8s_documents() -> Vec<(String, Value)> {
    let dir = repo().join("infra/deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "expected the k8s manifests in {}", dir.display());
    let mut docs = Vec::new();
    for file in files {
        let text = read(&file);
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value: Value =
                serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if !value.is_null() {
                docs.push((file.file_name().unwrap().to_string_lossy().into_owned(), value));
            }
        }
    }
    docs
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Visit every (key, value) pair in a JSON tree.
fn walk<'a>(value: &'a Value, visit: &mut dyn FnMut(&'a str, &'a Value)) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                visit(k, v);
                walk(v, visit);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| walk(v, visit)),
        _ => {}
    }
}

#[test]
fn manifests_reference_only_the_binarys_ports_and_paths() {
    let docs = k8s_documents();
    // NetworkPolicy egress names DNS and HTTPS ports; it is checked on its own below.
    for (file, doc) in docs.iter().filter(|(_, d)| d["kind"] != "NetworkPolicy") {
        walk(doc, &mut |key, value| {
            if let (true, Some(port)) =
                (matches!(key, "containerPort" | "port" | "targetPort" | "number"), value.as_u64())
            {
                assert!(port == 8080 || port == 8443, "{file}: {key} {port} is neither 8080 nor 8443");
            }
            if key == "path" {
                let path = value.as_str().unwrap_or_default();
                assert!(
                    path == "/healthz" || path == "/livez" || path.starts_with("/.well-known/"),
                    "{file}: path {path:?} is neither /healthz, /livez nor /.well-known/*"
                );
            }
        });
    }
}

#[test]
fn deployment_is_hardened_and_probes_the_internal_port() {
    let docs = k8s_documents();
    let deployment = find(&docs, "Deployment", "byollm");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["args"], serde_json::json!(["serve", "--config", "/etc/byollm/byollm.toml"]));
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    // The shared limits' Redis URL comes from a Secret, never a literal in the manifest.
    let redis = container["env"].as_array().unwrap().iter().find(|e| e["name"] == "BYOLLM_LIMITS__REDIS_URL");
    let redis = redis.expect("the Redis wiring for limits shared by replicas");
    assert_eq!(redis["valueFrom"]["secretKeyRef"]["name"], "byollm-redis");
    assert!(redis.get("value").is_none());
    for (probe, path) in [("readinessProbe", "/healthz"), ("livenessProbe", "/livez")] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], 8080, "{probe}");
    }
    let ports: BTreeSet<u64> =
        container["ports"].as_array().unwrap().iter().map(|p| p["containerPort"].as_u64().unwrap()).collect();
    assert_eq!(ports, BTreeSet::from([8080, 8443]));
    let mounts = container["volumeMounts"].as_array().unwrap();
    let jwks = mounts.iter().find(|m| m["mountPath"] == "/etc/byollm/jwks").expect("jwks mount");
    assert_eq!(jwks["readOnly"], true);
    assert!(jwks.get("subPath").is_none(), "a subPath mount would never see secret updates");
    assert!(mounts.iter().all(|m| m["readOnly"] == true), "every mount is read-only");
    // Sized from the measured peak RSS (13–22 MiB, README "Performance") with room for bodies in flight.
    let mebibytes =
        |v: &Value| v.as_str().and_then(|m| m.strip_suffix("Mi")).and_then(|m| m.parse::<u64>().ok()).unwrap();
    let (request, limit) = (
        mebibytes(&container["resources"]["requests"]["memory"]),
        mebibytes(&container["resources"]["limits"]["memory"]),
    );
    assert!(request >= 32 && limit >= request + 2 * 20, "request {request} Mi, limit {limit} Mi");

    let pdb = find(&docs, "PodDisruptionBudget", "byollm");
    assert_eq!(pdb["spec"]["minAvailable"], 2);
}

#[test]
fn only_the_discovery_documents_are_public() {
    let docs = k8s_documents();
    let public = find(&docs, "Service", "byollm-public");
    let ports: Vec<u64> =
        public["spec"]["ports"].as_array().unwrap().iter().map(|p| p["targetPort"].as_u64().unwrap()).collect();
    assert_eq!(ports, [8443]);
    let internal = find(&docs, "Service", "byollm-internal");
    assert_eq!(internal["spec"]["type"], "ClusterIP");
    let ingress = find(&docs, "Ingress", "byollm-public");
    let mut paths = BTreeSet::new();
    walk(ingress, &mut |key, value| {
        if key == "path" {
            paths.insert(value.as_str().unwrap().to_owned());
        }
        if key == "name" && value == "byollm-internal" {
            panic!("the ingress must not route to byollm-internal");
        }
    });
    let expected: BTreeSet<String> =
        ["/.well-known/jwks.json", "/.well-known/openid-configuration"].map(str::to_owned).into();
    assert_eq!(paths, expected);
    assert!(ingress["spec"]["tls"].as_array().is_some_and(|t| !t.is_empty()), "the issuer is served over tls");
}

fn configmap_toml(docs: &[(String, Value)]) -> toml::Table {
    let config = find(docs, "ConfigMap", "byollm-config");
    toml::from_str(config["data"]["byollm.toml"].as_str().unwrap()).unwrap()
}

/// The server-side limit on a stream's silence, read from the code that enforces it.
fn stream_idle_secs() -> u64 {
    let pattern = regex::Regex::new(r"STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs\((\d+)\)").unwrap();
    let mut found = None;
    let mut stack = vec![repo().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(c) = pattern.captures(&read(&path)) {
                found = Some(c[1].parse().unwrap());
            }
        }
    }
    found.expect("STREAM_IDLE_TIMEOUT not found in src/: update this test to where the stream idle limit lives")
}

#[test]
fn rollouts_let_the_longest_stream_finish() {
    let docs = k8s_documents();
    let deployment = find(&docs, "Deployment", "byollm");
    let pod = &deployment["spec"]["template"]["spec"];
    let config = configmap_toml(&docs);
    let request_timeout =
        config["server"]["request_timeout_secs"].as_integer().expect("request_timeout_secs set") as u64;
    let pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().expect("preStop sleep");
    assert!(pre_stop >= 5, "endpoint removal needs a few seconds to propagate");
    let grace = pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
    let needed = pre_stop + request_timeout + stream_idle_secs();
    assert!(
        grace >= needed,
        "grace period {grace}s < preStop {pre_stop}s + request timeout {request_timeout}s + stream idle"
    );
    let rolling = &deployment["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(rolling["maxUnavailable"], 0, "rollouts never drop below the replica count");
}

#[test]
fn replicas_spread_over_zones_and_the_image_is_pinned() {
    let docs = k8s_documents();
    let deployment = find(&docs, "Deployment", "byollm");
    let pod = &deployment["spec"]["template"]["spec"];
    let zone = pod["topologySpreadConstraints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["topologyKey"] == "topology.kubernetes.io/zone")
        .expect("a zone spread");
    assert_eq!(zone["maxSkew"], 1);
    assert_eq!(zone["labelSelector"]["matchLabels"]["app.kubernetes.io/name"], "byollm");
    let pdb = find(&docs, "PodDisruptionBudget", "byollm");
    assert!(pdb["spec"]["minAvailable"].as_u64().unwrap() < deployment["spec"]["replicas"].as_u64().unwrap());
    let image = pod["containers"][0]["image"].as_str().unwrap();
    let pinned = regex::Regex::new(r"@sha256:[0-9a-f]{64}$").unwrap();
    assert!(pinned.is_match(image), "image {image} is not pinned by digest");
}

#[test]
fn network_policy_denies_by_default_and_allows_only_the_documented_flows() {
    let docs = k8s_documents();
    let deny = find(&docs, "NetworkPolicy", "default-deny");
    assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}), "applies to every pod of the namespace");
    assert_eq!(deny["spec"]["policyTypes"], serde_json::json!(["Ingress", "Egress"]));
    assert!(deny["spec"].get("ingress").is_none() && deny["spec"].get("egress").is_none(), "allows nothing");

    let allow = find(&docs, "NetworkPolicy", "byollm");
    assert_eq!(allow["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "byollm");
    let ports = |rule: &Value| -> Vec<(u64, String)> {
        rule["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["port"].as_u64().unwrap(), p["protocol"].as_str().unwrap_or("TCP").to_owned()))
            .collect()
    };
    let ingress = allow["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 2, "public and internal listeners only");
    for rule in ingress {
        let from = rule["from"].as_array().unwrap();
        assert!(!from.is_empty(), "every ingress rule names its sources");
        for peer in from {
            assert!(peer.get("ipBlock").is_none(), "ingress is by namespace/pod, not address");
            assert!(peer["namespaceSelector"]["matchLabels"].is_object(), "a named namespace, never all");
        }
        match ports(rule).as_slice() {
            [(8443, _)] => {
                assert_eq!(from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "ingress-nginx")
            }
            [(8080, _)] => {
                assert!(from[0]["podSelector"]["matchLabels"].is_object(), "internal listener: worker pods only");
            }
            other => panic!("unexpected ingress ports {other:?}"),
        }
    }
    let egress = allow["spec"]["egress"].as_array().unwrap();
    let mut allowed: Vec<(u64, String)> = egress.iter().flat_map(ports).collect();
    allowed.sort();
    allowed.dedup();
    assert_eq!(
        allowed,
        [
            (53, "TCP".to_owned()),
            (53, "UDP".to_owned()),
            (443, "TCP".to_owned()),
            (6379, "TCP".to_owned()),
            (6380, "TCP".to_owned())
        ]
    );
    for rule in egress {
        if ports(rule).iter().any(|(p, _)| *p == 6379) {
            let peer = &rule["to"][0];
            assert!(peer.get("ipBlock").is_none(), "Redis by namespace and pod, not address");
            assert_eq!(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "redis", "Redis pods only");
            assert!(peer["namespaceSelector"]["matchLabels"].is_object(), "a named namespace, never all");
        } else if ports(rule).iter().any(|(p, _)| *p == 443) {
            let block = &rule["to"][0]["ipBlock"];
            let except: Vec<&str> = block["except"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            assert!(except.contains(&"169.254.0.0/16"), "never the instance metadata service");
            assert!(except.contains(&"10.0.0.0/8"), "not the cluster's private ranges");
        } else {
            assert_eq!(rule["to"][0]["podSelector"]["matchLabels"]["k8s-app"], "kube-dns", "DNS only to the resolver");
        }
    }
}

#[test]
fn only_key_operators_can_read_the_key_secret() {
    let docs = k8s_documents();
    let deployment = find(&docs, "Deployment", "byollm");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "byollm");
    assert_eq!(pod["automountServiceAccountToken"], false);
    let account = find(&docs, "ServiceAccount", "byollm");
    assert_eq!(account["automountServiceAccountToken"], false);
    for (_, doc) in docs.iter().filter(|(_, d)| d["kind"] == "Role" || d["kind"] == "ClusterRole") {
        for rule in doc["rules"].as_array().unwrap() {
            let resources = rule["resources"].to_string();
            if resources.contains("secrets") || resources.contains('*') {
                assert_eq!(
                    rule["resourceNames"],
                    serde_json::json!(["byollm-jwks"]),
                    "{}: secrets only by name",
                    doc["metadata"]["name"]
                );
                let verbs: Vec<&str> = rule["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
                assert!(!verbs.contains(&"list") && !verbs.contains(&"watch") && !verbs.contains(&"*"), "{verbs:?}");
            }
        }
    }
    for (_, binding) in docs.iter().filter(|(_, d)| d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding") {
        for subject in binding["subjects"].as_array().unwrap() {
            assert!(
                !(subject["kind"] == "ServiceAccount" && subject["name"] == "byollm"),
                "the byollm pods need no Kubernetes API access"
            );
        }
    }
}

/// The documented sections and fields of byollm.toml.
fn allowed_fields(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "server" => &["listen", "public_listen", "request_timeout_secs"],
        "issuer" => &["url", "audience", "token_lifetime_secs"],
        "keys" => &["dir", "jwks_max_age_secs", "min_next_age_secs", "retired_grace_secs", "reload_interval_secs"],
        "sts" => &["region"],
        "callers" => &["name", "key_sha256", "team", "actors", "principals"],
        "teams" => &["uid", "role_arn", "region", "agents"],
        "teams.agents" => &["name", "role_arn"],
        "models.*" => &["id"],
        _ => return None,
    })
}

fn check_fields(section: &str, table: &toml::Table) {
    let allowed = allowed_fields(section).unwrap_or_else(|| panic!("unknown section [{section}]"));
    for key in table.keys() {
        assert!(allowed.contains(&key.as_str()), "unknown field {key:?} in [{section}]");
    }
}

#[test]
fn configmap_embeds_a_byollm_toml_with_only_known_sections() {
    let docs = k8s_documents();
    let config = find(&docs, "ConfigMap", "byollm-config");
    let text = config["data"]["byollm.toml"].as_str().expect("byollm.toml in the configmap");
    let parsed: toml::Table = toml::from_str(text).expect("byollm.toml parses");
    match byollm::config::Config::from_toml(text) {
        Err(error) => panic!("the configmap's byollm.toml is refused by the real loader:\n{error}"),
        // An id the catalog does not know would run under conservative rules with a warning.
        Ok(loaded) => {
            assert!(loaded.warnings.is_empty(), "the configmap's models draw warnings: {:?}", loaded.warnings)
        }
    }
    for (section, value) in &parsed {
        match (section.as_str(), value) {
            ("server" | "issuer" | "keys" | "sts", toml::Value::Table(t)) => check_fields(section, t),
            ("callers" | "teams", toml::Value::Array(items)) => {
                for item in items {
                    let t = item.as_table().unwrap_or_else(|| panic!("[[{section}]] entries are tables"));
                    check_fields(section, t);
                    if let Some(agents) = t.get("agents") {
                        for agent in agents.as_array().expect("[[teams.agents]]") {
                            check_fields("teams.agents", agent.as_table().unwrap());
                        }
                    }
                }
            }
            ("models", toml::Value::Table(models)) => {
                for model in models.values() {
                    check_fields("models.*", model.as_table().expect("[models.\"name\"] is a table"));
                }
            }
            _ => panic!("unknown or mistyped section {section:?}"),
        }
    }
    assert_eq!(parsed["server"]["listen"].as_str(), Some("0.0.0.0:8080"));
    assert_eq!(parsed["server"]["public_listen"].as_str(), Some("0.0.0.0:8443"));
    assert_eq!(parsed["keys"]["dir"].as_str(), Some("/etc/byollm/jwks"));
    let issuer = parsed["issuer"]["url"].as_str().unwrap();
    assert!(issuer.starts_with("https://") && !issuer.ends_with('/'));
}

// ---------------------------------------------------------------------------------------------
// Customer-side infrastructure: Terraform (oidc-provider, role, modules/policies) and
// CloudFormation (byollm-oidc-provider.yaml, byollm-role.yaml).

fn input(scope: SubjectScope) -> SetupInput {
    SetupInput {
        issuer_url: "https://issuer.example.com/byollm".to_owned(),
        audience: "sts.amazonaws.com".to_owned(),
        team_uid: Uid::parse("abc").unwrap(),
        scope,
        model_ids: vec![
            "anthropic.claude-3-5-haiku-20241022-v1:0".to_owned(),
            "us.anthropic.claude-sonnet-4-20250514-v1:0".to_owned(),
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0".to_owned(),
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123".to_owned(),
        ],
        regions: vec!["us-east-1".to_owned(), "eu-west-1".to_owned()],
        profile_models: Default::default(),
        account_id: Some("123456789012".to_owned()),
        role_name: "byollm-abc".to_owned(),
        max_session_secs: 3600,
        agent: None,
        session_tags: false,
    }
}

fn scopes() -> Vec<SubjectScope> {
    vec![
        SubjectScope::Team,
        SubjectScope::Actor(ActorType::User),
        SubjectScope::Actor(ActorType::ServiceAccount),
        SubjectScope::Principal(ActorType::ServiceAccount, Uid::parse("svc-1").unwrap()),
    ]
}

/// What contracts.md fixes for a role of team `team` (and agent `agent`) with session tags on.
fn contract_tagged_trust(provider: &str, host: &str, team: &str, agent: Option<&str>, sub: &str) -> Value {
    let mut equals = serde_json::json!({ format!("{host}:aud"): "sts.amazonaws.com", "aws:RequestTag/team": team });
    let mut condition = serde_json::json!({ "StringLike": { format!("{host}:sub"): sub } });
    match agent {
        Some(agent) => {
            equals["aws:RequestTag/agent"] = agent.into();
        }
        None => {
            condition["Null"] = serde_json::json!({ "aws:RequestTag/agent": "true" });
        }
    }
    condition["StringEquals"] = equals;
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ByollmWebIdentity",
            "Effect": "Allow",
            "Principal": { "Federated": provider },
            "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"],
            "Condition": condition,
        }],
    })
}

fn terraform_available() -> bool {
    Command::new("terraform").arg("version").output().is_ok_and(|o| o.status.success())
}

/// Run `terraform` in `dir` offline; panics with its stderr on failure.
fn terraform(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .env_remove("TF_CLI_CONFIG_FILE")
        .output()
        .unwrap();
    assert!(output.status.success(), "terraform {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The policies module (no provider, so it runs here) evaluated with the tfvars `byollm aws-setup`
/// prints, compared with the generator's policies; then the session-tags variants with the
/// contract. Not run when terraform is not installed (it cannot be installed from the registries
/// this project's machines reach): a failure under CI unless `.ci/run` declares `terraform`
/// unreachable (`byollm_testkit::not_run`); infra/ci.sh applies the same rule.
#[test]
fn terraform_policies_module_matches_the_generator_and_the_contract() {
    if !terraform_available() {
        not_run("terraform", "terraform is not installed, and no registry this machine reaches ships it");
        return;
    }
    let module = repo().join("infra/aws/terraform/modules/policies");
    let dir = tempfile::tempdir().unwrap();
    let root = format!(
        r#"
variable "issuer_url" {{}}
variable "audience" {{}}
variable "team_uid" {{}}
variable "subject_scope" {{ type = any }}
variable "model_ids" {{ type = list(string) }}
variable "regions" {{ type = list(string) }}
variable "role_name" {{}}
variable "max_session_duration" {{}}
variable "agent" {{
  type    = string
  default = null
}}
variable "session_tags" {{
  type    = bool
  default = false
}}
module "p" {{
  source            = "{module}"
  partition         = "aws"
  account_id        = "123456789012"
  oidc_provider_arn = "arn:aws:iam::123456789012:oidc-provider/${{trimprefix(var.issuer_url, "https://")}}"
  issuer_url        = var.issuer_url
  audience          = var.audience
  team_uid          = var.team_uid
  subject_scope     = var.subject_scope
  model_ids         = var.model_ids
  regions           = var.regions
  agent             = var.agent
  session_tags      = var.session_tags
}}
output "trust" {{ value = module.p.trust_policy }}
output "perms" {{ value = module.p.permissions_policy }}
"#,
        module = module.display()
    );
    std::fs::write(dir.path().join("main.tf"), root).unwrap();
    terraform(dir.path(), &["init", "-input=false", "-backend=false"]);
    let provider = "arn:aws:iam::123456789012:oidc-provider/issuer.example.com/byollm";
    for scope in scopes() {
        let input = input(scope);
        let out = generate(&input).unwrap();
        std::fs::write(dir.path().join("terraform.tfvars"), &out.tfvars).unwrap();
        terraform(dir.path(), &["apply", "-input=false", "-auto-approve", "-lock=false"]);
        let trust: Value = serde_json::from_str(&terraform(dir.path(), &["output", "-raw", "trust"])).unwrap();
        let perms: Value = serde_json::from_str(&terraform(dir.path(), &["output", "-raw", "perms"])).unwrap();
        assert_eq!(trust, out.trust_policy, "trust policy differs for {:?}", input.scope);
        assert_eq!(perms, out.permissions_policy, "permissions policy differs");

        let sub = subject_pattern(&input.team_uid, &input.scope);
        for agent in [None, Some("reviewer")] {
            let mut args = vec!["apply", "-input=false", "-auto-approve", "-lock=false", "-var", "session_tags=true"];
            let agent_var = agent.map(|a| format!("agent={a}"));
            if let Some(agent_var) = &agent_var {
                args.extend(["-var", agent_var.as_str()]);
            }
            terraform(dir.path(), &args);
            let trust: Value = serde_json::from_str(&terraform(dir.path(), &["output", "-raw", "trust"])).unwrap();
            let host = "issuer.example.com/byollm";
            assert_eq!(trust, contract_tagged_trust(provider, host, "abc", agent, &sub), "agent {agent:?}");
        }
    }
}

#[test]
fn terraform_splits_the_account_provider_from_the_roles() {
    let tf = repo().join("infra/aws/terraform");
    let provider = read(&tf.join("oidc-provider/main.tf"));
    let squeezed: String = provider.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(squeezed.contains(r#"resource "aws_iam_openid_connect_provider" "byollm""#));
    assert!(squeezed.contains("lifecycle { prevent_destroy = true }"), "the account-level provider is protected");
    assert!(read(&tf.join("oidc-provider/outputs.tf")).contains(r#"output "arn""#));
    for module in ["role", "modules/policies"] {
        for entry in std::fs::read_dir(tf.join(module)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "tf") {
                let text = read(&path);
                assert!(
                    !text.contains("resource \"aws_iam_openid_connect_provider\""),
                    "{}: a role module must not own the provider",
                    path.display()
                );
                assert!(!text.contains("\"arn:aws:"), "{}: partition hard-coded", path.display());
                assert!(!text.contains("jsonencode(\"{") && !text.contains("<<EOF"), "{}", path.display());
            }
        }
    }
    let role = read(&tf.join("role/variables.tf"));
    assert!(role.contains(r#"variable "oidc_provider_arn""#));
    let main = read(&tf.join("role/main.tf"));
    assert!(main.contains(r#"data "aws_partition" "current""#));
    assert!(main.contains(r#""byollm-${var.team_uid}""#) && main.contains(r#""byollm-${var.team_uid}-${var.agent}""#));
    assert!(main.contains("assume_role_policy   = module.policies.trust_policy"));
    // Every version constraint on hashicorp/aws has a lower and an upper bound.
    let bounded = regex::Regex::new(r#"version\s*=\s*">=\s*[0-9.]+,\s*<\s*[0-9.]+""#).unwrap();
    for module in ["oidc-provider", "role"] {
        let versions = read(&tf.join(module).join("versions.tf"));
        assert!(versions.contains("hashicorp/aws") && bounded.is_match(&versions), "{module}/versions.tf: {versions}");
    }
}

/// A CloudFormation YAML document as JSON, with the short-form tags (`!Ref`, `!Sub`, ...)
/// turned into their long forms.
fn cfn_json(value: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n).unwrap(),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(cfn_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter().map(|(k, v)| (k.as_str().expect("string keys").to_owned(), cfn_json(v))).collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = cfn_json(tagged.value);
            match tag {
                "Ref" => serde_json::json!({ "Ref": inner }),
                "Condition" => serde_json::json!({ "Condition": inner }),
                "GetAtt" => {
                    let parts: Vec<Value> = inner.as_str().unwrap().splitn(2, '.').map(Value::from).collect();
                    serde_json::json!({ "Fn::GetAtt": parts })
                }
                other => serde_json::json!({ format!("Fn::{other}"): inner }),
            }
        }
    }
}

fn cfn_template(name: &str) -> Value {
    let text = read(&repo().join("infra/aws/cloudformation").join(name));
    cfn_json(serde_norway::from_str(&text).unwrap())
}

/// Just enough of CloudFormation (and the LanguageExtensions transform) to evaluate a property:
/// Ref, Fn::If, Fn::Sub, Fn::Join, Fn::Select, Fn::Split, conditions, and Fn::ForEach inside maps.
struct Cfn<'a> {
    template: &'a Value,
    params: std::collections::BTreeMap<String, Value>,
}

const NO_VALUE: &str = "\u{0}no value";

impl<'a> Cfn<'a> {
    fn new(template: &'a Value, given: &[(&str, &str)]) -> Cfn<'a> {
        let mut params = std::collections::BTreeMap::new();
        for (name, spec) in template["Parameters"].as_object().unwrap() {
            let given = given.iter().find(|(k, _)| k == name).map(|(_, v)| v.to_string());
            let raw =
                given.or_else(|| spec.get("Default").map(|d| d.as_str().map(str::to_owned).unwrap_or(d.to_string())));
            let raw = raw.unwrap_or_else(|| panic!("parameter {name} has no default and was not given"));
            let value = if spec["Type"] == "CommaDelimitedList" {
                Value::Array(raw.split(',').map(Value::from).collect())
            } else {
                Value::String(raw)
            };
            params.insert(name.clone(), value);
        }
        params.insert("AWS::Partition".into(), "aws".into());
        params.insert("AWS::AccountId".into(), "123456789012".into());
        params.insert("AWS::NoValue".into(), NO_VALUE.into());
        Cfn { template, params }
    }

    fn condition(&self, name: &str) -> bool {
        let body = &self.template["Conditions"][name];
        assert!(!body.is_null(), "no condition {name}");
        self.truth(body)
    }

    fn truth(&self, v: &Value) -> bool {
        let (f, args) = v.as_object().unwrap().iter().next().unwrap();
        match f.as_str() {
            "Fn::Equals" => self.eval(&args[0]) == self.eval(&args[1]),
            "Fn::Not" => !self.truth(&args[0]),
            "Fn::And" => args.as_array().unwrap().iter().all(|a| self.truth(a)),
            "Fn::Or" => args.as_array().unwrap().iter().any(|a| self.truth(a)),
            "Condition" => self.condition(args.as_str().unwrap()),
            other => panic!("unsupported condition function {other}"),
        }
    }

    fn sub(&self, text: &str, vars: &serde_json::Map<String, Value>) -> String {
        let pattern = regex::Regex::new(r"\$\{([A-Za-z0-9:]+)\}").unwrap();
        pattern
            .replace_all(text, |c: &regex::Captures| {
                let name = &c[1];
                let value = vars.get(name).map(|v| self.eval(v)).or_else(|| self.params.get(name).cloned());
                value.unwrap_or_else(|| panic!("unresolved ${{{name}}}")).as_str().unwrap().to_owned()
            })
            .into_owned()
    }

    fn eval(&self, v: &Value) -> Value {
        match v {
            Value::Array(items) => Value::Array(items.iter().map(|i| self.eval(i)).filter(|i| i != NO_VALUE).collect()),
            Value::Object(map)
                if map.len() == 1
                    && (map.contains_key("Ref")
                        || map.keys().any(|k| k.starts_with("Fn::") && !k.starts_with("Fn::ForEach"))) =>
            {
                let (f, args) = map.iter().next().unwrap();
                match f.as_str() {
                    "Ref" => self.params.get(args.as_str().unwrap()).cloned().unwrap_or_else(|| panic!("ref {args}")),
                    "Fn::If" => {
                        let branch = if self.condition(args[0].as_str().unwrap()) { &args[1] } else { &args[2] };
                        self.eval(branch)
                    }
                    "Fn::Sub" => match args {
                        Value::String(text) => self.sub(text, &serde_json::Map::new()).into(),
                        _ => self.sub(args[0].as_str().unwrap(), args[1].as_object().unwrap()).into(),
                    },
                    "Fn::Join" => {
                        let parts = self.eval(&args[1]);
                        let parts: Vec<&str> = parts.as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
                        parts.join(args[0].as_str().unwrap()).into()
                    }
                    "Fn::Select" => {
                        let list = self.eval(&args[1]);
                        list[args[0].as_u64().unwrap() as usize].clone()
                    }
                    "Fn::Split" => {
                        let text = self.eval(&args[1]);
                        text.as_str().unwrap().split(args[0].as_str().unwrap()).map(Value::from).collect()
                    }
                    other => panic!("unsupported function {other}"),
                }
            }
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (key, value) in map {
                    if key.starts_with("Fn::ForEach::") {
                        let identifier = value[0].as_str().unwrap();
                        let collection = self.eval(&value[1]);
                        for item in collection.as_array().unwrap() {
                            let item = item.as_str().unwrap();
                            for (k, v) in value[2].as_object().unwrap() {
                                let key = k.replace(&format!("${{{identifier}}}"), item);
                                let fragment =
                                    serde_json::to_string(v).unwrap().replace(&format!("${{{identifier}}}"), item);
                                out.insert(key, self.eval(&serde_json::from_str(&fragment).unwrap()));
                            }
                        }
                        continue;
                    }
                    let value = self.eval(value);
                    if value != NO_VALUE {
                        out.insert(key.clone(), value);
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }

    fn role_property(&self, property: &str) -> Value {
        self.eval(&self.template["Resources"]["Role"]["Properties"][property])
    }
}

/// The parameters `byollm aws-setup --format cfn-params` prints, with its IssuerHost (see
/// byollm-role.yaml: a template cannot compute a map key from IssuerUrl) replaced by `host`, so a
/// test can also give the template one that disagrees.
fn cfn_params_of(out: &byollm::ops::aws_setup::SetupOutput, host: &str) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = out
        .cfn_parameters
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["ParameterKey"].as_str().unwrap().to_owned(), p["ParameterValue"].as_str().unwrap().to_owned()))
        .collect();
    let issuer_host = params.iter_mut().find(|(k, _)| k == "IssuerHost").expect("aws-setup prints IssuerHost");
    issuer_host.1 = host.to_owned();
    params
}

/// Every parameter `aws-setup` prints is one the role template declares, every template parameter
/// without a default is printed, and every tfvars key is a variable of the Terraform role module:
/// the three stay one interface.
#[test]
fn aws_setup_outputs_name_only_what_the_templates_declare() {
    let template = cfn_template("byollm-role.yaml");
    let declared = template["Parameters"].as_object().unwrap();
    let variables = read(&repo().join("infra/aws/terraform/role/variables.tf"));
    for agent in [None, Some("reviewer")] {
        let mut input = input(scopes().remove(0));
        input.session_tags = true;
        input.agent = agent.map(|a| byollm::principal::Uid::parse(a).unwrap());
        let out = generate(&input).unwrap();
        let printed: Vec<String> = out
            .cfn_parameters
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["ParameterKey"].as_str().unwrap().to_owned())
            .collect();
        let issuer_host = out.cfn_parameters.as_array().unwrap().iter().find(|p| p["ParameterKey"] == "IssuerHost");
        assert_eq!(issuer_host.unwrap()["ParameterValue"], "issuer.example.com/byollm");
        for key in &printed {
            assert!(declared.contains_key(key), "aws-setup prints {key}, which byollm-role.yaml does not declare");
        }
        for (key, spec) in declared {
            if spec.get("Default").is_none() {
                assert!(printed.contains(key), "byollm-role.yaml needs {key}, which aws-setup does not print");
            }
        }
        for line in out.tfvars.lines() {
            let key = line.split('=').next().unwrap().trim();
            assert!(
                variables.contains(&format!("variable \"{key}\"")),
                "aws-setup's tfvars set {key}, which infra/aws/terraform/role does not declare"
            );
        }
    }
}

#[test]
fn cloudformation_role_trust_policy_is_the_generators_and_the_contracts() {
    let template = cfn_template("byollm-role.yaml");
    let host = "issuer.example.com/byollm";
    let provider = "arn:aws:iam::123456789012:oidc-provider/issuer.example.com/byollm";
    for scope in scopes() {
        let input = input(scope);
        let out = generate(&input).unwrap();
        let params = cfn_params_of(&out, host);
        let given: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let cfn = Cfn::new(&template, &given);
        assert_eq!(cfn.role_property("AssumeRolePolicyDocument"), out.trust_policy, "{:?}", input.scope);
        assert_eq!(cfn.role_property("RoleName"), "byollm-abc");

        // Session tags on: the team role and an agent role, as contracts.md fixes them.
        let sub = subject_pattern(&input.team_uid, &input.scope);
        for agent in [None, Some("reviewer")] {
            let mut tagged = given.clone();
            tagged.retain(|(k, _)| *k != "RoleName");
            tagged.push(("SessionTags", "true"));
            if let Some(agent) = agent {
                tagged.push(("AgentName", agent));
            }
            let cfn = Cfn::new(&template, &tagged);
            assert_eq!(
                cfn.role_property("AssumeRolePolicyDocument"),
                contract_tagged_trust(provider, host, "abc", agent, &sub),
                "agent {agent:?}"
            );
            let expected_name = agent.map_or("byollm-abc".to_owned(), |a| format!("byollm-abc-{a}"));
            assert_eq!(cfn.role_property("RoleName"), expected_name.as_str(), "aws-setup's default role names");
        }
    }
    // An explicit provider ARN is used as given; an IssuerHost that disagrees with IssuerUrl leaves
    // the statement without a principal, which IAM refuses.
    let out = generate(&input(SubjectScope::Team)).unwrap();
    let mut params = cfn_params_of(&out, host);
    params.push((
        "OidcProviderArn".into(),
        "arn:aws-cn:iam::123456789012:oidc-provider/issuer.example.com/byollm".into(),
    ));
    let given: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let trust = Cfn::new(&template, &given).role_property("AssumeRolePolicyDocument");
    assert_eq!(
        trust["Statement"][0]["Principal"]["Federated"],
        "arn:aws-cn:iam::123456789012:oidc-provider/issuer.example.com/byollm"
    );
    let wrong = cfn_params_of(&out, "evil.example.com");
    let given: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let trust = Cfn::new(&template, &given).role_property("AssumeRolePolicyDocument");
    assert!(trust["Statement"][0]["Principal"].as_object().unwrap().is_empty(), "{trust}");
}

/// CloudFormation checks AllowedPattern against a String and against each entry of a
/// CommaDelimitedList; cfn-lint does not check given values, so this does.
fn cfn_allows(template: &Value, name: &str, value: &str) -> bool {
    let spec = &template["Parameters"][name];
    let Some(pattern) = spec["AllowedPattern"].as_str() else {
        return spec["AllowedValues"].as_array().is_none_or(|values| values.iter().any(|v| v == value));
    };
    let pattern = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
    if spec["Type"] == "CommaDelimitedList" {
        value.split(',').all(|v| pattern.is_match(v))
    } else {
        pattern.is_match(value)
    }
}

#[test]
fn cloudformation_parameters_refuse_wildcards_and_bad_uids() {
    let template = cfn_template("byollm-role.yaml");
    for (name, spec) in template["Parameters"].as_object().unwrap() {
        let listed = spec["Type"] == "CommaDelimitedList";
        assert!(
            spec["Type"] == "Number" || spec.get("AllowedPattern").is_some() || spec.get("AllowedValues").is_some(),
            "parameter {name} is not constrained"
        );
        if let Some(default) = spec.get("Default").and_then(Value::as_str) {
            assert!(cfn_allows(&template, name, default), "{name}'s default {default:?} breaks its own pattern");
        }
        if spec["Type"] != "Number" {
            for bad in ["*", "a*", "x/*", "a b", "\"", "${AWS::AccountId}"] {
                assert!(!cfn_allows(&template, name, bad), "{name} accepts {bad:?}");
            }
        }
        if listed {
            assert!(!cfn_allows(&template, name, "ok,*"), "{name}: a wildcard in a later entry");
        }
    }
    for (name, bad) in [
        ("TeamUid", "a".repeat(129)),
        ("TeamUid", "acme/evil".to_owned()),
        ("AgentName", "a:b".to_owned()),
        ("Regions", "us-east-1,US-EAST-1".to_owned()),
        ("OidcProviderArn", "arn:aws:iam::123456789012:role/x".to_owned()),
        ("OidcProviderArn", "arn:aws:iam::12345:oidc-provider/issuer.example.com".to_owned()),
        ("ApplicationInferenceProfileArns", "arn:aws:bedrock:us-east-1:123456789012:foundation-model/x".to_owned()),
        ("InferenceProfileIds", "xx.anthropic.claude".to_owned()),
        ("IssuerUrl", "https://issuer.example.com/".to_owned()),
        ("IssuerHost", "https://issuer.example.com".to_owned()),
    ] {
        assert!(!cfn_allows(&template, name, &bad), "{name} accepts {bad:?}");
    }
    // Everything aws-setup prints for a realistic team passes, and names a real parameter.
    let out = generate(&input(SubjectScope::Principal(ActorType::User, Uid::parse("alice").unwrap()))).unwrap();
    for (name, value) in cfn_params_of(&out, "issuer.example.com/byollm") {
        assert!(template["Parameters"].get(&name).is_some(), "no parameter {name}");
        assert!(cfn_allows(&template, &name, &value), "{name} refuses aws-setup's {value:?}");
    }
    // So do the sample parameter files infra/ci.sh lints with.
    for file in ["team.json", "agent-tagged.json"] {
        let params: Value =
            serde_json::from_str(&read(&repo().join("infra/aws/cloudformation/params").join(file))).unwrap();
        for p in params.as_array().unwrap() {
            let (name, value) = (p["ParameterKey"].as_str().unwrap(), p["ParameterValue"].as_str().unwrap());
            assert!(cfn_allows(&template, name, value), "{file}: {name} = {value:?}");
        }
    }
}

#[test]
fn cloudformation_provider_is_account_level_retained_and_exported() {
    let provider = cfn_template("byollm-oidc-provider.yaml");
    let resource = &provider["Resources"]["OidcProvider"];
    assert_eq!(resource["Type"], "AWS::IAM::OIDCProvider");
    assert_eq!(resource["DeletionPolicy"], "Retain");
    assert_eq!(resource["UpdateReplacePolicy"], "Retain");
    assert!(provider["Outputs"]["ProviderArn"]["Export"]["Name"].is_object(), "exported for other stacks");
    let role = cfn_template("byollm-role.yaml");
    let mut types = Vec::new();
    walk(&role["Resources"], &mut |key, value| {
        if key == "Type" {
            types.push(value.as_str().unwrap_or_default().to_owned());
        }
    });
    assert!(!types.iter().any(|t| t == "AWS::IAM::OIDCProvider"), "a role stack must not own the provider");
    // No partition is written out in what the role stack creates.
    for section in ["Resources", "Outputs"] {
        let text = role[section].to_string();
        assert!(!text.contains("arn:aws:"), "{section} hard-codes the aws partition");
    }
}
