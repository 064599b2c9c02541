// Validates Kubernetes manifests offline against the Kubernetes OpenAPI schemas that the npm
// package kubernetes-models ships (one model class per apiVersion/kind, `.validate()` with ajv).
//
//   node .ci/validate-k8s.mjs PATH...      files or folders (*.yaml, *.yml, walked recursively)
//   node .ci/validate-k8s.mjs --stdin NAME  a rendered stream (kubectl kustomize … | …)
//
// kustomization.yaml files are checked as kustomizations: known keys only, and every resource,
// patch and component they list exists. Files a kustomization lists as patches are partial
// objects: they are parsed and must name a known kind, and are checked in full once rendered.
// Exits 1 with one line per finding: file:kind/name: reason.
import { readFileSync, readdirSync, statSync, existsSync } from "node:fs";
import { dirname, join, resolve, basename } from "node:path";
import yaml from "js-yaml";

const KUSTOMIZATION_KEYS = new Set([
  "apiVersion", "kind", "metadata", "namespace", "namePrefix", "nameSuffix", "labels",
  "commonLabels", "commonAnnotations", "resources", "components", "patches",
  "patchesStrategicMerge", "patchesJson6902", "images", "replicas", "configMapGenerator",
  "secretGenerator", "generatorOptions", "configurations", "crds", "vars", "replacements",
  "buildMetadata", "openapi", "helmCharts", "sortOptions",
]);

const findings = [];
let checked = 0;
const fail = (where, reason) => findings.push(`${where}: ${reason}`);

function yamlFiles(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return [path];
  return readdirSync(path)
    .sort()
    .flatMap((entry) => {
      const child = join(path, entry);
      if (statSync(child).isDirectory()) return yamlFiles(child);
      return /\.ya?ml$/.test(entry) ? [child] : [];
    });
}

function loadDocs(file, text) {
  try {
    return yaml.loadAll(text).filter((d) => d !== null && d !== undefined);
  } catch (e) {
    fail(file, `not YAML: ${e.message.split("\n")[0]}`);
    return [];
  }
}

async function modelFor(apiVersion, kind) {
  // "v1" is the core group; "apps/v1" → kubernetes-models/apps/v1.
  let module;
  try {
    module = await import(`kubernetes-models/${apiVersion}`);
  } catch {
    throw new Error(`unknown apiVersion ${JSON.stringify(apiVersion)}`);
  }
  const Model = module[kind];
  if (typeof Model !== "function") {
    throw new Error(`unknown kind ${JSON.stringify(kind)} in ${apiVersion}`);
  }
  return Model;
}

function describeError(e) {
  // ajv errors from @kubernetes-models/validate: a message per failing path.
  if (Array.isArray(e?.errors) && e.errors.length > 0) {
    return e.errors
      .map((err) => `${err.instancePath || "/"} ${err.message}${err.params?.additionalProperty ? ` (${err.params.additionalProperty})` : ""}`)
      .join("; ");
  }
  return String(e?.message ?? e).split("\n")[0];
}

async function checkObject(file, doc, { partial }) {
  const { apiVersion, kind } = doc ?? {};
  const name = doc?.metadata?.name ?? "<no name>";
  const where = `${file}:${kind ?? "<no kind>"}/${name}`;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    fail(where, "apiVersion and kind are required");
    return;
  }
  if (typeof doc.metadata?.name !== "string" || doc.metadata.name === "") {
    fail(where, "metadata.name is required");
  }
  let Model;
  try {
    Model = await modelFor(apiVersion, kind);
  } catch (e) {
    fail(where, e.message);
    return;
  }
  checked++;
  if (partial) return;
  try {
    new Model(doc).validate();
  } catch (e) {
    fail(where, describeError(e));
  }
}

function checkKustomization(file, doc, patchFiles) {
  const where = `${file}:Kustomization`;
  if (typeof doc !== "object" || Array.isArray(doc)) {
    fail(where, "not a mapping");
    return;
  }
  if (doc.apiVersion !== undefined && !String(doc.apiVersion).startsWith("kustomize.config.k8s.io/")) {
    fail(where, `apiVersion ${doc.apiVersion} is not kustomize.config.k8s.io/*`);
  }
  for (const key of Object.keys(doc)) {
    if (!KUSTOMIZATION_KEYS.has(key)) fail(where, `unknown field ${JSON.stringify(key)}`);
  }
  const dir = dirname(file);
  const mustExist = (what, rel) => {
    if (typeof rel !== "string") {
      fail(where, `${what} entry is not a path: ${JSON.stringify(rel)}`);
      return;
    }
    if (/^[a-z]+:\/\//.test(rel)) return; // remote bases are not fetched here
    const target = resolve(dir, rel);
    if (!existsSync(target)) {
      fail(where, `${what} ${rel} does not exist`);
    } else if (statSync(target).isDirectory() && !["kustomization.yaml", "kustomization.yml", "Kustomization"].some((k) => existsSync(join(target, k)))) {
      fail(where, `${what} ${rel} is a folder without a kustomization.yaml`);
    }
    return target;
  };
  for (const rel of doc.resources ?? []) mustExist("resource", rel);
  for (const rel of doc.components ?? []) mustExist("component", rel);
  for (const patch of [...(doc.patches ?? []), ...(doc.patchesStrategicMerge ?? []), ...(doc.patchesJson6902 ?? [])]) {
    const rel = typeof patch === "string" ? patch : patch?.path;
    if (rel !== undefined) {
      const target = mustExist("patch", rel);
      if (target) patchFiles.add(target);
    } else if (typeof patch?.patch !== "string") {
      fail(where, `patch without path or patch: ${JSON.stringify(patch)}`);
    }
  }
  for (const entry of doc.replicas ?? []) {
    if (typeof entry?.name !== "string" || !Number.isInteger(entry?.count)) {
      fail(where, `replicas entry needs a name and an integer count: ${JSON.stringify(entry)}`);
    }
  }
}

async function main(argv) {
  if (argv[0] === "--stdin") {
    const label = argv[1] ?? "<stdin>";
    const docs = loadDocs(label, readFileSync(0, "utf8"));
    if (docs.length === 0) fail(label, "no objects rendered");
    for (const doc of docs) await checkObject(label, doc, { partial: false });
  } else {
    if (argv.length === 0) {
      console.error("usage: validate-k8s.mjs PATH... | --stdin NAME");
      process.exit(2);
    }
    const files = argv.flatMap(yamlFiles);
    const parsed = files.map((file) => ({ file, docs: loadDocs(file, readFileSync(file, "utf8")) }));
    // Kustomizations first: they say which files are patches.
    const patchFiles = new Set();
    for (const { file, docs } of parsed) {
      if (/^kustomization\.ya?ml$/.test(basename(file))) {
        for (const doc of docs) checkKustomization(file, doc, patchFiles);
        checked++;
      }
    }
    for (const { file, docs } of parsed) {
      if (/^kustomization\.ya?ml$/.test(basename(file))) continue;
      if (docs.length === 0) fail(file, "no objects");
      const partial = patchFiles.has(resolve(file));
      for (const doc of docs) await checkObject(file, doc, { partial });
    }
  }
  for (const line of findings) console.log(line);
  if (findings.length > 0) {
    console.log(`validate-k8s: ${findings.length} finding(s) in ${checked} object(s)`);
    process.exit(1);
  }
  console.log(`validate-k8s: ${checked} object(s) valid`);
}

await main(process.argv.slice(2));
