#!/usr/bin/env bash
# Validates what deploys cwsm against its schemas, offline (no Docker engine or cluster here):
#   - every Kubernetes manifest under deploy/k8s, file by file, with kubernetes-models (npm) and
#     with kubernetes-validate --strict (PyPI; unknown fields are errors, as in kubectl apply);
#     each kustomization.yaml's keys and the files it lists; and, where kubectl is on the machine
#     (its built-in kustomize), every kustomization rendered and its output checked the same way;
#   - docker-compose.yml against the Compose Specification schema (check-jsonschema's vendored
#     compose-spec), and the files it mounts and builds from, and deploy/otel-collector.yaml's
#     pipelines against the components it defines.
# Before that it proves the validators are live: deliberately broken copies must fail.
#
# Installs the npm packages pinned in .ci/package.json into .ci/node_modules and the PyPI ones
# pinned in .ci/requirements-deploy.txt into .ci/venv when missing or different.
set -euo pipefail

ci_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$ci_dir/.." && pwd)"
cd "$repo_root"

# keep in step with .ci/package.json
npm_pins=("kubernetes-models@5.1.0" "js-yaml@4.1.0" "@bufbuild/buf@1.75.0")
installed_version() { node -p "require('$ci_dir/node_modules/$1/package.json').version" 2>/dev/null || true; }
if [[ "$(installed_version kubernetes-models)" != "5.1.0" || "$(installed_version js-yaml)" != "4.1.0" ]]; then
  echo "validate-deploy: installing ${npm_pins[*]} into $ci_dir/node_modules" >&2
  npm install --prefix "$ci_dir" --no-save --no-package-lock --no-audit --no-fund "${npm_pins[@]}" >&2
fi

venv="$ci_dir/venv"
requirements="$ci_dir/requirements-deploy.txt"
if ! cmp -s "$requirements" "$venv/.requirements-deploy.txt"; then
  echo "validate-deploy: installing $(grep -v '^#' "$requirements" | xargs) into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$venv/.requirements-deploy.txt"
fi

k8s_models() { node "$ci_dir/validate-k8s.mjs" "$@"; }
k8s_strict() { "$venv/bin/kubernetes-validate" --strict --quiet --no-warn "$@"; }
compose_schema() { "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$@"; }

# Files docker-compose.yml builds from or mounts, and the collector's pipelines.
compose_refs() {
  (cd "$ci_dir" && node --input-type=module - "$repo_root" "$1" "$2") <<'JS'
import { readFileSync, existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import yaml from "js-yaml";
const [root, composeFile, otelFile] = process.argv.slice(2);
const base = dirname(resolve(root, composeFile));
const problems = [];
const compose = yaml.load(readFileSync(resolve(root, composeFile), "utf8"));
for (const [name, svc] of Object.entries(compose.services ?? {})) {
  const build = typeof svc.build === "string" ? { context: svc.build } : svc.build;
  if (build) {
    const context = resolve(base, build.context ?? ".");
    if (!existsSync(context)) problems.push(`${composeFile}:${name}: build context ${build.context} does not exist`);
    if (build.dockerfile && !existsSync(resolve(context, build.dockerfile)))
      problems.push(`${composeFile}:${name}: dockerfile ${build.dockerfile} does not exist`);
  }
  for (const volume of svc.volumes ?? []) {
    const source = typeof volume === "string" ? volume.split(":")[0] : volume.source;
    if (typeof source === "string" && source.startsWith(".") && !existsSync(resolve(base, source)))
      problems.push(`${composeFile}:${name}: mounted ${source} does not exist`);
  }
}
const otel = yaml.load(readFileSync(resolve(root, otelFile), "utf8"));
for (const [pipeline, spec] of Object.entries(otel?.service?.pipelines ?? {})) {
  for (const kind of ["receivers", "processors", "exporters"]) {
    for (const id of spec[kind] ?? []) {
      if (!(otel[kind] && id in otel[kind])) problems.push(`${otelFile}: pipeline ${pipeline} uses ${kind.slice(0, -1)} ${id}, not defined`);
    }
  }
  if (!(spec.receivers?.length && spec.exporters?.length)) problems.push(`${otelFile}: pipeline ${pipeline} needs receivers and exporters`);
}
if (!otel?.service?.pipelines?.traces) problems.push(`${otelFile}: no traces pipeline`);
for (const p of problems) console.log(p);
if (!problems.length) console.log(`validate-deploy: ${composeFile} builds from and mounts files that exist; ${otelFile} pipelines use defined components`);
process.exit(problems.length ? 1 : 0);
JS
}

# --- the validators are live: each broken copy must fail -------------------------------------
say() { printf 'validate-deploy: %s\n' "$*"; }
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
must_fail() {
  local what="$1"; shift
  if "$@" >"$scratch/out" 2>&1; then
    cat "$scratch/out"
    say "SELF-CHECK FAILED: $what was accepted; the validator is not live"
    exit 1
  fi
  say "self-check: $what rejected: $(grep -m1 -E 'unexpected|must be|not of type|does not exist|Additional' "$scratch/out" | sed "s#$scratch/##; s/^ *//")"
}
mkdir -p "$scratch/k8s" "$scratch/kust"
sed 's/^  replicas: 1$/  replicas: "two"/' deploy/k8s/base/matching.yaml >"$scratch/k8s/replicas.yaml"
grep -q 'replicas: "two"' "$scratch/k8s/replicas.yaml"
sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesytem: true/' deploy/k8s/base/matching.yaml >"$scratch/k8s/typo.yaml"
grep -q 'readOnlyRootFilesytem' "$scratch/k8s/typo.yaml"
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - missing.yaml\n' >"$scratch/kust/kustomization.yaml"
sed 's/^  stop_grace_period: 30s$/  stop_grace_period: 30s\n  healthchek: {}/' docker-compose.yml >"$scratch/compose.yml"
grep -q 'healthchek' "$scratch/compose.yml"
must_fail "a Deployment with replicas: \"two\" (kubernetes-models)" k8s_models "$scratch/k8s/replicas.yaml"
must_fail "a Deployment with replicas: \"two\" (kubernetes-validate)" k8s_strict "$scratch/k8s/replicas.yaml"
must_fail "an unknown field in a container (kubernetes-validate --strict)" k8s_strict "$scratch/k8s/typo.yaml"
must_fail "a kustomization listing a missing file" k8s_models "$scratch/kust"
must_fail "a compose service with an unknown key (compose-spec)" compose_schema "$scratch/compose.yml"

# --- the real files ----------------------------------------------------------------------------
say "Kubernetes manifests, file by file (kubernetes-models $(installed_version kubernetes-models))"
k8s_models deploy/k8s
mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name 'kustomization.yaml' | sort)
patches=()
while IFS= read -r p; do patches+=("$p"); done < <(
  for k in $(find deploy/k8s -name kustomization.yaml); do
    d="$(dirname "$k")"
    sed -n 's/^  - path: *//p' "$k" | while read -r rel; do echo "$d/$rel"; done
  done | sort -u)
full=()
for m in "${manifests[@]}"; do
  skip=0
  for p in "${patches[@]}"; do [[ "$(realpath "$m")" == "$(realpath "$p")" ]] && skip=1; done
  [[ $skip == 0 ]] && full+=("$m")
done
say "strict schemas, unknown fields rejected ($("$venv/bin/kubernetes-validate" --version 2>&1 | head -1)): ${#full[@]} files"
k8s_strict "${full[@]}"

if command -v kubectl >/dev/null 2>&1; then
  for k in $(find deploy/k8s -name kustomization.yaml | sort); do
    d="$(dirname "$k")"
    kubectl kustomize "$d" >"$scratch/rendered.yaml"
    say "rendered $d ($(grep -c '^kind:' "$scratch/rendered.yaml") objects)"
    k8s_models --stdin "$d (rendered)" <"$scratch/rendered.yaml"
    k8s_strict "$scratch/rendered.yaml"
  done
else
  say "kubectl not found: kustomizations checked for their files, not rendered"
fi

say "docker-compose.yml against the Compose Specification (check-jsonschema vendor.compose-spec)"
compose_schema docker-compose.yml
compose_refs docker-compose.yml deploy/otel-collector.yaml
say "ok"
