"""compose/ stays consistent with the code: every setting it sets exists, every service it
runs exists, every file it mounts is in the repository, HAProxy targets the filters'
PROXY-protocol ports. (Without a Docker engine; compose/tests runs the deployment for real.)"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import re
from pathlib import Path
from typing import Any, get_args

import yaml

from mailcore import config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose"
SETTINGS = [
    config.FilterSettings,
    config.StoreSettings,
    config.RelaySettings,
    config.WebmailSettings,
    config.MirrorSettings,
    config.ClusterSettings,
]


def _known_env_names() -> set[str]:
    names = {"POSTERN_CONFIG", "POSTERN_MIRROR_NODES"}  # the latter: mailctl nats-auth's
    for cls in SETTINGS:
        for field, info in cls.model_fields.items():
            alias = info.validation_alias
            choices = getattr(alias, "choices", None)
            if choices:
                names.update(c for c in choices if isinstance(c, str) and c.isupper())
            names.add(config.env_name(cls, field))
    return names


def _load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((COMPOSE / name).read_text()))


def _env_vars(doc: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for svc in doc["services"].values():
        env = svc.get("environment") or {}
        found.update(k for k in env if k.startswith("POSTERN_"))
    return found


def test_every_setting_named_exists() -> None:
    known = _known_env_names()
    used = _env_vars(_load("compose.yaml")) | _env_vars(_load("compose.ha.yaml"))
    example = (COMPOSE / "postern.env.example").read_text()
    used |= set(re.findall(r"^#?\s*(POSTERN_[A-Z0-9_]+)=", example, re.M))
    unknown = sorted(used - known)
    assert not unknown, f"compose sets settings that do not exist: {unknown}"


def test_every_service_module_and_file_exists() -> None:
    doc = _load("compose.yaml")
    for name, svc in doc["services"].items():
        command = svc.get("command")
        if isinstance(command, list) and command[:2] == ["python", "-m"]:
            assert importlib.util.find_spec(command[2]) is not None, name
        build = svc.get("build")
        if build:
            assert (COMPOSE / build["context"] / build["dockerfile"]).exists(), name
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE / source).exists(), f"{name}: {source}"
    cluster = _load("compose.ha.yaml")
    for svc in cluster["services"].values():
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE / source).exists(), source


def test_haproxy_targets_the_proxy_ports() -> None:
    filt = _load("compose.yaml")["services"]["filter"]["environment"]
    proxy_ports = {
        filt["POSTERN_PROXY_SMTP_PORT"],
        filt["POSTERN_PROXY_SUBMISSION_PORT"],
        filt["POSTERN_PROXY_SUBMISSIONS_PORT"],
    }
    cfg = (COMPOSE / "haproxy.cfg").read_text()
    targets = set(re.findall(r"filter:(\d+) send-proxy-v2", cfg))
    assert targets == proxy_ports


def test_nats_configs_fsync_every_write() -> None:
    for conf in (COMPOSE / "nats").glob("*.conf"):
        assert "sync_interval: always" in conf.read_text(), conf.name


def test_every_service_has_a_health_check_and_waits_for_health() -> None:
    doc = _load("compose.yaml")
    services = doc["services"]
    names = {"nats", "clamav", "spamd", "filter", "store", "webmail", "haproxy"}
    assert names | {"store2", "mirror", "prometheus", "grafana"} <= set(services)
    for name, svc in services.items():
        if name == "certs":  # a one-shot job: others wait for it to complete
            continue
        build = svc.get("build") or {}
        dockerfile = COMPOSE / build.get("context", ".") / build.get("dockerfile", "-")
        has_image_check = dockerfile.is_file() and "HEALTHCHECK" in dockerfile.read_text()
        assert "healthcheck" in svc or has_image_check, name
        for dep, cond in (svc.get("depends_on") or {}).items():
            want = "service_completed_successfully" if dep == "certs" else "service_healthy"
            assert cond == {"condition": want}, (name, dep)


def test_every_dockerfile_takes_a_base_image_and_drops_root() -> None:
    for dockerfile in COMPOSE.glob("*Dockerfile"):
        text = dockerfile.read_text()
        assert re.search(r"^ARG BASE_IMAGE=\S+", text, re.M), dockerfile.name
        assert "FROM ${BASE_IMAGE}" in text, dockerfile.name
        users = re.findall(r"^USER (\S+)", text, re.M)
        assert users and users[-1] not in ("root", "0"), dockerfile.name


def test_second_store_never_consumes_inbound_mail() -> None:
    services = _load("compose.yaml")["services"]
    primary = services["store"]["environment"]["POSTERN_NATS_URL"]
    second = services["store2"]["environment"]["POSTERN_NATS_URL"]
    assert second != primary
    assert services["store2"]["profiles"] == ["mirror"]
    assert services["mirror"]["environment"]["POSTERN_PEER_NATS_URL"] == second
    # a mirror process beside each store (each on its store's NATS), names crossed
    a, b = services["mirror"]["environment"], services["mirror2"]["environment"]
    assert a.get("POSTERN_NATS_URL", primary) == primary and b["POSTERN_NATS_URL"] == second
    assert b["POSTERN_PEER_NATS_URL"] == primary
    assert (a["POSTERN_MIRROR_NODE"], a["POSTERN_MIRROR_PEER"]) == (
        b["POSTERN_MIRROR_PEER"],
        b["POSTERN_MIRROR_NODE"],
    )
    assert services["mirror2"]["profiles"] == ["mirror"]


def test_mirror_pair_starts_with_a_master_and_a_slave() -> None:
    """The store the filters hand mail to (their NATS) starts as master, store2 as slave;
    each mirror runs beside its store under the node name the roles are kept for."""
    services = _load("compose.yaml")["services"]
    allowed = set(get_args(config.StoreSettings.model_fields["mirror_role"].annotation))
    env = {name: services[name]["environment"] for name in ("store", "store2", "filter")}
    roles = {name: env[name].get("POSTERN_MIRROR_ROLE") for name in ("store", "store2")}
    assert roles == {"store": "master", "store2": "slave"} and set(roles.values()) <= allowed
    assert env["filter"]["POSTERN_NATS_URL"] == env["store"]["POSTERN_NATS_URL"]
    beside = {
        svc["environment"]["POSTERN_NATS_URL"]: svc["environment"]["POSTERN_MIRROR_NODE"]
        for name, svc in services.items()
        if name.startswith("mirror")
    }
    assert beside == {
        env["store"]["POSTERN_NATS_URL"]: "store-a",
        env["store2"]["POSTERN_NATS_URL"]: "store-b",
    }


def test_health_checks_ask_each_service_on_its_own_ops_port() -> None:
    """A health check asks the service it belongs to: the mirrors' is the mirror's own
    /healthz (liveness: its NATS and its store answer it; the peer's link is /readyz's, so
    a peer outage does not mark the local mirror unhealthy), not the store's."""
    modules = {
        "services.filter": config.FilterSettings,
        "services.filter.relay": config.RelaySettings,
        "services.store": config.StoreSettings,
        "services.webmail": config.WebmailSettings,
        "services.mirror": config.MirrorSettings,
    }
    seen = set()
    for name, svc in _load("compose.yaml")["services"].items():
        command = svc.get("command")
        if not (
            isinstance(command, list) and command[:3] in (["python", "-m", m] for m in modules)
        ):
            continue  # (nats: its own monitoring port)
        port = modules[command[2]].model_fields["ops_port"].default
        url = f"http://127.0.0.1:{port}/healthz"
        assert svc["healthcheck"]["test"] == ["CMD", "postern-probe", "http", url], name
        seen.add(command[2])
    assert seen == set(modules)


def test_prometheus_discovers_replicas_by_dns() -> None:
    prom = _load("prometheus.yml")
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    for job, port in (("postern-filter", 9101), ("postern-webmail", 9103), ("postern-relay", 9105)):
        (sd,) = jobs[job]["dns_sd_configs"]
        assert sd["type"] == "A" and sd["port"] == port
    # the mirror profile: both mirror processes, and the second store beside the first
    (sd,) = jobs["postern-mirror"]["dns_sd_configs"]
    assert sorted(sd["names"]) == ["mirror", "mirror2"] and sd["port"] == 9104
    assert "store2" in jobs["postern-store"]["dns_sd_configs"][0]["names"]


def test_prometheus_scrapes_every_nats_node_on_its_runners_ops_port() -> None:
    """Debian has no prometheus-nats-exporter: every nats service (the mirror's, the ha
    variant's) runs natsrun with --ops-port, whose /metrics Prometheus scrapes by DNS."""
    (sd,) = {j["job_name"]: j for j in _load("prometheus.yml")["scrape_configs"]}["postern-nats"][
        "dns_sd_configs"
    ]
    base, ha = _load("compose.yaml")["services"], _load("compose.ha.yaml")["services"]
    nodes = {}
    for name, svc in [*base.items(), *ha.items()]:
        command = svc.get("command") or []
        if "services.ctl.natsrun" in command:
            nodes[name] = command[command.index("--ops-port") + 1]
    assert sorted(nodes) == ["nats", "nats-2", "nats-3", "nats-mirror"]
    assert sd["type"] == "A" and sorted(sd["names"]) == sorted(nodes)
    assert set(nodes.values()) == {str(sd["port"])}


def test_grafana_provisioning_parses_and_dashboards_name_real_metrics() -> None:
    from prometheus_client import REGISTRY

    from mailcore import metrics  # noqa: F401  (registers every metric)

    known: set[str] = set()
    for sample_names in REGISTRY._collector_to_names.values():
        known.update(sample_names)
    grafana = COMPOSE / "grafana"
    for provisioning in (grafana / "provisioning").rglob("*.yml"):
        assert yaml.safe_load(provisioning.read_text())["apiVersion"] == 1
    exprs = []
    for dashboard in (grafana / "dashboards").glob("*.json"):
        doc = json.loads(dashboard.read_text())
        exprs += [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    assert exprs
    # the panels issue 17 asks for, each over the metrics that measure it
    for needed in (
        "postern_smtp_accepted_total",  # mail flow
        "postern_deliveries_total",
        "postern_relay_deliveries_total",
        "postern_smtp_rejected_total",  # rejects by reason
        "postern_scan_seconds_bucket",  # scan latency
        "postern_relay_queue_depth",  # queue depth
        "postern_relay_oldest_seconds",
        "postern_delivery_paused",
        "postern_inbound_queue_depth",
        "postern_nats_consumer_pending",  # NATS's own count (natsrun --ops-port)
        "postern_nats_jetstream_storage_bytes",
        "postern_mirror_lag_seconds",  # the mirror panel: lag, queued, applied, conflicts,
        "postern_mirror_queued",  # errors, per peer (issue 12)
        "postern_mirror_records_applied_total",
        "mirror_conflicts_total",
        "postern_mirror_errors_total",
        "postern_mirror_peer_up",  # the link panel: peer reachable, sync mode fallen back
        "postern_mirror_sync_degraded",
    ):
        assert any(needed in e for e in exprs), needed
    for expr in exprs:
        named = set(re.findall(r"\b((?:postern_|mirror_)[a-z0-9_]+)", expr))
        assert named and named <= known, (expr, named - known)


def test_env_example_documents_every_setting() -> None:
    example = (COMPOSE / "postern.env.example").read_text()
    listed = set(re.findall(r"^#?\s*(POSTERN_[A-Z0-9_]+)=", example, re.M))
    every = {config.env_name(cls, field) for cls in SETTINGS for field in cls.model_fields}
    missing = sorted(every - listed)
    assert not missing, f"postern.env.example lacks {missing}"
    assert listed <= _known_env_names()  # and names nothing that does not exist


def test_clamav_image_seeds_the_test_signatures_of_the_suite() -> None:
    shipped = {p.name: p.read_bytes() for p in (COMPOSE / "clamav").iterdir()}
    suite = {p.name: p.read_bytes() for p in (ROOT / "tests" / "data" / "clamav").iterdir()}
    assert shipped == suite and "eicar.ndb" in shipped


def test_lock_pins_every_runtime_dependency() -> None:
    # the images install only what compose/requirements.lock pins (pip install --no-index):
    # a dependency of an extra missing there breaks that service only at run time
    import tomllib

    project = tomllib.loads((COMPOSE.parent / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra, deps in project["optional-dependencies"].items():
        if extra in ("filter", "store", "webmail", "mirror"):
            wanted += deps
    lock = (COMPOSE / "requirements.lock").read_text().lower().replace("_", "-")
    pinned = set(re.findall(r"^([a-z0-9.-]+)==", lock, re.M))
    for dep in wanted:
        name = re.split(r"[<>=;\[ ]", dep, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, name


def test_webmail_sends_through_the_filters_and_teaches_spamd() -> None:
    services = _load("compose.yaml")["services"]
    web = services["webmail"]
    host = web["environment"]["POSTERN_SUBMISSION_HOST"]
    assert host in services and "python -m services.filter" in " ".join(services[host]["command"])
    # filter's submission listener, and the certificate its STARTTLS presents
    assert web["environment"]["POSTERN_SUBMISSION_PORT"] == "2587"
    assert "tls:/var/lib/postern/tls:ro" in web["volumes"]
    assert '"--allow-tell"' in (COMPOSE / "spamd.Dockerfile").read_text()


def _block(text: str, name: str) -> str:
    """The body of a top-level ``name { … }`` block of a nats-server configuration."""
    start = re.search(rf"^{name}\s*{{", text, re.M)
    assert start is not None, name
    depth, i = 1, start.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start.end() : i - 1]


def test_cluster_routes_are_tls_verified_by_the_cluster_ca(tmp_path: Path) -> None:
    """Every ha node's routes are TLS (issue 18): its ``cluster`` block includes the route
    TLS section the certs job writes into the nats-auth volume every node mounts; that
    section verifies the peer against the cluster's own CA, whose route certificate names
    every host a route dials. (tests/services/ctl/test_cluster_routes.py runs the nodes.)"""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from services.ctl import natsauth

    base, ha = _load("compose.yaml")["services"], _load("compose.ha.yaml")["services"]
    merged = {name: base.get(name, {}) | ha.get(name, {}) for name in base | ha}
    hosts = re.search(r"--hosts (\S+)", " ".join(merged["certs"]["command"]))
    assert hosts is not None
    cert_names = hosts.group(1).split(",")
    nodes: dict[str, str] = {}  # service -> its configuration
    for name, svc in merged.items():
        confs = [c for c in svc.get("command") or [] if re.search(r"/cluster-\d\.conf$", c)]
        if confs:
            nodes[name] = confs[0].rsplit("/", 1)[1]
            assert "nats-auth:/etc/postern/nats/auth:ro" in svc["volumes"], name
            assert svc["depends_on"]["certs"] == {"condition": "service_completed_successfully"}
    assert sorted(nodes.values()) == ["cluster-1.conf", "cluster-2.conf", "cluster-3.conf"]
    for conf in nodes.values():
        cluster = _block((COMPOSE / "nats" / conf).read_text(), "cluster")
        assert re.search(r"^\s*include auth/cluster\.conf$", cluster, re.M), conf
        routes = re.findall(r"nats-route://([^:/\s]+):6222", cluster)
        assert sorted(routes) == sorted(nodes) and set(routes) <= set(cert_names), conf

    # what the include names: the certs job's route TLS section
    natsauth.write_deployment(tmp_path / "auth", tmp_path / "secrets", cert_names)
    tls = _block((tmp_path / "auth" / "cluster.conf").read_text(), "tls")
    files = dict(re.findall(r'^\s*(cert_file|key_file|ca_file): "([^"]+)"$', tls, re.M))
    assert re.search(r"^\s*verify: true$", tls, re.M)
    ca_pem = Path(files["ca_file"]).read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    route = x509.load_pem_x509_certificate(Path(files["cert_file"]).read_bytes())
    route.verify_directly_issued_by(ca)
    assert Path(files["key_file"]).stat().st_mode & 0o077 == 0
    # the cluster's CA is not the clients' (which services hold): no client-facing
    # certificate is a route certificate
    assert ca.public_bytes(Encoding.PEM) != (tmp_path / "auth" / "tls" / "ca.pem").read_bytes()
    usage = route.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usage)
    sans = route.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(nodes) <= set(sans.get_values_for_type(x509.DNSName))
    # kept across runs of the certs job (every `compose up`): the nodes keep trusting each other
    natsauth.write_deployment(tmp_path / "auth", tmp_path / "secrets", cert_names)
    assert Path(files["ca_file"]).read_bytes() == ca_pem


def test_ha_streams_are_declared_with_three_replicas() -> None:
    """In the ha variant the service that declares the streams (natsrun --declare, as
    mailctl: the services' own users may not) makes them R3. It had no
    POSTERN_STREAM_REPLICAS: every stream was R1 on one node, and test_ha.py, which kills
    nats-2, got no mail accepted whenever MAIL_INBOUND or the bodies lived there."""
    base, ha = _load("compose.yaml")["services"], _load("compose.ha.yaml")["services"]
    declaring = []
    for name, svc in ha.items():
        command = svc.get("command") or base.get(name, {}).get("command") or []
        if "--declare" in command:
            declaring.append(name)
            env = base.get(name, {}).get("environment", {}) | svc.get("environment", {})
            assert env.get("POSTERN_STREAM_REPLICAS") == "3", name
    assert declaring == ["nats"]


def test_backend_subnet_default_lies_outside_dockers_default_pools() -> None:
    """Docker hands networks out of 172.17-172.31.0.0/16 and 192.168.0.0/16 by default; a
    backend subnet inside them can clash with one ("Pool overlaps"), e.g. when the
    project's own default network, made first, is given the whole /16."""
    text = (COMPOSE / "compose.yaml").read_text()
    defaults = set(re.findall(r"\$\{BACKEND_SUBNET:-([0-9./]+)\}", text))
    assert len(defaults) == 1, defaults  # the network and the trusted networks agree
    subnet = ipaddress.ip_network(defaults.pop())
    pools = [ipaddress.ip_network(f"172.{n}.0.0/16") for n in range(17, 32)]
    pools.append(ipaddress.ip_network("192.168.0.0/16"))
    assert not any(subnet.overlaps(p) for p in pools), subnet
    assert subnet.is_private
