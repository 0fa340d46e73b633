"""Checks rendered overlays against what strictly's deployment promises.

usage: manifest_rules.py RENDERED.yaml...

Schema validation says a manifest is well formed; this says it is the right
one: the pod runs locked down and outside the mesh, every STRICTLY_ variable
is a real flag, the Service, monitors and network policy select the pod and
its port, the scrape job ends up named "strictly" as the alerts expect, the
Secrets for HTTPS and the token are mounted where the variables point, and
the PrometheusRule and dashboard ConfigMap carry the same content as
alerts/strictly-rules.yaml and dashboards/strictly.json.
"""

import json
import posixpath
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "strictly"
PORT = 9714

# Every flag of `strictly run`, as its environment variable.
FLAG_VARIABLES = {
    "STRICTLY_KUMA_URL", "STRICTLY_KUMA_TOKEN_FILE", "STRICTLY_KUMA_CA_FILE",
    "STRICTLY_MESH", "STRICTLY_SERVICE", "STRICTLY_POLL_INTERVAL", "STRICTLY_WINDOW",
    "STRICTLY_MIN_MTLS_CONNECTIONS", "STRICTLY_STALE_AFTER", "STRICTLY_CONCURRENCY",
    "STRICTLY_REQUEST_TIMEOUT", "STRICTLY_LISTEN", "STRICTLY_LOG_FORMAT",
    "STRICTLY_PER_DATAPLANE",
}
CLUSTER_SCOPED = {"Namespace"}


class Overlay:
    def __init__(self, path):
        self.path = path
        self.docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
        self.problems = []

    def one(self, kind):
        found = [d for d in self.docs if d["kind"] == kind]
        if len(found) != 1:
            self.fail(f"expected one {kind}, found {len(found)}")
            return None
        return found[0]

    def maybe(self, kind):
        found = [d for d in self.docs if d["kind"] == kind]
        return found[0] if found else None

    def fail(self, message):
        self.problems.append(f"{self.path}: {message}")

    def expect(self, condition, message):
        if not condition:
            self.fail(message)


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_namespaces(o):
    namespace = o.one("Namespace")
    o.expect(namespace and namespace["metadata"]["name"] == NAMESPACE, f"no Namespace {NAMESPACE}")
    for doc in o.docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            o.expect(doc["metadata"].get("namespace") == NAMESPACE,
                     f"{doc['kind']}/{doc['metadata']['name']} is not in namespace {NAMESPACE}")


def check_pod(o, deployment):
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_security = pod.get("securityContext", {})
    o.expect(spec.get("replicas") == 1, "the Deployment must run one replica")
    o.expect(pod.get("automountServiceAccountToken") is False, "the pod mounts an API token")
    o.expect(pod_security.get("runAsNonRoot") is True, "runAsNonRoot is not set")
    o.expect(pod_security.get("runAsUser") == 65532, "runAsUser is not 65532")
    o.expect(pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault",
             "seccomp profile is not RuntimeDefault")
    o.expect(spec["template"]["metadata"]["labels"].get("kuma.io/sidecar-injection") == "disabled",
             "the pod does not keep the Kuma sidecar out")

    containers = pod["containers"]
    o.expect(len(containers) == 1, "expected one container")
    container = containers[0]
    security = container.get("securityContext", {})
    o.expect(security.get("readOnlyRootFilesystem") is True, "root filesystem is writable")
    o.expect(security.get("allowPrivilegeEscalation") is False, "privilege escalation is allowed")
    o.expect(security.get("capabilities", {}).get("drop") == ["ALL"], "capabilities are not all dropped")
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            o.expect(resource in container.get("resources", {}).get(kind, {}),
                     f"no {resource} {kind}")

    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    o.expect(ports.get("metrics") == PORT, f"no container port {PORT} named metrics")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        o.expect(get.get("path") == path and get.get("port") in ("metrics", PORT),
                 f"{probe} does not ask {path} on the metrics port")


def check_environment(o, deployment):
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    for name in sorted(set(env) - FLAG_VARIABLES):
        o.fail(f"{name} is not a flag of `strictly run`")

    url = env.get("STRICTLY_KUMA_URL", "")
    uses_tls = url.startswith("https://")
    o.expect(url.endswith(":5682") if uses_tls else url.endswith(":5681"),
             f"{url} does not use the control plane's {'HTTPS' if uses_tls else 'HTTP'} port")
    o.expect(uses_tls == ("STRICTLY_KUMA_CA_FILE" in env), "an HTTPS URL needs a CA file, and only it")

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = container.get("volumeMounts", [])
    for variable, secret, key in (("STRICTLY_KUMA_CA_FILE", "kuma-tls-cert", "ca.crt"),
                                  ("STRICTLY_KUMA_TOKEN_FILE", "strictly-kuma-token", "token")):
        if variable in env:
            check_secret_file(o, env[variable], mounts, volumes, secret, key)


def check_secret_file(o, path, mounts, volumes, secret, key):
    folder, name = posixpath.split(path)
    mount = next((m for m in mounts if m["mountPath"].rstrip("/") == folder), None)
    if not mount:
        o.fail(f"nothing is mounted at {folder}")
        return
    # A subPath mount never sees a rotated Secret.
    o.expect("subPath" not in mount and mount.get("readOnly") is True,
             f"{folder} must be a read-only mount without subPath")
    source = volumes.get(mount["name"], {}).get("secret", {})
    o.expect(source.get("secretName") == secret, f"{folder} does not come from Secret {secret}")
    items = {i["key"]: i["path"] for i in source.get("items", [])}
    o.expect(items.get(key) == name, f"{path} is not key {key} of Secret {secret}")


def check_service_and_policy(o, deployment):
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = o.one("Service")
    if service:
        o.expect(selects(service["spec"]["selector"], pod_labels), "the Service does not select the pod")
        o.expect(any(p.get("name") == "metrics" and p["port"] == PORT for p in service["spec"]["ports"]),
                 f"the Service has no port {PORT} named metrics")

    policy = o.one("NetworkPolicy")
    if policy:
        spec = policy["spec"]
        o.expect(selects(spec["podSelector"].get("matchLabels"), pod_labels),
                 "the NetworkPolicy does not select the pod")
        o.expect(sorted(spec.get("policyTypes", [])) == ["Egress", "Ingress"],
                 "the NetworkPolicy must restrict both directions")
        ingress = {p["port"] for rule in spec.get("ingress", []) for p in rule.get("ports", [])}
        egress = {p["port"] for rule in spec.get("egress", []) for p in rule.get("ports", [])}
        o.expect(ingress == {PORT}, f"ingress allows {sorted(ingress)}, not only {PORT}")
        o.expect(egress <= {53, 5681, 5682}, f"egress allows {sorted(egress)}")


def check_monitors(o, deployment):
    service_monitor = o.maybe("ServiceMonitor")
    pod_monitor = o.maybe("PodMonitor")
    if not (service_monitor or pod_monitor):
        return
    o.expect(not (service_monitor and pod_monitor), "both a ServiceMonitor and a PodMonitor: double scrape")

    if service_monitor:
        service = o.one("Service") or {"metadata": {}, "spec": {"selector": {}}}
        labels = service["metadata"].get("labels", {})
        spec = service_monitor["spec"]
        o.expect(selects(spec["selector"].get("matchLabels"), labels), "the ServiceMonitor selects no Service")
        o.expect(labels.get(spec.get("jobLabel")) == "strictly", 'the scrape job is not named "strictly"')
        o.expect(all(e.get("port") == "metrics" for e in spec["endpoints"]), "the ServiceMonitor port is not metrics")
    if pod_monitor:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        spec = pod_monitor["spec"]
        o.expect(selects(spec["selector"].get("matchLabels"), labels), "the PodMonitor selects no pod")
        o.expect(labels.get(spec.get("jobLabel")) == "strictly", 'the scrape job is not named "strictly"')
        o.expect(all(e.get("port") == "metrics" for e in spec["podMetricsEndpoints"]),
                 "the PodMonitor port is not metrics")

    for doc in o.docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            o.expect("release" in doc["metadata"].get("labels", {}),
                     f"{doc['kind']} lacks the label Prometheus selects on")


def check_content(o):
    rule = o.maybe("PrometheusRule")
    if rule:
        groups = yaml.safe_load((ROOT / "alerts/strictly-rules.yaml").read_text())["groups"]
        o.expect(rule["spec"]["groups"] == groups, "PrometheusRule differs from alerts/strictly-rules.yaml")

    dashboards = [d for d in o.docs if d["kind"] == "ConfigMap"
                  and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    if dashboards:
        shipped = json.loads(dashboards[0]["data"]["strictly.json"])
        original = json.loads((ROOT / "dashboards/strictly.json").read_text())
        o.expect(shipped == original, "the dashboard ConfigMap differs from dashboards/strictly.json")


def main():
    problems = []
    for path in sys.argv[1:]:
        o = Overlay(path)
        check_namespaces(o)
        deployment = o.one("Deployment")
        if deployment:
            check_pod(o, deployment)
            check_environment(o, deployment)
            check_service_and_policy(o, deployment)
            check_monitors(o, deployment)
        check_content(o)
        problems += o.problems

    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"{len(sys.argv) - 1} rendered overlays keep strictly's deployment rules")


if __name__ == "__main__":
    main()
