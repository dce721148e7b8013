// Validates every manifest in deploy/kubernetes/*.yaml against the Kubernetes API schemas, as compiled into the
// kubernetes-models package (JSON Schema from the Kubernetes OpenAPI spec, checked with ajv): each YAML document is
// built into the model of its apiVersion/kind and .validate()d (required fields, types, enums, formats).
// On top of that it rejects fields the schema does not know (a typo such as `readOnlyRootFileSystem` would otherwise
// be dropped silently, as `kubectl apply --validate=false` would): every key of the document must have been read by
// the schema's validator.
//
//   npm ci && node validate.mjs               # validate deploy/kubernetes/*.yaml; exit 0 = all valid
//   node validate.mjs --self-test             # broken manifests must be rejected, the real ones accepted
//   node validate.mjs path/to/a.yaml ...      # validate the given files
//
// Run by .ci/run; see docs/sidecar.md ("Kubernetes").
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const here = dirname(fileURLToPath(import.meta.url));
const manifestDir = join(here, "..");
const repoRoot = join(here, "..", "..", "..");

/** The kubernetes-models module of an apiVersion: "v1" -> kubernetes-models/v1, "apps/v1" -> kubernetes-models/apps/v1. */
async function modelOf(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    throw new Error("apiVersion and kind must be strings");
  }
  let module;
  try {
    module = await import(`kubernetes-models/${apiVersion}`);
  } catch {
    throw new Error(`unknown apiVersion '${apiVersion}'`);
  }
  const model = module[kind];
  if (typeof model !== "function") {
    throw new Error(`unknown kind '${kind}' in apiVersion '${apiVersion}'`);
  }
  return model;
}

/**
 * A copy of a parsed value whose objects record every key the validator reads (or enumerates): `seen` maps each
 * original object to its set of keys.
 */
function tracked(value, seen) {
  if (value === null || typeof value !== "object") {
    return value;
  }
  const keys = new Set();
  seen.set(value, keys);
  const target = Array.isArray(value)
    ? value.map((v) => tracked(v, seen))
    : Object.fromEntries(Object.entries(value).map(([k, v]) => [k, tracked(v, seen)]));
  return new Proxy(target, {
    get(t, key, receiver) {
      if (typeof key === "string") keys.add(key);
      return Reflect.get(t, key, receiver);
    },
    has(t, key) {
      if (typeof key === "string") keys.add(key);
      return Reflect.has(t, key);
    },
    ownKeys(t) {
      // Enumerated (a map such as labels or resources.limits): every key is known to the validator.
      for (const key of Reflect.ownKeys(t)) if (typeof key === "string") keys.add(key);
      return Reflect.ownKeys(t);
    },
  });
}

/** Paths of object keys the validator never looked at. */
function unknownFields(value, seen, path, out) {
  if (value === null || typeof value !== "object") {
    return out;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => unknownFields(v, seen, `${path}/${i}`, out));
    return out;
  }
  const keys = seen.get(value);
  for (const [key, child] of Object.entries(value)) {
    if (keys && !keys.has(key)) {
      out.push(`${path}/${key}`);
    } else {
      unknownFields(child, seen, `${path}/${key}`, out);
    }
  }
  return out;
}

const topLevel = new Set(["apiVersion", "kind", "metadata", "spec", "data", "stringData", "binaryData", "type", "immutable", "rules", "roleRef", "subjects"]);

/** Validates one parsed document; returns a list of error strings (empty = valid). */
export async function validateDocument(doc) {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    return ["the document is not a mapping"];
  }
  let Model;
  try {
    Model = await modelOf(doc.apiVersion, doc.kind);
  } catch (error) {
    return [error.message];
  }
  const errors = [];
  const model = new Model(doc); // a deep copy of the document
  const seen = new WeakMap();
  const body = {};
  for (const key of Object.keys(model)) {
    body[key] = model[key];
    model[key] = tracked(model[key], seen); // the validator reads the model's own properties
  }
  try {
    model.validate();
  } catch (error) {
    errors.push(...String(error.message).split("\n").filter((line) => line.trim() !== ""));
  }
  if (errors.length === 0) {
    for (const key of Object.keys(body)) {
      if (!topLevel.has(key)) {
        errors.push(`/${key}: unknown field`);
      } else {
        errors.push(...unknownFields(body[key], seen, `/${key}`, []).map((p) => `${p}: unknown field`));
      }
    }
  }
  return errors;
}

/** Validates every document of a YAML text; returns [{ index, kind, name, errors }]. */
export async function validateText(text) {
  const results = [];
  const docs = parseAllDocuments(text);
  for (const [index, parsed] of docs.entries()) {
    if (parsed.errors.length > 0) {
      results.push({ index, kind: "?", name: "?", errors: parsed.errors.map((e) => `YAML: ${e.message}`) });
      continue;
    }
    const doc = parsed.toJS();
    if (doc === null || doc === undefined) continue; // an empty document (e.g. after a trailing ---)
    results.push({ index, kind: doc?.kind ?? "?", name: doc?.metadata?.name ?? "?", errors: await validateDocument(doc) });
  }
  return results;
}

/**
 * The text with its opt-in blocks enabled: a commented-out "# sysctls:" block (pod.yaml keeps the unsafe sysctl
 * commented out) is uncommented, so that the variant a cluster admin enables is validated too. Null when there is none.
 */
export function withOptInBlocks(text) {
  const lines = text.split("\n");
  let changed = false;
  for (let i = 0; i < lines.length; i++) {
    const head = /^(\s*)# (sysctls:)\s*$/.exec(lines[i]);
    if (!head) continue;
    lines[i] = head[1] + head[2];
    changed = true;
    for (let j = i + 1; j < lines.length; j++) {
      const item = new RegExp(`^${head[1]}#   (.*)$`).exec(lines[j]);
      if (!item) break;
      lines[j] = `${head[1]}  ${item[1]}`;
    }
  }
  return changed ? lines.join("\n") : null;
}

async function validateFiles(files) {
  let failed = 0;
  let documents = 0;
  const inputs = [];
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    inputs.push({ file, text, label: "" });
    const optIn = withOptInBlocks(text);
    if (optIn !== null) inputs.push({ file, text: optIn, label: " (with the commented-out sysctls enabled)" });
  }
  for (const { file, text, label } of inputs) {
    const results = await validateText(text);
    if (results.length === 0) {
      console.log(`FAIL ${relative(repoRoot, file)}: no Kubernetes document in it`);
      failed++;
    }
    for (const r of results) {
      documents++;
      const where = `${relative(repoRoot, file)} #${r.index} ${r.kind}/${r.name}${label}`;
      if (r.errors.length === 0) {
        console.log(`ok   ${where}`);
      } else {
        failed++;
        console.log(`FAIL ${where}`);
        for (const e of r.errors) console.log(`       ${e}`);
      }
    }
  }
  console.log(`${documents} document(s), ${failed} invalid`);
  return failed === 0;
}

// Each must be rejected; the label says why.
const broken = {
  "a container without a name": (pod) => { delete pod.spec.containers[0].name; },
  "an unknown field (typo readOnlyRootFileSystem)": (pod) => {
    pod.spec.containers[0].securityContext = { readOnlyRootFileSystem: true };
  },
  "a probe command given as a string": (pod) => { pod.spec.containers[0].livenessProbe = { exec: { command: "dotnet Gateway.dll --healthcheck" } }; },
  "a grace period given as a string": (pod) => { pod.spec.terminationGracePeriodSeconds = "20"; },
  "a sysctl without a value": (pod) => { pod.spec.securityContext = { sysctls: [{ name: "net.unix.max_dgram_qlen" }] }; },
  "an unknown kind": (pod) => { pod.kind = "Pood"; },
};

async function selfTest(files) {
  let ok = true;
  for (const [label, breakIt] of Object.entries(broken)) {
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "self-test", labels: { app: "x" } },
      spec: { containers: [{ name: "c", image: "i", resources: { limits: { memory: "1Mi" } } }] },
    };
    const valid = await validateDocument(structuredClone(pod));
    if (valid.length !== 0) {
      console.log(`self-test FAIL: the unbroken manifest is rejected: ${valid.join("; ")}`);
      return false;
    }
    breakIt(pod);
    const errors = await validateDocument(pod);
    if (errors.length === 0) {
      ok = false;
      console.log(`self-test FAIL: accepted ${label}`);
    } else {
      console.log(`self-test ok: rejects ${label}: ${errors[0]}`);
    }
  }
  // The real manifests with a typo injected into their YAML text must be rejected too.
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    const typo = text.replace("readOnlyRootFilesystem:", "readOnlyRootFileSystem:");
    if (typo === text) continue;
    const results = await validateText(typo);
    if (results.every((r) => r.errors.length === 0)) {
      ok = false;
      console.log(`self-test FAIL: ${relative(repoRoot, file)} with readOnlyRootFileSystem (typo) accepted`);
    } else {
      console.log(`self-test ok: rejects ${relative(repoRoot, file)} with a typo injected`);
    }
  }
  return ok;
}

const args = process.argv.slice(2);
const self = args.includes("--self-test");
const named = args.filter((a) => a !== "--self-test");
const files = named.length > 0
  ? named
  : readdirSync(manifestDir).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => join(manifestDir, f));
if (files.length === 0) {
  console.log(`no manifest in ${relative(repoRoot, manifestDir)}`);
  process.exit(1);
}
const passed = self ? await selfTest(files) : await validateFiles(files);
process.exit(passed ? 0 : 1);
