# The account-level IAM OIDC provider for byollm's issuer. Create it once per AWS account (an
# account can hold only one provider per URL) in its own state, then create one role per team and
# per agent with ../role, passing this module's arn output.
#
# Every byollm role in the account trusts this provider: destroying it breaks all of them at once.
# prevent_destroy makes `terraform destroy` (and any plan that would replace it) fail; to really
# delete it, first delete every byollm role, then remove the lifecycle block.

resource "aws_iam_openid_connect_provider" "byollm" {
  url            = var.issuer_url
  client_id_list = [var.audience]
  # null: IAM checks byollm's TLS certificate against its trusted root CAs.
  thumbprint_list = length(var.oidc_thumbprints) > 0 ? var.oidc_thumbprints : null
  tags            = var.tags

  lifecycle {
    prevent_destroy = true
  }
}
