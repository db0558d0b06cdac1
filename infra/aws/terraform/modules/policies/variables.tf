# Inputs are validated here, once, for both the role module and anyone calling this module directly.
# The rules mirror byollm's (src/principal.rs, src/aws_setup.rs): a uid is 1-128 characters of
# [A-Za-z0-9_-], so it can never carry `/`, `:`, `*` or `?` into a StringLike pattern.

variable "partition" {
  description = "AWS partition of the account (aws, aws-cn, aws-us-gov): data.aws_partition in the role module."
  type        = string

  validation {
    condition     = can(regex("^aws(-[a-z]+)*$", var.partition))
    error_message = "partition must be an AWS partition name such as aws, aws-cn or aws-us-gov."
  }
}

variable "account_id" {
  description = "The 12-digit account the role lives in."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be 12 digits."
  }
}

variable "oidc_provider_arn" {
  description = "ARN of the account's IAM OIDC provider for issuer_url (the oidc-provider module's output)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws(-[a-z]+)*:iam::[0-9]{12}:oidc-provider/[A-Za-z0-9.-]+(/[^/?#:@*\\s]+)*$", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be arn:<partition>:iam::<account>:oidc-provider/<issuer host[/path]>."
  }
}

variable "issuer_url" {
  description = "byollm's [issuer] url: https, no trailing slash, no query, fragment or port."
  type        = string

  validation {
    condition     = can(regex("^https://[A-Za-z0-9.-]+(/[^/?#:@*\\s]+)*$", var.issuer_url))
    error_message = "issuer_url must be https://host[/path] with no trailing slash, query, fragment, port, user info or wildcard."
  }
}

variable "audience" {
  description = "byollm's [issuer] audience; the IAM OIDC provider's client id."
  type        = string
  default     = "sts.amazonaws.com"

  validation {
    condition     = can(regex("^[^*?\\s\"$${}]{1,255}$", var.audience))
    error_message = "audience must be 1-255 characters without whitespace, quotes, wildcards, $ or braces."
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

variable "agent" {
  description = "A named agent of the team ([[teams.agents]] name) for an agent role; null for the team role."
  type        = string
  default     = null

  validation {
    condition     = var.agent == null || can(regex("^[A-Za-z0-9_-]{1,128}$", coalesce(var.agent, "-")))
    error_message = "agent must be 1-128 characters of A-Z, a-z, 0-9, _ and -."
  }
}

variable "session_tags" {
  description = "The team's [[teams]] session_tags = true: allow sts:TagSession and sts:SetSourceIdentity and require aws:RequestTag/team (and /agent for an agent role, or no agent tag for the team role)."
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
  description = "Bedrock foundation model ids, inference profile ids (us., eu., apac., jp., au., ca., global.) or application inference profile ARNs the role may invoke."
  type        = list(string)

  validation {
    condition = length(var.model_ids) > 0 && alltrue([for id in var.model_ids :
      can(regex("^[a-z0-9-]+\\.[A-Za-z0-9._:-]+$", id)) ||
      can(regex("^arn:aws(-[a-z]+)*:bedrock:[a-z]{2}(-[a-z]+)+-[0-9]+:[0-9]{12}:application-inference-profile/[A-Za-z0-9]+$", id))
    ])
    error_message = "model_ids must be non-empty; each a model or inference profile id (provider.model, no wildcards or slashes) or an application inference profile ARN."
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
