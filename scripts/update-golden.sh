#!/usr/bin/env bash
# Regenerates the checked-in generated ("golden") files, the one way to rewrite them: the tests
# that compare them rewrite them only when their variable is set, and fail instead when CI is
# set (.ci/run sets it). Review `git diff` afterwards and commit what changed.
#
#   deploy/crds/remediationrequests.yaml        from src/k8s/types.rs     (UPDATE_CRD)
#   deploy/monitoring/prometheusrule.yaml       from monitoring/rules.yaml (UPDATE_DEPLOY)
#   deploy/helm/gateway/{crds,files}/, templates/spec-immutable-policy.yaml
#                                               copies of deploy/ files   (UPDATE_HELM)
#
# The CRD comes first: the chart's copy of it is taken afterwards. None of these tests needs
# a control plane.
set -euo pipefail
cd "$(dirname "$0")/.."
unset CI
UPDATE_CRD=1 cargo test --test crd_checked_in -- --exact checked_in_crd_matches_the_types
UPDATE_DEPLOY=1 cargo test --test deploy_manifests -- --exact \
  the_prometheus_rule_is_generated_from_rules_yaml
UPDATE_HELM=1 cargo test --test helm_chart -- --exact the_chart_copies_of_deploy_files_are_current
git status --short -- deploy/
