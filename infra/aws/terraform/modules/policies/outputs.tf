output "issuer_host" {
  description = "The issuer URL without https://: the provider's name and the prefix of its condition keys."
  value       = local.issuer_host
}

output "subject_pattern" {
  description = "The StringLike pattern the trust policy applies to the token's sub."
  value       = local.subject_pattern
}

output "trust_policy" {
  description = "The role's trust policy (assume_role_policy), as JSON."
  value       = jsonencode(local.trust_policy)

  precondition {
    condition     = endswith(var.oidc_provider_arn, ":oidc-provider/${local.issuer_host}")
    error_message = "oidc_provider_arn must end with :oidc-provider/<issuer_url without https://>: it names the provider for another issuer."
  }
  precondition {
    condition     = split(":", var.oidc_provider_arn)[1] == var.partition && split(":", var.oidc_provider_arn)[4] == var.account_id
    error_message = "oidc_provider_arn must be in the role's own partition and account: a role can only trust a provider of its account."
  }
}

output "permissions_policy" {
  description = "The role's inline permissions policy, as JSON."
  value       = jsonencode(local.permissions_policy)

  precondition {
    condition     = alltrue([for id in local.geo_ids : anytrue([for r in var.regions : startswith(r, local.geographies[split(".", id)[0]])])])
    error_message = "a geographic inference profile (us., eu., apac., jp., au., ca.) can only be invoked from a region of its geography; add such a region to regions."
  }
}

# A warning, not an error: contracts.md keeps the untagged shape for every role, but only the tagged
# one lets IAM tell one agent's token from another's.
check "agent_role_isolation" {
  assert {
    condition     = var.agent == null || var.session_tags
    error_message = "agent role without session_tags: every token of the team can assume it. Set session_tags = true here and [[teams]] session_tags = true in byollm.toml to bind it to its agent."
  }
}
