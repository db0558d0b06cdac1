output "arn" {
  description = "The provider's ARN: pass it to every ../role module as oidc_provider_arn."
  value       = aws_iam_openid_connect_provider.byollm.arn
}

output "issuer_host" {
  description = "The issuer URL without https://, which prefixes the provider's condition keys (<host>:aud, <host>:sub)."
  value       = trimprefix(var.issuer_url, "https://")
}
