terraform {
  # optional() object attributes need 1.3; `terraform test` needs 1.6.
  required_version = ">= 1.6, < 2.0"
  # No provider: everything here is computed from the inputs, so `terraform test` runs offline.
}
