variable "issuer_url" {
  description = "byollm's [issuer] url: https, no trailing slash, no query, fragment or port."
  type        = string

  validation {
    condition     = can(regex("^https://[A-Za-z0-9.-]+(/[^/?#:@*\\s]+)*$", var.issuer_url))
    error_message = "issuer_url must be https://host[/path] with no trailing slash, query, fragment, port, user info or wildcard."
  }
}

variable "audience" {
  description = "byollm's [issuer] audience; the provider's client id."
  type        = string
  default     = "sts.amazonaws.com"

  validation {
    condition     = can(regex("^[^*?\\s\"$${}]{1,255}$", var.audience))
    error_message = "audience must be 1-255 characters without whitespace, quotes, wildcards, $ or braces."
  }
}

variable "oidc_thumbprints" {
  description = "Legacy server-certificate thumbprints. Leave empty: IAM verifies the JWKS endpoint against its trusted root CAs and only falls back to thumbprints for certificates not signed by one."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.oidc_thumbprints : can(regex("^[0-9a-fA-F]{40}$", t))])
    error_message = "each thumbprint must be 40 hex characters (SHA-1)."
  }
}

variable "tags" {
  description = "Tags for the provider."
  type        = map(string)
  default     = {}
}
