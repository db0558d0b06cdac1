#!/usr/bin/env bash
# Checks of the customer-side infrastructure, run by .ci/run:
#   1. cfn-lint (pinned) on both CloudFormation templates, alone and with each sample parameter file;
#   2. terraform fmt, and `terraform test` of modules/policies (no provider: runs offline);
#   3. `terraform validate` + the mock_provider tests of oidc-provider/ and role/, which need the
#      hashicorp/aws provider's schema: `terraform init` must download it from the Terraform
#      registry. This project's machines reach only crates.io, PyPI, Debian and npm, so there it
#      cannot run, and this script prints why instead of pretending it passed.
# A check that runs and fails fails the script. A check that cannot run says NOT RUN and why, by
# the same rule as the Rust tests (crates/testkit/src/not_run.rs): under CI (`CI` set) it fails,
# unless BYOLLM_NOT_RUN_OK lists `terraform` (declared unreachable on purpose, in .ci/run); then it
# says `NOT RUN (declared unreachable)` and passes.
set -euo pipefail

cd "$(dirname "$0")/.."

CFN_LINT_VERSION=1.51.0
not_run=()

# --- 1. CloudFormation --------------------------------------------------------------------------
if [ "$(cfn-lint --version 2>/dev/null | awk '{print $2}')" != "$CFN_LINT_VERSION" ]; then
    pip_cmd=$(command -v pip || command -v pip3 || true)
    if [ -z "$pip_cmd" ]; then
        echo "infra/ci.sh: FAIL: cfn-lint $CFN_LINT_VERSION is needed and there is no pip to install it" >&2
        exit 1
    fi
    "$pip_cmd" install --quiet "cfn-lint==$CFN_LINT_VERSION"
fi
echo "infra/ci.sh: $(cfn-lint --version)"
cfn=infra/aws/cloudformation
cfn-lint "$cfn"/*.yaml
cfn-lint --parameter-files "$cfn/params/oidc-provider.json" -- "$cfn/byollm-oidc-provider.yaml"
for params in "$cfn"/params/team.json "$cfn"/params/agent-tagged.json; do
    cfn-lint --parameter-files "$params" -- "$cfn/byollm-role.yaml"
done
echo "infra/ci.sh: cfn-lint passed (templates alone and with $cfn/params/*.json)"

# --- 2. and 3. Terraform -------------------------------------------------------------------------
tf=infra/aws/terraform
if ! command -v terraform >/dev/null 2>&1; then
    not_run+=("terraform fmt, terraform test (modules/policies), validate and mock tests: terraform is not installed, and no registry this machine reaches ships it")
else
    export TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
    # A TF_CLI_CONFIG_FILE naming a missing file only produces warnings: ignore it.
    if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -f "$TF_CLI_CONFIG_FILE" ]; then unset TF_CLI_CONFIG_FILE; fi
    echo "infra/ci.sh: $(terraform version | head -1)"
    terraform fmt -check -recursive -diff "$tf"
    echo "infra/ci.sh: terraform fmt passed"

    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    # Work on copies so no .terraform directory is left in the tree.
    cp -r "$tf" "$scratch/tf"
    (cd "$scratch/tf/modules/policies" && terraform init -input=false -backend=false >/dev/null && terraform test -no-color)
    echo "infra/ci.sh: terraform test passed (modules/policies)"

    for module in oidc-provider role; do
        log="$scratch/init-$module.log"
        if (cd "$scratch/tf/$module" && timeout 120 terraform init -input=false -backend=false -no-color >"$log" 2>&1); then
            (cd "$scratch/tf/$module" && terraform validate -no-color && terraform test -no-color)
            echo "infra/ci.sh: terraform validate and test passed ($module, mock provider)"
        else
            reason=$(grep -m1 -E "could not connect|no such host" "$log" || grep -m1 "Error" "$log" || tail -1 "$log")
            not_run+=("terraform validate and the mock_provider tests of $tf/$module: they need the hashicorp/aws provider's schema and terraform init could not download it ($reason)")
        fi
    done
fi

# Whether BYOLLM_NOT_RUN_OK (comma- or space-separated) lists `terraform`, as a whole name.
declared=0
for reason in ${BYOLLM_NOT_RUN_OK//,/ }; do
    if [ "$reason" = terraform ]; then declared=1; fi
done
for item in "${not_run[@]}"; do
    if [ -z "${CI:-}" ]; then
        echo "infra/ci.sh: NOT RUN: $item"
    elif [ "$declared" = 1 ]; then
        echo "infra/ci.sh: NOT RUN (declared unreachable): $item [terraform is listed in BYOLLM_NOT_RUN_OK]"
    else
        echo "infra/ci.sh: NOT RUN under CI: $item" >&2
    fi
done
if [ "${#not_run[@]}" -gt 0 ] && [ -n "${CI:-}" ] && [ "$declared" = 0 ]; then
    echo "infra/ci.sh: FAIL: CI is set and ${#not_run[@]} terraform check(s) could not run; install terraform, or declare it in BYOLLM_NOT_RUN_OK (.ci/run)" >&2
    exit 1
fi
