# The trust policy and the permissions policy of one byollm role (a team's, or one agent's), built
# as Terraform values and encoded with jsonencode: no input is ever pasted into JSON text.
# Mirrors byollm::aws_setup::generate; tests/infra_manifests.rs compares the two, and
# tests/policies.tftest.hcl checks the shapes contracts.md fixes (session tags, agent roles).

locals {
  # IAM names the provider, and its condition keys, by the issuer URL without https://.
  issuer_host = trimprefix(var.issuer_url, "https://")

  # scoped_principal:<team>/*, scoped_principal:<team>/<actor>:* or scoped_principal:<team>/<actor>:<uid>.
  # Safe only because byollm refuses uids containing / : * ? (see src/principal.rs).
  subject_pattern = (
    var.subject_scope.principal_uid != null ? "scoped_principal:${var.team_uid}/${var.subject_scope.actor_type}:${var.subject_scope.principal_uid}" :
    var.subject_scope.actor_type != null ? "scoped_principal:${var.team_uid}/${var.subject_scope.actor_type}:*" :
    "scoped_principal:${var.team_uid}/*"
  )

  # With session tags the token carries https://aws.amazon.com/tags and a source identity, which
  # STS only accepts when the trust policy allows sts:TagSession and sts:SetSourceIdentity.
  tagged_actions = ["sts:AssumeRoleWithWebIdentity", "sts:TagSession", "sts:SetSourceIdentity"]
  # A list with session tags, the single action as a string without (as byollm aws-setup prints).
  trust_action = jsondecode(var.session_tags ? jsonencode(local.tagged_actions) : jsonencode("sts:AssumeRoleWithWebIdentity"))

  trust_conditions = merge(
    {
      StringEquals = merge(
        { "${local.issuer_host}:aud" = var.audience },
        # The token's team tag must be this team's...
        var.session_tags ? { "aws:RequestTag/team" = var.team_uid } : {},
        # ...and, for an agent role, its agent tag this agent's.
        var.session_tags && var.agent != null ? { "aws:RequestTag/agent" = var.agent } : {},
      )
      StringLike = { "${local.issuer_host}:sub" = local.subject_pattern }
    },
    # The team role refuses any token that names an agent: an agent's token can only assume its
    # own agent role.
    var.session_tags && var.agent == null ? { Null = { "aws:RequestTag/agent" = "true" } } : {},
  )

  trust_policy = {
    Version = "2012-10-17"
    Statement = [{
      Sid       = "ByollmWebIdentity"
      Effect    = "Allow"
      Principal = { Federated = var.oidc_provider_arn }
      Action    = local.trust_action
      Condition = local.trust_conditions
    }]
  }

  # Geographic profile prefix => the region-name prefix of its destination regions.
  geographies = { us = "us-", eu = "eu-", apac = "ap-", jp = "ap-northeast-", au = "ap-southeast-", ca = "ca-" }
  p           = var.partition
  account     = var.account_id

  application_profile_arns = [for id in var.model_ids : id if startswith(id, "arn:")]
  global_ids               = [for id in var.model_ids : id if startswith(id, "global.")]
  geo_ids                  = [for id in var.model_ids : id if !startswith(id, "arn:") && contains(keys(local.geographies), split(".", id)[0])]
  foundation_ids           = [for id in var.model_ids : id if !contains(concat(local.application_profile_arns, local.global_ids, local.geo_ids), id)]

  # Foundation models by id, in every source region.
  foundation_arns = flatten([for id in local.foundation_ids : [for r in var.regions : "arn:${local.p}:bedrock:${r}::foundation-model/${id}"]])

  # Geographic profiles: the profile in the source regions inside its geography; the model in
  # every region of the geography, only through the profile.
  geo_profile_arns = flatten([for id in local.geo_ids : [
    for r in var.regions : "arn:${local.p}:bedrock:${r}:${local.account}:inference-profile/${id}"
    if startswith(r, local.geographies[split(".", id)[0]])
  ]])
  geo_model_arns = [for id in local.geo_ids : "arn:${local.p}:bedrock:${local.geographies[split(".", id)[0]]}*::foundation-model/${trimprefix(id, "${split(".", id)[0]}.")}"]

  # Global profiles: the profile and the model in the source regions, and the region-less model
  # with aws:RequestedRegion = unspecified, both models only through the profile.
  global_profile_arns        = flatten([for id in local.global_ids : [for r in var.regions : "arn:${local.p}:bedrock:${r}:${local.account}:inference-profile/${id}"]])
  global_regional_model_arns = flatten([for id in local.global_ids : [for r in var.regions : "arn:${local.p}:bedrock:${r}::foundation-model/${trimprefix(id, "global.")}"]])
  global_model_arns          = [for id in local.global_ids : "arn:${local.p}:bedrock:::foundation-model/${trimprefix(id, "global.")}"]

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
      Resource  = ["arn:${local.p}:bedrock:*::foundation-model/*"]
      Condition = { StringEquals = { "bedrock:InferenceProfileArn" = sort(distinct(local.application_profile_arns)) } }
    }],
  )

  permissions_policy = { Version = "2012-10-17", Statement = local.permission_statements }
}
