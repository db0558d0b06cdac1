# A customer's side of byollm: an IAM OIDC provider for byollm's issuer and a role that only
# tokens for one team (optionally one actor type or one principal) may assume, allowed to invoke
# only the listed Bedrock models. Mirrors byollm::aws_setup::generate; keep the two in step
# (tests/infra_manifests.rs compares the trust policy shape).

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

locals {
  # IAM names the provider, and its condition keys, by the issuer URL without https://.
  issuer_host = trimprefix(var.issuer_url, "https://")
  account_id  = data.aws_caller_identity.current.account_id
  partition   = data.aws_partition.current.partition

  # scoped_principal:<team>/*, scoped_principal:<team>/<actor>:* or scoped_principal:<team>/<actor>:<uid>.
  # Safe only because byollm refuses uids containing / : * ? (see src/principal.rs).
  subject_pattern = (
    var.subject_scope.principal_uid != null ? "scoped_principal:${var.team_uid}/${var.subject_scope.actor_type}:${var.subject_scope.principal_uid}" :
    var.subject_scope.actor_type != null ? "scoped_principal:${var.team_uid}/${var.subject_scope.actor_type}:*" :
    "scoped_principal:${var.team_uid}/*"
  )

  provider_arn = var.create_oidc_provider ? aws_iam_openid_connect_provider.byollm[0].arn : var.existing_oidc_provider_arn

  # Geographic profile prefix => the region-name prefix of its destination regions.
  geographies = { us = "us-", eu = "eu-", apac = "ap-", jp = "ap-northeast-", au = "ap-southeast-", ca = "ca-" }

  application_profile_arns = [for id in var.model_ids : id if startswith(id, "arn:")]
  global_ids               = [for id in var.model_ids : id if startswith(id, "global.")]
  geo_ids                  = [for id in var.model_ids : id if !startswith(id, "arn:") && contains(keys(local.geographies), split(".", id)[0])]
  foundation_ids           = [for id in var.model_ids : id if !contains(concat(local.application_profile_arns, local.global_ids, local.geo_ids), id)]

  # Foundation models by id, in every source region.
  foundation_arns = flatten([for id in local.foundation_ids : [for r in var.regions : "arn:${local.partition}:bedrock:${r}::foundation-model/${id}"]])

  # Geographic profiles: the profile in the source regions inside its geography; the model in
  # every region of the geography, only through the profile.
  geo_profile_arns = flatten([for id in local.geo_ids : [
    for r in var.regions : "arn:${local.partition}:bedrock:${r}:${local.account_id}:inference-profile/${id}"
    if startswith(r, local.geographies[split(".", id)[0]])
  ]])
  geo_model_arns = [for id in local.geo_ids : "arn:${local.partition}:bedrock:${local.geographies[split(".", id)[0]]}*::foundation-model/${trimprefix(id, "${split(".", id)[0]}.")}"]

  # Global profiles: the profile and the model in the source regions, and the region-less model
  # with aws:RequestedRegion = unspecified, both models only through the profile.
  global_profile_arns        = flatten([for id in local.global_ids : [for r in var.regions : "arn:${local.partition}:bedrock:${r}:${local.account_id}:inference-profile/${id}"]])
  global_regional_model_arns = flatten([for id in local.global_ids : [for r in var.regions : "arn:${local.partition}:bedrock:${r}::foundation-model/${trimprefix(id, "global.")}"]])
  global_model_arns          = [for id in local.global_ids : "arn:${local.partition}:bedrock:::foundation-model/${trimprefix(id, "global.")}"]

  profile_arns = sort(distinct(concat(local.geo_profile_arns, local.global_profile_arns)))
  direct_arns  = sort(distinct(concat(local.foundation_arns, local.profile_arns, local.application_profile_arns)))
  actions      = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]

  permission_statements = concat(
    [{
      Sid      = "InvokeModelsAndProfiles"
      Effect   = "Allow"
      Action   = local.actions
      Resource = local.direct_arns
    }],
    length(local.profile_arns) == 0 ? [] : [{
      Sid       = "FoundationModelsThroughProfiles"
      Effect    = "Allow"
      Action    = local.actions
      Resource  = sort(distinct(concat(local.geo_model_arns, local.global_regional_model_arns)))
      Condition = { StringEquals = { "bedrock:InferenceProfileArn" = local.profile_arns } }
    }],
    length(local.global_ids) == 0 ? [] : [{
      Sid      = "GlobalFoundationModelsThroughGlobalProfiles"
      Effect   = "Allow"
      Action   = local.actions
      Resource = sort(distinct(local.global_model_arns))
      Condition = { StringEquals = {
        "aws:RequestedRegion"         = "unspecified"
        "bedrock:InferenceProfileArn" = sort(distinct(local.global_profile_arns))
      } }
    }],
    length(local.application_profile_arns) == 0 ? [] : [{
      Sid       = "FoundationModelsThroughApplicationProfiles"
      Effect    = "Allow"
      Action    = local.actions
      Resource  = ["arn:${local.partition}:bedrock:*::foundation-model/*"]
      Condition = { StringEquals = { "bedrock:InferenceProfileArn" = sort(distinct(local.application_profile_arns)) } }
    }],
  )
}

resource "aws_iam_openid_connect_provider" "byollm" {
  count = var.create_oidc_provider ? 1 : 0

  url            = var.issuer_url
  client_id_list = [var.audience]
  # null: IAM checks byollm's TLS certificate against its trusted root CAs.
  thumbprint_list = length(var.oidc_thumbprints) > 0 ? var.oidc_thumbprints : null
  tags            = var.tags
}

resource "aws_iam_role" "byollm" {
  name                 = var.role_name
  description          = "Assumed by byollm for team ${var.team_uid} to invoke Bedrock"
  max_session_duration = var.max_session_duration
  tags                 = var.tags

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "ByollmWebIdentity"
      Effect    = "Allow"
      Principal = { Federated = local.provider_arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = { "${local.issuer_host}:aud" = var.audience }
        StringLike   = { "${local.issuer_host}:sub" = local.subject_pattern }
      }
    }]
  })

  lifecycle {
    precondition {
      condition     = var.create_oidc_provider || var.existing_oidc_provider_arn != null
      error_message = "create_oidc_provider is false, so existing_oidc_provider_arn must name the account's provider for issuer_url."
    }
    precondition {
      condition     = var.create_oidc_provider || endswith(coalesce(var.existing_oidc_provider_arn, "-"), ":oidc-provider/${local.issuer_host}")
      error_message = "existing_oidc_provider_arn must end with :oidc-provider/<issuer_url without https://>."
    }
    precondition {
      condition     = alltrue([for id in local.geo_ids : anytrue([for r in var.regions : startswith(r, local.geographies[split(".", id)[0]])])])
      error_message = "a geographic inference profile (us., eu., apac., jp., au., ca.) can only be invoked from a region of its geography; add such a region to regions."
    }
  }
}

resource "aws_iam_role_policy" "bedrock_invoke" {
  name   = "byollm-bedrock-invoke"
  role   = aws_iam_role.byollm.id
  policy = jsonencode({ Version = "2012-10-17", Statement = local.permission_statements })
}
