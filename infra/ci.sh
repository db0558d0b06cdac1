#!/usr/bin/env bash
# Lint the CloudFormation template with cfn-lint (installed from PyPI when missing).
# Exits 0 with a "skip" line when cfn-lint cannot be installed; fails when the lint fails.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v cfn-lint >/dev/null 2>&1; then
    if ! { command -v pip >/dev/null 2>&1 || command -v pip3 >/dev/null 2>&1; }; then
        echo "infra/ci.sh: skip: cfn-lint is not installed and there is no pip to install it"
        exit 0
    fi
    pip_cmd=pip
    command -v pip >/dev/null 2>&1 || pip_cmd=pip3
    if ! "$pip_cmd" install --quiet cfn-lint >/dev/null 2>&1 || ! command -v cfn-lint >/dev/null 2>&1; then
        echo "infra/ci.sh: skip: could not install cfn-lint with $pip_cmd"
        exit 0
    fi
fi

echo "infra/ci.sh: $(cfn-lint --version)"
cfn-lint infra/aws/cloudformation/*.yaml
echo "infra/ci.sh: cfn-lint passed"

if command -v terraform >/dev/null 2>&1; then
    # Formatting needs no provider; `terraform validate` would (it downloads hashicorp/aws).
    terraform fmt -check -diff infra/aws/terraform >/dev/null
    echo "infra/ci.sh: terraform fmt passed"
else
    echo "infra/ci.sh: skip: terraform not installed, formatting not checked"
fi
