# One byollm role: a team's (agent = null) or one agent's. Apply it once per team and once per
# agent (separate states, or for_each over a module block); the OIDC provider comes from
# ../oidc-provider, created once per account. Destroying a role never touches the provider.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  account_id   = data.aws_caller_identity.current.account_id
  partition    = data.aws_partition.current.partition
  issuer_host  = trimprefix(var.issuer_url, "https://")
  provider_arn = coalesce(var.oidc_provider_arn, "arn:${local.partition}:iam::${local.account_id}:oidc-provider/${local.issuer_host}")
  role_name    = coalesce(var.role_name, var.agent == null ? "byollm-${var.team_uid}" : "byollm-${var.team_uid}-${var.agent}")
}

module "policies" {
  source = "../modules/policies"

  partition         = local.partition
  account_id        = local.account_id
  oidc_provider_arn = local.provider_arn
  issuer_url        = var.issuer_url
  audience          = var.audience
  team_uid          = var.team_uid
  agent             = var.agent
  session_tags      = var.session_tags
  subject_scope     = var.subject_scope
  model_ids         = var.model_ids
  regions           = var.regions
}

# Fails the plan early when the account has no provider for the issuer, or one that does not list
# the audience (STS would refuse every token with InvalidIdentityToken).
data "aws_iam_openid_connect_provider" "byollm" {
  arn = local.provider_arn

  lifecycle {
    postcondition {
      condition     = contains(self.client_id_list, var.audience)
      error_message = "the OIDC provider does not list the audience ${var.audience} in its client ids; add it (or re-apply ../oidc-provider)."
    }
  }
}

resource "aws_iam_role" "byollm" {
  name                 = local.role_name
  description          = var.agent == null ? "Assumed by byollm for team ${var.team_uid} to invoke Bedrock" : "Assumed by byollm for agent ${var.agent} of team ${var.team_uid} to invoke Bedrock"
  max_session_duration = var.max_session_duration
  assume_role_policy   = module.policies.trust_policy
  tags                 = var.tags

  lifecycle {
    precondition {
      condition     = length(local.role_name) <= 64
      error_message = "the default role name ${local.role_name} is longer than IAM's 64 characters; set role_name."
    }
    precondition {
      condition     = data.aws_iam_openid_connect_provider.byollm.arn == local.provider_arn
      error_message = "the OIDC provider lookup returned another ARN."
    }
  }
}

resource "aws_iam_role_policy" "bedrock_invoke" {
  name   = "byollm-bedrock-invoke"
  role   = aws_iam_role.byollm.id
  policy = module.policies.permissions_policy
}
