# Needs the hashicorp/aws provider's schema (terraform init must download it); infra/ci.sh runs
# this only when that works and says so when it does not.
mock_provider "aws" {
  mock_resource "aws_iam_openid_connect_provider" {
    defaults = {
      arn = "arn:aws:iam::123456789012:oidc-provider/issuer.example.com/byollm"
    }
  }
}

variables {
  issuer_url = "https://issuer.example.com/byollm"
}

# plan: prevent_destroy would fail the test's teardown after an apply.
run "provider_for_the_issuer_and_audience" {
  command = plan

  assert {
    condition     = aws_iam_openid_connect_provider.byollm.url == "https://issuer.example.com/byollm"
    error_message = "provider url"
  }
  assert {
    condition     = aws_iam_openid_connect_provider.byollm.client_id_list == ["sts.amazonaws.com"]
    error_message = "client ids"
  }
  assert {
    condition     = output.issuer_host == "issuer.example.com/byollm"
    error_message = "issuer host"
  }
}

run "trailing_slash_is_refused" {
  command = plan
  variables {
    issuer_url = "https://issuer.example.com/"
  }
  expect_failures = [var.issuer_url]
}
