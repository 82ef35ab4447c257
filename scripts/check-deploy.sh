#!/usr/bin/env bash
# Checks deploy/ offline, with no cluster:
#   1. `kubectl kustomize` builds deploy/ and deploy/crds/;
#   2. `kubectl apply --dry-run=client -k deploy/` succeeds. kubectl cannot do that without an
#      API server (it maps every kind to a resource through discovery, and GETs each object to
#      decide between create and patch), so this script starts a stand-in on 127.0.0.1 that
#      serves the discovery documents of the stock Kubernetes resources below and answers 404
#      to every object: an apiVersion/kind that Kubernetes does not serve fails the apply;
#   3. every object validates against the Kubernetes 1.33 schemas, strictly (an unknown or
#      misspelt field fails), with kubernetes-validate from PyPI in a venv under target/;
#   4. the CRD schemas are structural, the ClusterRole grants exactly what fleetdns needs,
#      and fleetdns.toml, the container ports, the Service and the probes agree;
#   5. with --with-binary: `fleetdns check-config` accepts deploy/fleetdns.toml (cargo run).
#
# Usage: bash scripts/check-deploy.sh [--with-binary]
# KUBECTL=/path/to/kubectl picks the kubectl; without one on PATH, Debian's kubernetes-client
# is installed with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

with_binary=false
for arg in "$@"; do
  case "$arg" in
    --with-binary) with_binary=true ;;
    -h | --help)
      sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "check-deploy: unknown argument $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

step() { printf '\n== %s\n' "$*"; }
fail() {
  echo "check-deploy: FAILED: $*" >&2
  exit 1
}
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
apt_install() {
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
step "tools"
if [ -n "${KUBECTL:-}" ]; then
  command -v "$KUBECTL" >/dev/null 2>&1 || fail "KUBECTL=$KUBECTL: no such program"
elif command -v kubectl >/dev/null 2>&1; then
  KUBECTL=kubectl
else
  echo "no kubectl: installing Debian's kubernetes-client"
  apt_install kubernetes-client
  KUBECTL=kubectl
fi
client_json=$("$KUBECTL" version --client -o json 2>/dev/null)
kubectl_version=$(printf '%s' "$client_json" | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -n1)
kubectl_minor=$(printf '%s' "$client_json" | sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -n1)
echo "kubectl $kubectl_version ($(command -v "$KUBECTL"))"
[ -n "$kubectl_minor" ] || fail "cannot read kubectl's version"

if ! command -v python3 >/dev/null 2>&1; then
  apt_install python3 python3-venv
fi
venv=target/check-deploy/venv
kv_version=1.37.0
if ! "$venv/bin/python" -c "import kubernetes_validate, yaml" >/dev/null 2>&1 ||
  [ "$("$venv/bin/python" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p')" != "$kv_version" ]; then
  echo "creating $venv with kubernetes-validate $kv_version"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" 2>/dev/null || {
    apt_install python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv"
  }
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "kubernetes-validate==$kv_version" "tomli; python_version < '3.11'" ||
    fail "cannot install kubernetes-validate from PyPI"
fi
py="$venv/bin/python"
echo "python $("$py" -c 'import sys; print(sys.version.split()[0])'), kubernetes-validate $kv_version"

# kubectl before 1.21 embeds kustomize v2.0.3, which takes a directory (crds) only under
# `bases:`, not `resources:`. Such a kubectl checks a copy with that one line moved; a user
# applying with it has to do the same.
src=deploy
if [ "$kubectl_minor" -lt 21 ]; then
  echo "kubectl 1.$kubectl_minor (kustomize v2.0): checking a copy with 'crds' under bases:"
  cp -r deploy "$work/deploy"
  "$py" - "$work/deploy/kustomization.yaml" <<'PY' || fail "cannot rewrite the kustomization for kubectl 1.$kubectl_minor"
import sys, yaml
path = sys.argv[1]
k = yaml.safe_load(open(path))
dirs = [r for r in k["resources"] if r == "crds"]
k["resources"] = [r for r in k["resources"] if r != "crds"]
k["bases"] = dirs
yaml.safe_dump(k, open(path, "w"))
PY
  src="$work/deploy"
fi

# ---------------------------------------------------------------------------------------------
step "kubectl kustomize deploy/"
"$KUBECTL" kustomize "$src" >"$work/build.yaml" || fail "kubectl kustomize deploy/"
"$KUBECTL" kustomize "$src/crds" >"$work/crds.yaml" || fail "kubectl kustomize deploy/crds/"
"$py" - "$work/build.yaml" <<'PY' || fail "cannot read the build"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    ns = d["metadata"].get("namespace")
    print(f"  {d['apiVersion']:<32} {d['kind']:<26} {(ns + '/') if ns else ''}{d['metadata']['name']}")
print(f"{len(docs)} objects")
PY

# ---------------------------------------------------------------------------------------------
step "kubectl apply --dry-run=client -k deploy/ (stand-in API server on 127.0.0.1)"
cat >"$work/apiserver.py" <<'PY'
# Discovery of the stock Kubernetes resources deploy/ may use; 404 for every object. Nothing
# is stored: kubectl's client-side dry run only reads.
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

R = lambda name, kind, namespaced: {"name": name, "singularName": kind.lower(), "kind": kind,
    "namespaced": namespaced, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
GROUPS = {
    "v1": [R("namespaces", "Namespace", False), R("serviceaccounts", "ServiceAccount", True),
           R("configmaps", "ConfigMap", True), R("secrets", "Secret", True),
           R("services", "Service", True)],
    "apps/v1": [R("deployments", "Deployment", True), R("daemonsets", "DaemonSet", True),
                R("statefulsets", "StatefulSet", True)],
    "policy/v1": [R("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "rbac.authorization.k8s.io/v1": [R("clusterroles", "ClusterRole", False),
        R("clusterrolebindings", "ClusterRoleBinding", False), R("roles", "Role", True),
        R("rolebindings", "RoleBinding", True)],
    "apiextensions.k8s.io/v1": [R("customresourcedefinitions", "CustomResourceDefinition", False)],
    "networking.k8s.io/v1": [R("networkpolicies", "NetworkPolicy", True)],
    "admissionregistration.k8s.io/v1": [
        R("validatingadmissionpolicies", "ValidatingAdmissionPolicy", False),
        R("validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", False)],
}

def group_doc(gv):
    g, v = gv.split("/")
    ver = {"groupVersion": gv, "version": v}
    return {"name": g, "versions": [ver], "preferredVersion": ver}

DOCS = {
    "/api": {"kind": "APIVersions", "versions": ["v1"],
             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1",
              "groups": [group_doc(gv) for gv in GROUPS if "/" in gv]},
    "/version": {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"},
}
for gv, resources in GROUPS.items():
    path = "/api/v1" if gv == "v1" else "/apis/" + gv
    DOCS[path] = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

class Handler(BaseHTTPRequestHandler):
    def send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        if path in DOCS:
            self.send(200, DOCS[path])
        else:
            self.send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "reason": "NotFound", "code": 404, "message": f"{path} not found"})

    def do_POST(self):  # a dry run must never write
        self.send(405, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "MethodNotAllowed", "code": 405, "message": "stand-in: no writes"})
    do_PUT = do_PATCH = do_DELETE = do_POST

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
PY
"$py" "$work/apiserver.py" "$work/port" &
server_pid=$!
for _ in $(seq 1 100); do
  [ -s "$work/port" ] && break
  sleep 0.05
done
[ -s "$work/port" ] || fail "the stand-in API server did not start"
cat >"$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: stand-in
    cluster:
      server: http://127.0.0.1:$(cat "$work/port")
users:
  - name: nobody
    user: {}
contexts:
  - name: stand-in
    context:
      cluster: stand-in
      user: nobody
current-context: stand-in
EOF
# --validate=false: kubectl's own schema check needs the server's OpenAPI documents, which the
# stand-in does not have; the next step validates every object against the real schemas.
KUBECONFIG="$work/kubeconfig" "$KUBECTL" apply --dry-run=client --validate=false \
  --cache-dir "$work/kube-cache" -k "$src" >"$work/apply.out" 2>"$work/apply.err" || {
  cat "$work/apply.out" "$work/apply.err" >&2
  fail "kubectl apply --dry-run=client -k deploy/"
}
cat "$work/apply.out"
if grep -v '^# Warning' "$work/apply.err" | grep -q .; then
  cat "$work/apply.err" >&2
  fail "kubectl apply printed errors or warnings"
fi
created=$(grep -c ' created (dry run)$' "$work/apply.out" || true)
objects=$("$py" -c 'import sys, yaml; print(sum(1 for d in yaml.safe_load_all(open(sys.argv[1])) if d))' "$work/build.yaml")
[ "$created" = "$objects" ] || fail "kubectl apply created $created objects (dry run), the build has $objects"

# ---------------------------------------------------------------------------------------------
step "schemas: kubernetes-validate --strict (Kubernetes 1.33)"
"$venv/bin/kubernetes-validate" --strict -k 1.33.0 "$work/build.yaml" >"$work/validate.out" 2>&1 || {
  grep -v '^INFO' "$work/validate.out" >&2 || true
  fail "an object does not match the Kubernetes schema"
}
if grep -q '^WARN' "$work/validate.out"; then
  grep '^WARN' "$work/validate.out" >&2
  fail "an object has no schema to check it against"
fi
echo "$(grep -c '^INFO.* passed ' "$work/validate.out") objects valid"

# ---------------------------------------------------------------------------------------------
step "fleetdns checks: CRD schemas, RBAC, ports and probes"
"$py" - "$work/build.yaml" "$work/crds.yaml" deploy/fleetdns.toml <<'PY' || fail "deploy/ does not hang together (above)"
import sys, yaml
try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

build = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
crds_alone = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
config = tomllib.load(open(sys.argv[3], "rb"))
errors = []
def check(ok, message):
    if not ok:
        errors.append(message)
def find(kind, name=None):
    return [d for d in build if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]

# CRDs: the three, in both kustomizations, with structural schemas (the API server refuses a
# v1 CRD whose schema is not structural).
want_crds = {"serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io",
             "clusterproperties.about.k8s.io"}
crds = find("CustomResourceDefinition")
check({c["metadata"]["name"] for c in crds} == want_crds, f"CRDs: {[c['metadata']['name'] for c in crds]}")
check({c["metadata"]["name"] for c in crds_alone} == want_crds, "deploy/crds/ must build the same three CRDs")
TYPES = {"object", "array", "string", "integer", "number", "boolean"}
def structural(node, at):
    if node.get("x-kubernetes-int-or-string"):
        check(node.get("anyOf") == [{"type": "integer"}, {"type": "string"}] and "type" not in node,
              f"{at}: int-or-string must be anyOf integer|string with no type")
        return
    if node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node:
        return
    t = node.get("type")
    check(t in TYPES, f"{at}: no type (or an unknown one: {t!r})")
    for key in ("anyOf", "allOf", "oneOf", "not", "additionalProperties", "$ref"):
        check(key not in node or (key == "additionalProperties" and "properties" not in node),
              f"{at}: {key} is not allowed here in a structural schema")
    if "properties" in node or "required" in node:
        check(t == "object", f"{at}: properties/required on type {t}")
        props = node.get("properties", {})
        for name in node.get("required", []):
            check(name in props, f"{at}: required {name!r} is not a property")
        for name, child in props.items():
            structural(child, f"{at}.{name}")
    if t == "array":
        check("items" in node, f"{at}: array without items")
        items = node.get("items", {})
        structural(items, f"{at}[]")
        if node.get("x-kubernetes-list-type") == "map":
            for k in node.get("x-kubernetes-list-map-keys", []):
                check(k in items.get("required", []) or "default" in items.get("properties", {}).get(k, {}),
                      f"{at}: list-map key {k!r} must be required or defaulted")
    elif "items" in node:
        check(False, f"{at}: items on type {t}")
    if "enum" in node:
        py = {"string": str, "integer": int, "boolean": bool, "number": (int, float)}.get(t)
        check(py is not None and all(isinstance(v, py) for v in node["enum"]), f"{at}: enum values are not {t}")
    if "default" in node and t == "string":
        check(isinstance(node["default"], str), f"{at}: default is not a string")
for crd in crds:
    name = crd["metadata"]["name"]
    spec = crd["spec"]
    check(name == f"{spec['names']['plural']}.{spec['group']}", f"{name}: name must be <plural>.<group>")
    check(sum(1 for v in spec["versions"] if v["storage"]) == 1, f"{name}: exactly one storage version")
    g = spec["group"]
    if g in ("k8s.io", "kubernetes.io") or g.endswith((".k8s.io", ".kubernetes.io")):
        check((crd["metadata"].get("annotations") or {}).get("api-approved.kubernetes.io"),
              f"{name}: group {g} is protected: the API server requires api-approved.kubernetes.io")
    for v in spec["versions"]:
        schema = v["schema"]["openAPIV3Schema"]
        check(set(schema.get("properties", {}).get("metadata", {})) <= {"type"},
              f"{name}/{v['name']}: metadata may only be type: object")
        structural(schema, f"{name}/{v['name']}")
mcs = [c for c in crds if c["spec"]["group"] == "multicluster.x-k8s.io"]
for c in mcs:
    check(all(v.get("subresources", {}).get("status") == {} for v in c["spec"]["versions"]),
          f"{c['metadata']['name']}: fleetdns writes status through the status subresource")

# RBAC: exactly what fleetdns reads and writes (rbac.yaml says why). A new verb or resource is
# a deliberate change here too.
want_rules = {
    ("", "services", None): {"list", "watch"},
    ("", "namespaces", None): {"list", "watch"},
    ("discovery.k8s.io", "endpointslices", None): {"list", "watch", "create", "patch", "delete"},
    ("multicluster.x-k8s.io", "serviceexports", None): {"list", "watch"},
    ("multicluster.x-k8s.io", "serviceexports/status", None): {"patch"},
    ("multicluster.x-k8s.io", "serviceimports", None): {"get", "list", "watch", "create", "patch", "delete"},
    ("multicluster.x-k8s.io", "serviceimports/status", None): {"patch"},
    ("about.k8s.io", "clusterproperties", "cluster.clusterset.k8s.io"): {"get", "list", "watch"},
    ("about.k8s.io", "clusterproperties", "clusterset.k8s.io"): {"get", "list", "watch"},
    ("networking.istio.io", "serviceentries", None): {"list", "watch"},
}
roles = find("ClusterRole")
check(len(roles) == 1 and not find("Role"), "one ClusterRole and no Role")
got = {}
for role in roles:
    for rule in role["rules"]:
        check("nonResourceURLs" not in rule, "no nonResourceURLs")
        for g in rule.get("apiGroups", []):
            for r in rule.get("resources", []):
                for n in rule.get("resourceNames", [None]):
                    got.setdefault((g, r, n), set()).update(rule.get("verbs", []))
for key in sorted(set(got) | set(want_rules), key=str):
    check(got.get(key) == want_rules.get(key),
          f"ClusterRole: {key}: verbs {sorted(got.get(key, []))}, expected {sorted(want_rules.get(key, []))}")
check(all("*" not in str(k) and "*" not in v for k, v in got.items()), "ClusterRole: no wildcards")
sa = find("ServiceAccount")
binding = find("ClusterRoleBinding")
check(len(sa) == 1 and len(binding) == 1, "one ServiceAccount and one ClusterRoleBinding")
if sa and binding and roles:
    sa = sa[0]["metadata"]
    check(binding[0]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                    "name": roles[0]["metadata"]["name"]}, "binding: roleRef")
    check(binding[0]["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}],
          "binding: subject must be the fleetdns ServiceAccount")

# The Deployment, its ConfigMap, the Service and the config agree.
deps, svcs, cms = find("Deployment"), find("Service"), find("ConfigMap")
check(len(deps) == 1 and len(svcs) == 1 and len(cms) == 1, "one Deployment, Service and ConfigMap")
if len(deps) == 1 and len(svcs) == 1 and len(cms) == 1:
    dep, svc, cm = deps[0], svcs[0], cms[0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    check(cm["data"].get("fleetdns.toml") == open(sys.argv[3]).read(), "the ConfigMap holds deploy/fleetdns.toml")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mount = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/etc/fleetdns"]
    check(len(mount) == 1 and volumes.get(mount[0]["name"], {}).get("configMap", {}).get("name") == cm["metadata"]["name"],
          "the config volume at /etc/fleetdns must be the generated ConfigMap")
    check(c.get("args", [])[:3] == ["serve", "--config", "/etc/fleetdns/fleetdns.toml"],
          f"container args: {c.get('args')}")
    check(pod.get("serviceAccountName") == sa["name"], "serviceAccountName")
    ports = {p["name"]: p for p in c.get("ports", [])}
    dns_port = int(config["dns"]["listen"].rsplit(":", 1)[1])
    ops_port = int(config["ops"]["listen"].rsplit(":", 1)[1])
    check(ports.get("dns", {}).get("containerPort") == dns_port and ports["dns"].get("protocol") == "UDP",
          f"container port dns must be {dns_port}/UDP ([dns] listen)")
    check(ports.get("dns-tcp", {}).get("containerPort") == dns_port and ports["dns-tcp"].get("protocol") == "TCP",
          f"container port dns-tcp must be {dns_port}/TCP ([dns] listen)")
    check(ports.get("metrics", {}).get("containerPort") == ops_port, f"container port metrics must be {ops_port} ([ops] listen)")
    check(dns_port >= 1024 or "NET_BIND_SERVICE" in c.get("securityContext", {}).get("capabilities", {}).get("add", []),
          "a DNS port below 1024 needs NET_BIND_SERVICE")
    probes = {k: c.get(k, {}).get("httpGet", {}) for k in ("readinessProbe", "livenessProbe")}
    check(probes["readinessProbe"] == {"path": "/ready", "port": "metrics"}, f"readinessProbe: {probes['readinessProbe']}")
    check(probes["livenessProbe"] == {"path": "/health", "port": "metrics"}, f"livenessProbe: {probes['livenessProbe']}")
    sc, psc = c.get("securityContext", {}), pod.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
          and sc.get("capabilities", {}).get("drop") == ["ALL"], "container securityContext")
    check(psc.get("runAsNonRoot") is True and psc.get("seccompProfile") == {"type": "RuntimeDefault"},
          "pod securityContext: runAsNonRoot, seccomp RuntimeDefault")
    check(all(k in c.get("resources", {}).get(kind, {}) for kind, k in
              (("requests", "cpu"), ("requests", "memory"), ("limits", "memory"))), "resources")
    sel = dep["spec"]["selector"]["matchLabels"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check(all(labels.get(k) == v for k, v in sel.items()), "Deployment selector matches the pod labels")
    check(svc["spec"]["selector"] == sel, "Service selector is the Deployment's")
    sports = {p["name"]: p for p in svc["spec"]["ports"]}
    for name, proto in (("dns", "UDP"), ("dns-tcp", "TCP")):
        p = sports.get(name, {})
        check(p.get("port") == 53 and p.get("protocol") == proto and p.get("targetPort") in (name, dns_port),
              f"Service port {name}: 53/{proto} -> the container's {name}")
    check(sports.get("metrics", {}).get("targetPort") in ("metrics", ops_port), "Service port metrics")
    kube = [s for s in config.get("sources", []) if s.get("kind") == "kubernetes"]
    check(len(kube) == 1 and "kubeconfig" not in kube[0], "fleetdns.toml: one in-cluster kubernetes source")
    if kube and kube[0].get("write_back", True) is False:
        errors.append("fleetdns.toml has write_back = false: drop the write verbs from rbac.yaml and this check")

if errors:
    for e in errors:
        print("  -", e, file=sys.stderr)
    sys.exit(1)
print(f"CRDs ({len(crds)}), ClusterRole ({len(want_rules)} rules), Deployment, Service and fleetdns.toml agree")
PY

# ---------------------------------------------------------------------------------------------
if $with_binary; then
  step "fleetdns check-config deploy/fleetdns.toml"
  # KUBECONFIG stands in for the pod's service account; check-config does not contact it.
  KUBECONFIG="$work/kubeconfig" cargo run -q -p fleetdns -- check-config deploy/fleetdns.toml ||
    fail "fleetdns check-config deploy/fleetdns.toml"
fi

echo
echo "deploy/ checks passed (kubectl $kubectl_version)"
