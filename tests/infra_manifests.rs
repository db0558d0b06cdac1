//! Checks that the deployment manifests and the customer-side infrastructure agree with the
//! binary and with `byollm::aws_setup`: ports, probe paths, the embedded `byollm.toml`, and the
//! trust policy Terraform and CloudFormation build.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use byollm::aws_setup::{SetupInput, SubjectScope, generate, subject_pattern};
use byollm::principal::{ActorType, Uid};
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
    for (file, doc) in &docs {
        walk(doc, &mut |key, value| {
            if let (true, Some(port)) =
                (matches!(key, "containerPort" | "port" | "targetPort" | "number"), value.as_u64())
            {
                assert!(port == 8080 || port == 8443, "{file}: {key} {port} is neither 8080 nor 8443");
            }
            if key == "path" {
                let path = value.as_str().unwrap_or_default();
                assert!(
                    path == "/healthz" || path.starts_with("/.well-known/"),
                    "{file}: path {path:?} is neither /healthz nor /.well-known/*"
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
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/healthz", "{probe}");
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

/// The documented sections and fields of byollm.toml.
fn allowed_fields(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "server" => &["listen", "public_listen"],
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
    if let Err(error) = byollm::config::Config::from_toml(text) {
        panic!("the configmap's byollm.toml is refused by the real loader:\n{error}");
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

/// The three `scoped_principal:` templates of a Terraform or CloudFormation file, in the order
/// principal, actor, team, with `${…}` references replaced through `vars`.
fn subject_templates(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("scoped_principal:") {
        let tail = &rest[start..];
        let end = tail.find(['"', '\n', ' ']).unwrap_or(tail.len());
        let mut template = tail[..end].to_owned();
        for (name, value) in vars {
            template = template.replace(&format!("${{{name}}}"), value);
        }
        found.push(template);
        rest = &tail[end..];
    }
    found
}

#[test]
fn terraform_trust_policy_has_the_generators_shape() {
    let main = read(&repo().join("infra/aws/terraform/main.tf"));
    let squeezed: String = main.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(squeezed.contains(r#"issuer_host = trimprefix(var.issuer_url, "https://")"#));
    assert!(squeezed.contains(r#"StringEquals = { "${local.issuer_host}:aud" = var.audience }"#));
    assert!(squeezed.contains(r#"StringLike = { "${local.issuer_host}:sub" = local.subject_pattern }"#));
    assert!(squeezed.contains(r#"Principal = { Federated = local.provider_arn }"#));
    assert!(squeezed.contains(r#"Action = "sts:AssumeRoleWithWebIdentity""#));

    for scope in scopes() {
        let (actor, principal) = match &scope {
            SubjectScope::Team => ("", ""),
            SubjectScope::Actor(a) => (a.as_str(), ""),
            SubjectScope::Principal(a, p) => (a.as_str(), p.as_str()),
        };
        let vars = [
            ("var.team_uid", "abc"),
            ("var.subject_scope.actor_type", actor),
            ("var.subject_scope.principal_uid", principal),
        ];
        let block_start = main.find("subject_pattern = (").expect("subject_pattern local");
        let block =
            &main[block_start..block_start + main[block_start..].find("\n  )\n").expect("end of subject_pattern")];
        let templates = subject_templates(block, &vars);
        assert_eq!(templates.len(), 3, "principal, actor and team templates in main.tf: {templates:?}");
        let chosen = match scope {
            SubjectScope::Principal(..) => &templates[0],
            SubjectScope::Actor(_) => &templates[1],
            SubjectScope::Team => &templates[2],
        };
        let team = Uid::parse("abc").unwrap();
        assert_eq!(chosen, &subject_pattern(&team, &scope));
        let generated = generate(&input(scope)).unwrap().trust_policy;
        let condition = &generated["Statement"][0]["Condition"];
        assert_eq!(condition["StringLike"]["issuer.example.com/byollm:sub"], chosen.as_str());
        assert_eq!(condition["StringEquals"]["issuer.example.com/byollm:aud"], "sts.amazonaws.com");
    }
}

#[test]
fn cloudformation_trust_policy_has_the_generators_shape() {
    let template = read(&repo().join("infra/aws/cloudformation/byollm-customer-role.yaml"));
    let squeezed: String = template.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(squeezed.contains(r#""StringEquals": {"${IssuerHost}:aud": "${Audience}"}"#));
    assert!(squeezed.contains(r#""StringLike": {"${IssuerHost}:sub": "${SubjectPattern}"}"#));
    assert!(squeezed.contains(r#"IssuerHost: !Select [1, !Split ["https://", !Ref IssuerUrl]]"#));
    let team = Uid::parse("abc").unwrap();
    for scope in scopes() {
        let (actor, principal) = match &scope {
            SubjectScope::Team => ("", ""),
            SubjectScope::Actor(a) => (a.as_str(), ""),
            SubjectScope::Principal(a, p) => (a.as_str(), p.as_str()),
        };
        let vars = [("TeamUid", "abc"), ("SubjectActorType", actor), ("SubjectPrincipalUid", principal)];
        let templates = subject_templates(&template, &vars);
        let chosen = match scope {
            SubjectScope::Principal(..) => &templates[templates.len() - 3],
            SubjectScope::Actor(_) => &templates[templates.len() - 2],
            SubjectScope::Team => &templates[templates.len() - 1],
        };
        assert_eq!(chosen, &subject_pattern(&team, &scope));
    }
    // The parameters the generator emits are exactly the template's parameters.
    let params = generate(&input(SubjectScope::Team)).unwrap().cfn_parameters;
    for p in params.as_array().unwrap() {
        let key = p["ParameterKey"].as_str().unwrap();
        assert!(squeezed.contains(&format!(" {key}: Type:")), "cfn template has no parameter {key}");
    }
}

/// Evaluate the Terraform module's locals with the real terraform binary (no provider, no
/// network: the data sources are replaced by literals) and compare both policies with the
/// generator's. Skipped when terraform is not installed.
#[test]
fn terraform_locals_evaluate_to_the_generators_policies() {
    if Command::new("terraform").arg("version").output().is_err() {
        eprintln!("skip: terraform is not installed");
        return;
    }
    let main = read(&repo().join("infra/aws/terraform/main.tf"));
    let start = main.find("\nlocals {").expect("locals block") + 1;
    let end = start + main[start..].find("\n}\n").expect("end of locals") + 3;
    let locals = main[start..end]
        .replace("data.aws_caller_identity.current.account_id", "\"123456789012\"")
        .replace("data.aws_partition.current.partition", "\"aws\"")
        .replace(
            "aws_iam_openid_connect_provider.byollm[0].arn",
            "\"arn:aws:iam::123456789012:oidc-provider/${local.issuer_host}\"",
        );
    let trust_start =
        main.find("assume_role_policy = jsonencode(").expect("trust policy") + "assume_role_policy = ".len();
    let trust_end = trust_start + main[trust_start..].find("\n  })\n").expect("end of trust policy") + 5;
    let trust = &main[trust_start..trust_end];

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("infra/aws/terraform/variables.tf"), dir.path().join("variables.tf")).unwrap();
    let outputs = format!(
        "{locals}\noutput \"trust\" {{\n  value = {trust}\n}}\noutput \"perms\" {{\n  value = jsonencode({{ Version = \"2012-10-17\", Statement = local.permission_statements }})\n}}\n"
    );
    std::fs::write(dir.path().join("main.tf"), outputs).unwrap();
    for scope in scopes() {
        let input = input(scope);
        let out = generate(&input).unwrap();
        std::fs::write(dir.path().join("terraform.tfvars"), &out.tfvars).unwrap();
        let run = |args: &[&str]| {
            let output = Command::new("terraform")
                .args(args)
                .current_dir(dir.path())
                .env("TF_IN_AUTOMATION", "1")
                .env("CHECKPOINT_DISABLE", "1")
                .output()
                .unwrap();
            assert!(output.status.success(), "terraform {args:?}: {}", String::from_utf8_lossy(&output.stderr));
            String::from_utf8(output.stdout).unwrap()
        };
        run(&["init", "-input=false", "-backend=false"]);
        run(&["apply", "-input=false", "-auto-approve", "-lock=false"]);
        let trust: Value = serde_json::from_str(&run(&["output", "-raw", "trust"])).unwrap();
        let perms: Value = serde_json::from_str(&run(&["output", "-raw", "perms"])).unwrap();
        assert_eq!(trust, out.trust_policy, "trust policy differs for {:?}", input.scope);
        assert_eq!(perms, out.permissions_policy, "permissions policy differs");
    }
}
