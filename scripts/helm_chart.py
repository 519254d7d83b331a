#!/usr/bin/env python3
"""Lints and renders a Helm chart with Helm's own Go library (the helm-sdkpy wheel); no helm binary needed.

  helm_chart.py lint   CHART [--values JSON]
  helm_chart.py render CHART [--values JSON] [--release NAME] [--namespace NS] [--kube-version 1.32]
  helm_chart.py install CHART [--values JSON] [--release NAME] [--namespace NS] [--timeout SECONDS]
  helm_chart.py uninstall CHART [--release NAME] [--namespace NS] [--timeout SECONDS]

Each prints one JSON document on stdout and exits 0; on an error it prints the error on stderr and exits 1
(2 when helm-sdkpy itself is missing).

lint: Helm's `Lint` action (`helm lint`). The library's lint call takes no values, so with --values the chart
is copied to a temporary folder and the overrides are merged into its values.yaml first. Output:
{"messages": [{"severity": "INFO|WARNING|ERROR", "path": ...}], "errors": N}. (The library drops the
messages' text; `render` with the same values shows the error text.)

render: the equivalent of `helm install --dry-run`, which the library does not offer. The Install action runs
against an in-process fake Kubernetes API server (discovery, and create/get/list/update/patch/delete of any
object, kept in memory) on 127.0.0.1, so Helm does everything a real install does: values schema validation,
CRD installation, template rendering, building the objects through discovery's REST mapping, creating them.
Output: {"manifest": the rendered templates as `helm template` prints them, "notes": the rendered NOTES.txt,
"crds": the chart's CRDs as Helm sent them, "created": every object Helm created, as sent}.

install: Helm's Install action against the cluster of $KUBECONFIG (`helm install --create-namespace --wait`;
used by the e2e test; `--no-wait` returns once the objects exist, for a control plane without a kubelet).
Output: {"name": ..., "namespace": ..., "version": ...}.
uninstall: Helm's Uninstall action (`helm uninstall --wait`) against the cluster of $KUBECONFIG.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

helm_sdkpy = None  # imported by load_helm(), once HELM_DRIVER is right
yaml = None


def load_helm(storage_driver: str) -> None:
    """Imports helm_sdkpy with HELM_DRIVER set. Go's runtime in the library reads the environment the process
    started with, not os.environ, so the script runs itself again when the variable has to change."""
    global helm_sdkpy, yaml
    if os.environ.get("HELM_DRIVER") != storage_driver:
        env = dict(os.environ, HELM_DRIVER=storage_driver)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    try:
        import helm_sdkpy as module
        import yaml as yaml_module
    except ImportError as err:
        sys.stderr.write(
            f"helm_chart.py: cannot import helm_sdkpy or yaml ({err}); run scripts/setup.sh, which installs it into "
            ".cache/helm-venv (pip install --ignore-requires-python helm-sdkpy pyyaml)\n"
        )
        sys.exit(2)
    helm_sdkpy, yaml = module, yaml_module


SEVERITIES = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}

# (group, version, plural, kind, namespaced): what the fake API server's discovery advertises.
RESOURCES = [
    ("", "v1", "namespaces", "Namespace", False),
    ("", "v1", "services", "Service", True),
    ("", "v1", "serviceaccounts", "ServiceAccount", True),
    ("", "v1", "secrets", "Secret", True),
    ("", "v1", "configmaps", "ConfigMap", True),
    ("", "v1", "pods", "Pod", True),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True),
    ("", "v1", "events", "Event", True),
    ("apps", "v1", "deployments", "Deployment", True),
    ("apps", "v1", "statefulsets", "StatefulSet", True),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    ("coordination.k8s.io", "v1", "leases", "Lease", True),
    ("events.k8s.io", "v1", "events", "Event", True),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False),
    ("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", True),
    ("monitoring.coreos.com", "v1", "podmonitors", "PodMonitor", True),
    ("rustcd.io", "v1alpha1", "etcdclusters", "EtcdCluster", True),
]
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
DEFAULT_KUBE_VERSION = "1.32"


def group_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


class FakeApiServer:
    """An in-memory Kubernetes API server: enough of discovery and CRUD for Helm's install action."""

    def __init__(self, kube_version: str = DEFAULT_KUBE_VERSION, monitoring: bool = True) -> None:
        major, minor = kube_version.split(".")[:2]
        # Without the Prometheus operator's CRDs: no monitoring.coreos.com in discovery.
        self.resources = [r for r in RESOURCES if monitoring or r[0] != "monitoring.coreos.com"]
        self.version = {"major": major, "minor": minor, "gitVersion": f"v{major}.{minor}.0", "platform": "linux/amd64"}
        self.objects: dict[tuple[str, str, str, str], dict] = {}  # (gv, plural, namespace, name) -> object
        self.created: list[dict] = []
        self.lock = threading.Lock()
        self.revision = 1
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: every response has a Content-Length
            disable_nagle_algorithm = True  # headers and body go out as two writes

            def log_message(self, *_args) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                code, payload = server.handle(self.command, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            # Discovery opens a dozen connections at once; the default backlog of 5 drops some, and the
            # client's SYN retry costs a second each time.
            request_queue_size = 128

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def kubeconfig(self, namespace: str) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.httpd.server_port}"}}],
                "users": [{"name": "fake", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
                "current-context": "fake",
            }
        )

    # --- request handling ---

    def handle(self, method: str, raw_path: str, body: bytes) -> tuple[int, dict]:
        url = urlparse(raw_path)
        parts = [p for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        if method == "GET":
            discovery = self.discovery(parts)
            if discovery is not None:
                return 200, discovery
        target = self.resolve(parts)
        if target is None:
            return status(404, "NotFound", f"the server could not find the requested resource ({url.path})")
        gv, resource, namespace, name = target
        with self.lock:
            return self.crud(method, gv, resource, namespace, name, query, body)

    def discovery(self, parts: list[str]) -> dict | None:
        if parts == ["version"]:
            return self.version
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if parts == ["apis"]:
            groups: dict[str, list[str]] = {}
            for group, version, *_ in self.resources:
                if group and version not in groups.setdefault(group, []):
                    groups[group].append(version)
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": group,
                        "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                        "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
                    }
                    for group, versions in groups.items()
                ],
            }
        gv = None
        if len(parts) == 2 and parts[0] == "api":
            gv = ("", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            gv = (parts[1], parts[2])
        if gv is None:
            return None
        resources = [
            {"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind, "verbs": VERBS}
            for group, version, plural, kind, namespaced in self.resources
            if (group, version) == gv
        ]
        if not resources:
            return None
        listing = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(*gv)}
        return {**listing, "resources": resources}

    @staticmethod
    def resolve(parts: list[str]) -> tuple[str, str, str, str] | None:
        """/api/v1/... or /apis/G/V/... -> (groupVersion, plural, namespace, name); empty strings when absent."""
        if len(parts) >= 2 and parts[0] == "api":
            gv, rest = parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            return None
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        return gv, rest[0], namespace, rest[1] if len(rest) > 1 else ""

    def crud(self, method, gv, resource, namespace, name, query, body) -> tuple[int, dict]:
        key = (gv, resource, namespace, name)
        if method == "GET" and not name:
            selector = dict(
                term.split("=", 1) for term in query.get("labelSelector", [""])[0].split(",") if "=" in term
            )
            items = [
                obj
                for (g, r, ns, _), obj in sorted(self.objects.items())
                if (g, r) == (gv, resource) and (not namespace or ns == namespace)
                and all(obj.get("metadata", {}).get("labels", {}).get(k) == v for k, v in selector.items())
            ]
            kind = next((k for g, v, p, k, _ in self.resources if group_version(g, v) == gv and p == resource), "")
            return 200, {
                "kind": f"{kind}List",
                "apiVersion": gv,
                "metadata": {"resourceVersion": str(self.revision)},
                "items": items,
            }
        if method == "GET":
            if key in self.objects:
                return 200, self.objects[key]
            return status(404, "NotFound", f'{resource} "{name}" not found')
        try:
            obj = json.loads(body) if body else {}
        except ValueError:
            return status(415, "UnsupportedMediaType", "the fake API server accepts JSON bodies only")
        if method == "POST":
            name = obj.get("metadata", {}).get("name", "")
            key = (gv, resource, namespace, name)
            if key in self.objects:
                return status(409, "AlreadyExists", f'{resource} "{name}" already exists')
            self.created.append(json.loads(body))
            return 201, self.store(key, obj)
        if key not in self.objects and method in ("PUT", "PATCH", "DELETE"):
            return status(404, "NotFound", f'{resource} "{name}" not found')
        if method == "PUT":
            return 200, self.store(key, obj)
        if method == "PATCH":
            return 200, self.store(key, merge_patch(self.objects[key], obj))
        if method == "DELETE":
            return 200, self.objects.pop(key)
        return status(405, "MethodNotAllowed", f"{method} is not supported")

    def store(self, key, obj: dict) -> dict:
        self.revision += 1
        meta = obj.setdefault("metadata", {})
        if key[2]:
            meta["namespace"] = key[2]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2025-01-01T00:00:00Z")
        meta["resourceVersion"] = str(self.revision)
        self.objects[key] = obj
        return obj


def status(code: int, reason: str, message: str) -> tuple[int, dict]:
    failure = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message}
    return code, {**failure, "code": code}


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (what a strategic merge patch of plain fields amounts to)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def deep_merge(base: dict, overrides: dict) -> dict:
    """Helm's values coalescing for --values: maps merge, anything else replaces (null deletes)."""
    result = dict(base)
    for key, value in overrides.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def lint(chart: str, values: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="helm-lint-") as tmp:
        if values:
            copy = os.path.join(tmp, os.path.basename(os.path.abspath(chart)))
            shutil.copytree(chart, copy)
            with open(os.path.join(copy, "values.yaml"), encoding="utf-8") as f:
                current = yaml.safe_load(f) or {}
            with open(os.path.join(copy, "values.yaml"), "w", encoding="utf-8") as f:
                # JSON is YAML: write the merged values back in a form Helm reads.
                json.dump(deep_merge(current, values), f, indent=2)
            chart = copy
        config = helm_sdkpy.Configuration(namespace="default", kubeconfig=os.path.join(tmp, "none"))
        result = asyncio.run(helm_sdkpy.Lint(config).run(chart))
    messages = [
        {"severity": SEVERITIES.get(m.get("Severity"), str(m.get("Severity"))), "path": m.get("Path", "")}
        for m in result.get("Messages") or []
    ]
    return {"messages": messages, "errors": len(result.get("Errors") or [])}


def render(chart: str, values: dict, release: str, namespace: str, kube_version: str, monitoring: bool) -> dict:
    with FakeApiServer(kube_version, monitoring) as api, tempfile.TemporaryDirectory(prefix="helm-render-") as tmp:
        kubeconfig = os.path.join(tmp, "kubeconfig")
        with open(kubeconfig, "w", encoding="utf-8") as f:
            f.write(api.kubeconfig(namespace))
        config = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=kubeconfig)
        result = asyncio.run(
            helm_sdkpy.Install(config).run(release, chart, values=values or None, wait=False, timeout=60)
        )
        crd_kind = "CustomResourceDefinition"
        return {
            "manifest": result.get("manifest", ""),
            "notes": (result.get("info") or {}).get("notes", ""),
            "crds": [obj for obj in api.created if obj.get("kind") == crd_kind],
            "created": [obj for obj in api.created if obj.get("kind") != crd_kind],
        }


def install(chart: str, values: dict, release: str, namespace: str, timeout: int, wait: bool = True) -> dict:
    config = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=os.environ.get("KUBECONFIG"))
    result = asyncio.run(
        helm_sdkpy.Install(config).run(
            release, chart, values=values or None, create_namespace=True, wait=wait, timeout=timeout
        )
    )
    return {"name": result.get("name", release), "namespace": namespace, "version": result.get("version")}


def uninstall(release: str, namespace: str, timeout: int) -> dict:
    config = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=os.environ.get("KUBECONFIG"))
    asyncio.run(helm_sdkpy.Uninstall(config).run(release, wait=True, timeout=timeout))
    return {"name": release, "namespace": namespace}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["lint", "render", "install", "uninstall"])
    parser.add_argument("chart", help="the chart folder (ignored by uninstall)")
    parser.add_argument("--values", default="{}", help="value overrides as a JSON object")
    parser.add_argument("--release", default="rustcd-operator")
    parser.add_argument("--namespace", default="rustcd-system")
    parser.add_argument("--timeout", type=int, default=300)
    parser.add_argument("--no-wait", action="store_true", help="install: do not wait for the Deployment")
    parser.add_argument("--kube-version", default=DEFAULT_KUBE_VERSION, help="render: the fake API server's version")
    parser.add_argument(
        "--no-monitoring-api", action="store_true", help="render: the fake API server serves no monitoring.coreos.com"
    )
    args = parser.parse_args()
    values = json.loads(args.values)
    if not isinstance(values, dict):
        parser.error("--values must be a JSON object")
    # render keeps the release record in memory (Helm's Secret driver would send it to the fake API server as
    # protobuf); install stores it in a Secret, as `helm install` does.
    load_helm("memory" if args.action == "render" else "secret")
    try:
        if args.action == "lint":
            out = lint(args.chart, values)
        elif args.action == "render":
            out = render(args.chart, values, args.release, args.namespace, args.kube_version, not args.no_monitoring_api)
        elif args.action == "install":
            out = install(args.chart, values, args.release, args.namespace, args.timeout, wait=not args.no_wait)
        else:
            out = uninstall(args.release, args.namespace, args.timeout)
    except helm_sdkpy.HelmError as err:
        sys.stderr.write(f"helm_chart.py {args.action}: {err}\n")
        return 1
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
