# The same names byollm aws-setup --format tfvars prints, plus oidc_provider_arn, agent and
# session_tags. Validation of the policy inputs lives in ../modules/policies (one place).

variable "issuer_url" {
  description = "byollm's [issuer] url: https, no trailing slash, no query, fragment or port."
  type        = string
}

variable "audience" {
  description = "byollm's [issuer] audience."
  type        = string
  default     = "sts.amazonaws.com"
}

variable "oidc_provider_arn" {
  description = "The account's byollm OIDC provider (../oidc-provider's arn output). null: arn:<partition>:iam::<this account>:oidc-provider/<issuer host>, which is what ../oidc-provider creates; the role module checks that it exists."
  type        = string
  default     = null
}

variable "team_uid" {
  description = "The team whose principals may assume the role (byollm's [[teams]] uid)."
  type        = string
}

variable "agent" {
  description = "For an agent role: the [[teams.agents]] name. null: the team role."
  type        = string
  default     = null
}

variable "session_tags" {
  description = "Set as the team's [[teams]] session_tags in byollm.toml. true: the trust policy allows sts:TagSession and sts:SetSourceIdentity and requires the token's team tag (and, for an agent role, its agent tag; for the team role, no agent tag)."
  type        = bool
  default     = false
}

variable "subject_scope" {
  description = "Narrow the trust to one actor type ({ actor_type = \"user\" }) or one principal ({ actor_type = \"service_account\", principal_uid = \"svc-1\" }). {} trusts the whole team."
  type = object({
    actor_type    = optional(string)
    principal_uid = optional(string)
  })
  default = {}
}

variable "model_ids" {
  description = "Bedrock foundation model ids, inference profile ids or application inference profile ARNs the role may invoke."
  type        = list(string)
}

variable "regions" {
  description = "Regions byollm calls Bedrock in (the team's region in byollm.toml)."
  type        = list(string)
}

variable "role_name" {
  description = "IAM role name. null: byollm-<team> for the team role, byollm-<team>-<agent> for an agent role (as byollm aws-setup)."
  type        = string
  default     = null

  validation {
    condition     = var.role_name == null || can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", coalesce(var.role_name, "-")))
    error_message = "role_name must be 1-64 characters of A-Z, a-z, 0-9 and +=,.@_-."
  }
}

variable "max_session_duration" {
  description = "Role MaxSessionDuration in seconds (3600-43200). byollm asks for sts.duration_secs and caches credentials per replica."
  type        = number
  default     = 3600

  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200 && floor(var.max_session_duration) == var.max_session_duration
    error_message = "max_session_duration must be a whole number of seconds between 3600 and 43200."
  }
}

variable "tags" {
  description = "Tags for the role."
  type        = map(string)
  default     = {}
}
