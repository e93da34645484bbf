#!/usr/bin/env bash
# Each chart's README.md from its Chart.yaml, values.yaml (the `# --` comments) and
# README.md.gotmpl, by helm-docs (lab_helm_docs_version, built by `make setup-tests`):
#
#   tools/chart-docs.sh             write charts/*/README.md (part of `make generate`)
#   tools/chart-docs.sh --dry-run   print it instead (tests/unit/test_chart_readme.py compares)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${NUCLAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nuclab}
helm_docs="$cache/tools/bin/helm-docs"
[ -x "$helm_docs" ] || { echo "chart-docs: $helm_docs is missing: run make setup-tests" >&2; exit 1; }
exec "$helm_docs" --chart-search-root "$repo/charts" --sort-values-order file \
  --skip-version-footer --log-level warning "$@"
