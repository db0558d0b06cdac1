terraform {
  required_version = ">= 1.6, < 2.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.81 made thumbprint_list optional; 7.x is untested.
      version = ">= 5.81, < 7.0"
    }
  }
}
