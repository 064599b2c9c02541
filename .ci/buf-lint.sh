#!/usr/bin/env bash
# Lints the API contract (proto/, configured by buf.yaml at the repository root) with buf.
#
# Installs the buf version pinned in .ci/package.json into .ci/node_modules when it is
# missing or different, then runs `buf lint` (STANDARD rules) and `buf format --diff`
# from the repository root. Exits non-zero on any finding.
set -euo pipefail

ci_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$ci_dir/.." && pwd)"
buf_version="1.75.0" # keep in step with .ci/package.json
buf="$ci_dir/node_modules/.bin/buf"

if [[ ! -x "$buf" ]] || [[ "$("$buf" --version 2>/dev/null)" != "$buf_version" ]]; then
  echo "buf-lint: installing @bufbuild/buf@$buf_version into $ci_dir/node_modules" >&2
  npm install --prefix "$ci_dir" --no-save --no-package-lock --no-audit --no-fund \
    "@bufbuild/buf@$buf_version" >&2
fi

cd "$repo_root"
echo "buf-lint: buf $("$buf" --version) lint" >&2
"$buf" lint
echo "buf-lint: buf format --diff" >&2
"$buf" format --diff --exit-code
echo "buf-lint: ok" >&2
