# Needs the hashicorp/aws provider's schema (terraform init must download it); infra/ci.sh runs
# this only when that works and says so when it does not. The policy documents themselves are
# tested offline in ../modules/policies/tests.
mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_iam_openid_connect_provider" {
    defaults = {
      arn            = "arn:aws:iam::123456789012:oidc-provider/issuer.example.com"
      client_id_list = ["sts.amazonaws.com"]
    }
  }
}

variables {
  issuer_url = "https://issuer.example.com"
  team_uid   = "acme"
  model_ids  = ["anthropic.claude-3-5-haiku-20241022-v1:0"]
  regions    = ["us-east-1"]
}

run "team_role_defaults_match_aws_setup" {
  command = plan

  assert {
    condition     = aws_iam_role.byollm.name == "byollm-acme"
    error_message = "team role name"
  }
  assert {
    condition     = jsondecode(aws_iam_role.byollm.assume_role_policy).Statement[0].Principal.Federated == "arn:aws:iam::123456789012:oidc-provider/issuer.example.com"
    error_message = "provider ARN derived from the account, partition and issuer"
  }
}

run "agent_role_name_and_trust" {
  command = plan
  variables {
    agent        = "reviewer"
    session_tags = true
  }

  assert {
    condition     = aws_iam_role.byollm.name == "byollm-acme-reviewer"
    error_message = "agent role name"
  }
  assert {
    condition     = jsondecode(aws_iam_role.byollm.assume_role_policy).Statement[0].Condition.StringEquals["aws:RequestTag/agent"] == "reviewer"
    error_message = "agent tag condition"
  }
}

run "too_long_default_name_is_refused" {
  command = plan
  variables {
    team_uid = "a-team-uid-that-is-long-enough-to-push-the-role-name-past-64"
  }
  expect_failures = [aws_iam_role.byollm]
}
