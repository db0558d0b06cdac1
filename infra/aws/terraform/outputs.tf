output "role_arn" {
  description = "Put this in byollm.toml as the team's [[teams]] role_arn."
  value       = aws_iam_role.byollm.arn
}

output "provider_arn" {
  description = "The IAM OIDC provider trusted by the role."
  value       = local.provider_arn
}

output "subject_pattern" {
  description = "The StringLike pattern the role's trust policy applies to the token's sub."
  value       = local.subject_pattern
}
