variable "issuer_url" {
  description = "byollm's [issuer] url: https, no trailing slash, no query, fragment or port."
  type        = string

  validation {
    condition     = can(regex("^https://[A-Za-z0-9.-]+(/[^/?#:@\\s]+)*$", var.issuer_url))
    error_message = "issuer_url must be https://host[/path] with no trailing slash, query, fragment, port or user info."
  }
}

variable "audience" {
  description = "byollm's [issuer] audience; the IAM OIDC provider's client id."
  type        = string
  default     = "sts.amazonaws.com"

  validation {
    condition     = can(regex("^\\S{1,255}$", var.audience))
    error_message = "audience must be 1-255 characters without whitespace."
  }
}

variable "team_uid" {
  description = "The team whose principals may assume the role (byollm's [[teams]] uid)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,128}$", var.team_uid))
    error_message = "team_uid must be 1-128 characters of A-Z, a-z, 0-9, _ and -."
  }
}

variable "subject_scope" {
  description = "Narrow the trust to one actor type ({ actor_type = \"user\" }) or one principal ({ actor_type = \"service_account\", principal_uid = \"svc-1\" }). {} trusts the whole team."
  type = object({
    actor_type    = optional(string)
    principal_uid = optional(string)
  })
  default = {}

  validation {
    condition     = var.subject_scope.actor_type == null || contains(["user", "service_account"], coalesce(var.subject_scope.actor_type, "-"))
    error_message = "subject_scope.actor_type must be \"user\" or \"service_account\"."
  }

  validation {
    condition     = var.subject_scope.principal_uid == null || (var.subject_scope.actor_type != null && can(regex("^[A-Za-z0-9_-]{1,128}$", coalesce(var.subject_scope.principal_uid, "-"))))
    error_message = "subject_scope.principal_uid needs actor_type and must be 1-128 characters of A-Z, a-z, 0-9, _ and -."
  }
}

variable "model_ids" {
  description = "Bedrock foundation model ids, inference profile ids (us., eu., apac., jp., au., ca., global.) or application inference profile ARNs byollm may invoke."
  type        = list(string)

  validation {
    condition     = length(var.model_ids) > 0 && alltrue([for id in var.model_ids : can(regex("^[^*?\\s\"$/]+$", id)) || can(regex("^arn:aws:bedrock:[a-z0-9-]+:[0-9]{12}:application-inference-profile/[A-Za-z0-9]+$", id))])
    error_message = "model_ids must be non-empty; each a model or profile id without wildcards, or an application inference profile ARN."
  }
}

variable "regions" {
  description = "Regions byollm calls Bedrock in (the team's region in byollm.toml)."
  type        = list(string)

  validation {
    condition     = length(var.regions) > 0 && alltrue([for r in var.regions : can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", r))])
    error_message = "regions must be non-empty AWS region names such as us-east-1."
  }
}

variable "role_name" {
  description = "Name of the IAM role byollm assumes."
  type        = string
  default     = "byollm-bedrock"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.role_name))
    error_message = "role_name must be 1-64 characters of A-Z, a-z, 0-9 and +=,.@_-."
  }
}

variable "max_session_duration" {
  description = "Role MaxSessionDuration in seconds (3600-43200). byollm asks for what it needs and caches credentials per replica."
  type        = number
  default     = 3600

  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200 && floor(var.max_session_duration) == var.max_session_duration
    error_message = "max_session_duration must be a whole number of seconds between 3600 and 43200."
  }
}

variable "create_oidc_provider" {
  description = "Create the IAM OIDC provider for issuer_url. Set false when the account already has one (an account can hold only one per URL) and pass existing_oidc_provider_arn."
  type        = bool
  default     = true
}

variable "existing_oidc_provider_arn" {
  description = "ARN of an existing IAM OIDC provider for issuer_url; used only when create_oidc_provider is false."
  type        = string
  default     = null
}

variable "oidc_thumbprints" {
  description = "Legacy server-certificate thumbprints. Leave empty: IAM verifies the JWKS endpoint against its trusted root CAs and only falls back to thumbprints for certificates not signed by one."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for the provider and the role."
  type        = map(string)
  default     = {}
}
