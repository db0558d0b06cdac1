# terraform test, offline: this module has no provider and no resources.
# The shapes asserted here are those contracts.md fixes for byollm's trust policies.

variables {
  partition         = "aws"
  account_id        = "123456789012"
  oidc_provider_arn = "arn:aws:iam::123456789012:oidc-provider/issuer.example.com/byollm"
  issuer_url        = "https://issuer.example.com/byollm"
  team_uid          = "acme"
  model_ids         = ["global.anthropic.claude-sonnet-4-5-20250929-v1:0"]
  regions           = ["us-east-1"]
}

run "team_role_without_session_tags" {
  command = apply

  assert {
    condition = jsondecode(output.trust_policy) == {
      Version = "2012-10-17"
      Statement = [{
        Sid       = "ByollmWebIdentity"
        Effect    = "Allow"
        Principal = { Federated = "arn:aws:iam::123456789012:oidc-provider/issuer.example.com/byollm" }
        Action    = "sts:AssumeRoleWithWebIdentity"
        Condition = {
          StringEquals = { "issuer.example.com/byollm:aud" = "sts.amazonaws.com" }
          StringLike   = { "issuer.example.com/byollm:sub" = "scoped_principal:acme/*" }
        }
      }]
    }
    error_message = "untagged team trust policy: ${output.trust_policy}"
  }
}

run "team_role_with_session_tags_refuses_agent_tokens" {
  command = apply
  variables {
    session_tags = true
  }

  assert {
    condition     = jsondecode(output.trust_policy).Statement[0].Action == ["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"]
    error_message = "tagged trust policy must allow TagSession and SetSourceIdentity: ${output.trust_policy}"
  }
  assert {
    condition = jsondecode(output.trust_policy).Statement[0].Condition == {
      StringEquals = { "issuer.example.com/byollm:aud" = "sts.amazonaws.com", "aws:RequestTag/team" = "acme" }
      StringLike   = { "issuer.example.com/byollm:sub" = "scoped_principal:acme/*" }
      Null         = { "aws:RequestTag/agent" = "true" }
    }
    error_message = "tagged team role conditions: ${output.trust_policy}"
  }
}

run "agent_role_with_session_tags_requires_its_agent" {
  command = apply
  variables {
    session_tags = true
    agent        = "reviewer"
  }

  assert {
    condition = jsondecode(output.trust_policy).Statement[0].Condition == {
      StringEquals = {
        "issuer.example.com/byollm:aud" = "sts.amazonaws.com"
        "aws:RequestTag/team"           = "acme"
        "aws:RequestTag/agent"          = "reviewer"
      }
      StringLike = { "issuer.example.com/byollm:sub" = "scoped_principal:acme/*" }
    }
    error_message = "tagged agent role conditions: ${output.trust_policy}"
  }
}

run "partition_is_not_hard_coded" {
  command = apply
  variables {
    partition         = "aws-cn"
    oidc_provider_arn = "arn:aws-cn:iam::123456789012:oidc-provider/issuer.example.com/byollm"
    model_ids         = ["anthropic.claude-3-5-haiku-20241022-v1:0"]
    regions           = ["cn-north-1"]
  }

  assert {
    condition     = jsondecode(output.permissions_policy).Statement[0].Resource == ["arn:aws-cn:bedrock:cn-north-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0"]
    error_message = "resources must use the given partition: ${output.permissions_policy}"
  }
}

run "actor_and_principal_scopes" {
  command = apply
  variables {
    subject_scope = { actor_type = "service_account", principal_uid = "svc-1" }
  }

  assert {
    condition     = output.subject_pattern == "scoped_principal:acme/service_account:svc-1"
    error_message = "principal scope pattern: ${output.subject_pattern}"
  }
}

run "wildcards_and_bad_uids_are_refused" {
  command = plan
  variables {
    team_uid  = "acme/*"
    model_ids = ["*"]
    regions   = ["*"]
    agent     = "a:b"
  }
  expect_failures = [var.team_uid, var.model_ids, var.regions, var.agent]
}

run "bad_account_partition_and_provider_arn_are_refused" {
  command = plan
  variables {
    account_id        = "12345"
    partition         = "azure"
    oidc_provider_arn = "arn:aws:iam::123456789012:role/not-a-provider"
    issuer_url        = "https://issuer.example.com/"
  }
  expect_failures = [var.account_id, var.partition, var.oidc_provider_arn, var.issuer_url]
}

run "a_provider_for_another_issuer_is_refused" {
  command = plan
  variables {
    oidc_provider_arn = "arn:aws:iam::123456789012:oidc-provider/other.example.com"
  }
  expect_failures = [output.trust_policy]
}

run "a_provider_of_another_account_is_refused" {
  command = plan
  variables {
    oidc_provider_arn = "arn:aws:iam::210987654321:oidc-provider/issuer.example.com/byollm"
  }
  expect_failures = [output.trust_policy]
}

run "a_geographic_profile_needs_a_region_of_its_geography" {
  command = plan
  variables {
    model_ids = ["eu.anthropic.claude-sonnet-4-20250514-v1:0"]
  }
  expect_failures = [output.permissions_policy]
}
