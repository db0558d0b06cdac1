output "role_arn" {
  description = "Put this in byollm.toml as the team's [[teams]] role_arn (or the agent's [[teams.agents]] role_arn)."
  value       = aws_iam_role.byollm.arn
}

output "role_name" {
  description = "The role's name."
  value       = aws_iam_role.byollm.name
}

output "provider_arn" {
  description = "The IAM OIDC provider the role trusts."
  value       = local.provider_arn
}

output "subject_pattern" {
  description = "The StringLike pattern the trust policy applies to the token's sub."
  value       = module.policies.subject_pattern
}

output "trust_policy" {
  description = "The role's trust policy, as JSON."
  value       = module.policies.trust_policy
}
