"""Rendered Druid runtime properties (druid/properties.py) with and without TLS (spec kubedb-api §2.6, druid-tls §1)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubedruid.druid import properties, tls
from kubedruid.druid.nodes import (
    BROKERS,
    COORDINATORS,
    HISTORICALS,
    MIDDLE_MANAGERS,
    OVERLORDS,
    RESTART_ORDER,
    ROUTERS,
)
from kubedruid.druid.properties import ClusterConfig, MetadataStore

MYSQL = MetadataStore(type="MySQL", host="druid-cluster-mysql-metadata.demo.svc.cluster.local", port=3306,
                      database="druid", user="root")
POSTGRES = MetadataStore(type="PostgreSQL", host="pg.demo.svc.cluster.local", port=5432, database="druid",
                         user="postgres")


def config(**overrides) -> ClusterConfig:
    kw = {"zookeeper": "druid-cluster-zk.demo.svc.cluster.local:2181", "zookeeper_base": "/druid",
          "metadata": MYSQL, "deep_storage_type": "s3",
          "deep_storage_properties": {"druid.storage.bucket": "druid", "druid.storage.baseKey": "druid/segments"}}
    kw.update(overrides)
    return ClusterConfig(**kw)


PLAIN = config()
TLS = config(tls_mode=tls.TLSMode.TLS_ONLY)

# spec kubedb-api §1.3 / druid-tls §1.5: (node, druid.service, plaintext port, TLS port)
NODE_TABLE = [
    (COORDINATORS, "druid/coordinator", 8081, 8281),
    (OVERLORDS, "druid/overlord", 8090, 8290),
    (BROKERS, "druid/broker", 8082, 8282),
    (ROUTERS, "druid/router", 8888, 9088),
    (HISTORICALS, "druid/historical", 8083, 8283),
    (MIDDLE_MANAGERS, "druid/middleManager", 8091, 8291),
]
HTTPS_PREFIXES = ("druid.server.https.", "druid.client.https.")
ENV_PROVIDER_VARIABLES = {properties.ADMIN_PASSWORD_ENV, properties.METADATA_PASSWORD_ENV, tls.KEYSTORE_PASSWORD_ENV}


def load_list(props: dict[str, str]) -> list[str]:
    value = json.loads(props["druid.extensions.loadList"])
    assert isinstance(value, list) and all(isinstance(x, str) for x in value)
    return value


def env_provider(value: str) -> dict:
    return json.loads(value)


# --- common.runtime.properties without TLS ---------------------------------------------------------------------


def test_plain_common_properties_have_no_tls_settings():
    props = properties.common_properties(PLAIN)
    assert not [k for k in props if k.startswith(HTTPS_PREFIXES)]
    assert "simple-client-sslcontext" not in load_list(props)
    # Druid's defaults (plaintext on, TLS off) apply: nothing switches them.
    assert props.get("druid.enableTlsPort", "false") == "false"
    assert props.get("druid.enablePlaintextPort", "true") == "true"


def test_plain_common_properties_point_at_dependencies():
    props = properties.common_properties(PLAIN)
    assert props["druid.zk.service.host"] == "druid-cluster-zk.demo.svc.cluster.local:2181"
    assert props["druid.zk.paths.base"] == "/druid"
    assert props["druid.metadata.storage.type"] == "mysql"
    assert props["druid.metadata.storage.connector.connectURI"].startswith(
        "jdbc:mysql://druid-cluster-mysql-metadata.demo.svc.cluster.local:3306/druid")
    assert props["druid.metadata.storage.connector.user"] == "root"
    assert props["druid.storage.type"] == "s3"
    # The user's deep-storage Secret keys are passed through.
    assert props["druid.storage.bucket"] == "druid"
    assert props["druid.storage.baseKey"] == "druid/segments"
    ext = load_list(props)
    assert "druid-s3-extensions" in ext and "mysql-metadata-storage" in ext
    assert "druid-basic-security" in ext


@pytest.mark.parametrize("kind,extension", [("s3", "druid-s3-extensions"), ("google", "druid-google-extensions"),
                                            ("azure", "druid-azure-extensions"), ("hdfs", "druid-hdfs-storage")])
def test_deep_storage_type_loads_its_extension(kind, extension):
    props = properties.common_properties(config(deep_storage_type=kind, deep_storage_properties={}))
    assert props["druid.storage.type"] == kind
    assert extension in load_list(props)
    others = set(properties.DEEP_STORAGE_EXTENSIONS.values()) - {extension}
    assert not others & set(load_list(props))


def test_postgresql_metadata_store():
    props = properties.common_properties(config(metadata=POSTGRES))
    assert props["druid.metadata.storage.type"] == "postgresql"
    assert props["druid.metadata.storage.connector.connectURI"] == "jdbc:postgresql://pg.demo.svc.cluster.local:5432/druid"
    ext = load_list(props)
    assert "postgresql-metadata-storage" in ext and "mysql-metadata-storage" not in ext


def test_security_off_has_no_basic_auth():
    props = properties.common_properties(config(security=False))
    assert not [k for k in props if k.startswith(("druid.auth.", "druid.escalator."))]
    assert "druid-basic-security" not in load_list(props)


def test_security_on_uses_basic_auth_with_admin_password_from_env():
    props = properties.common_properties(PLAIN)
    assert props["druid.auth.authenticatorChain"] == '["basic"]'
    assert env_provider(props["druid.auth.authenticator.basic.initialAdminPassword"]) == {
        "type": "environment", "variable": "DRUID_ADMIN_PASSWORD"}
    assert env_provider(props["druid.escalator.internalClientPassword"])["type"] == "environment"


# --- common.runtime.properties with TLS ------------------------------------------------------------------------


def test_tls_common_properties():
    props = properties.common_properties(TLS)
    env_password = {"type": "environment", "variable": "DRUID_KEY_STORE_PASSWORD"}
    assert props["druid.enableTlsPort"] == "true"
    assert props["druid.enablePlaintextPort"] == "false"
    # server keystore
    # a regular file the keystore sidecar keeps in step with the Secret, reloaded every 5 s (Druid >= 25)
    assert props["druid.server.https.keyStorePath"] == "/opt/druid/tls-live/keystore.jks"
    assert props["druid.server.https.reloadSslContext"] == "true"
    assert props["druid.server.https.reloadSslContextSeconds"] == "5"
    assert props["druid.server.https.keyStoreType"] == "jks"
    assert props["druid.server.https.certAlias"] == "druid"
    assert env_provider(props["druid.server.https.keyStorePassword"]) == env_password
    # internal client truststore: the operator's CA bundle, PKCS#12 without a password (certs/bundle.py)
    assert props["druid.client.https.trustStorePath"] == "/opt/druid/trust/truststore.p12"
    assert props["druid.client.https.trustStoreType"] == "pkcs12"
    assert "druid.client.https.trustStorePassword" not in props
    # deliberate deviation from KubeDB (DESIGN §2.1): hostname validation stays on
    assert props["druid.client.https.validateHostnames"] == "true"
    # no mTLS (KubeDB never sets it)
    assert "druid.server.https.requireClientCertificate" not in props


def test_tls_loads_simple_client_sslcontext_as_json_list():
    ext = load_list(properties.common_properties(TLS))
    assert ext.count("simple-client-sslcontext") == 1
    assert "druid-basic-security" in ext and "druid-s3-extensions" in ext and "mysql-metadata-storage" in ext


def test_tls_keeps_everything_else():
    plain, secure = properties.common_properties(PLAIN), properties.common_properties(TLS)
    changed = {k for k in plain if plain[k] != secure.get(k)}
    assert changed == {"druid.extensions.loadList"}
    added = set(secure) - set(plain)
    assert added and all(k.startswith(HTTPS_PREFIXES) or k in ("druid.enableTlsPort", "druid.enablePlaintextPort")
                         for k in added)


def test_tls_keystore_and_truststore_paths():
    props = properties.common_properties(TLS)
    assert props["druid.server.https.keyStorePath"].startswith(tls.LIVE_DIR + "/")
    assert props["druid.client.https.trustStorePath"].startswith(tls.TRUST_DIR + "/")


@pytest.mark.parametrize("version, reloads", [("24.0.2", False), ("25.0.0", True), ("28.0.0", True),
                                              ("36.0.0", True)])
def test_keystore_reload_only_where_druid_has_it(version, reloads):
    props = properties.common_properties(config(tls_mode=tls.TLSMode.TLS_ONLY, druid_version=version))
    assert (props.get("druid.server.https.reloadSslContext") == "true") is reloads
    assert props["druid.server.https.keyStorePath"] == (tls.LIVE_KEYSTORE_PATH if reloads else tls.KEYSTORE_PATH)


# --- passwords --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [PLAIN, TLS, config(metadata=POSTGRES, tls_mode=tls.TLSMode.TLS_ONLY)], ids=["plain", "tls", "pg-tls"])
def test_no_property_holds_a_literal_password(cfg):
    rendered = [properties.common_properties(cfg)] + [properties.node_properties(n, cfg) for n in RESTART_ORDER]
    seen = 0
    for props in rendered:
        for key, value in props.items():
            if "password" in key.lower():
                seen += 1
                provider = json.loads(value)
                assert provider["type"] == "environment", key
                assert set(provider) == {"type", "variable"}, key
                assert provider["variable"] in ENV_PROVIDER_VARIABLES, key
    assert seen >= 2  # metadata password + admin password at least


# --- per-node properties ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [PLAIN, TLS], ids=["plain", "tls"])
@pytest.mark.parametrize("node,service,plain_port,tls_port", NODE_TABLE, ids=[n[0].key for n in NODE_TABLE])
def test_node_service_and_ports(cfg, node, service, plain_port, tls_port):
    props = properties.node_properties(node, cfg)
    assert props["druid.service"] == service
    assert props["druid.plaintextPort"] == str(plain_port)
    assert props["druid.tlsPort"] == str(tls_port)
    assert node.port(False) == plain_port and node.port(True) == tls_port
    assert not [k for k in props if k.startswith(HTTPS_PREFIXES)]  # TLS settings live in the common file


def test_node_specific_settings():
    assert properties.node_properties(ROUTERS, PLAIN)["druid.router.defaultBrokerServiceName"] == "druid/broker"
    assert properties.node_properties(ROUTERS, PLAIN)["druid.router.coordinatorServiceName"] == "druid/coordinator"
    assert properties.node_properties(OVERLORDS, PLAIN)["druid.indexer.storage.type"] == "metadata"
    # historicals keep segments on their data volume, middleManagers their tasks on theirs
    locations = json.loads(properties.node_properties(HISTORICALS, PLAIN)["druid.segmentCache.locations"])
    assert [loc["path"] for loc in locations] == [HISTORICALS.data_volume[1]] == ["/druid/data/segments"]
    assert (properties.node_properties(MIDDLE_MANAGERS, PLAIN)["druid.indexer.task.baseTaskDir"]
            == MIDDLE_MANAGERS.data_volume[1] == "/var/druid/task")


def test_coordinator_acts_as_overlord_without_overlords():
    cfg = config(has_overlords=False)
    props = properties.node_properties(COORDINATORS, cfg)
    assert props["druid.coordinator.asOverlord.enabled"] == "true"
    # the indexing service the other nodes look for is the one the coordinator announces
    common = properties.common_properties(cfg)
    assert props["druid.coordinator.asOverlord.overlordService"] == common["druid.selectors.indexing.serviceName"]
    assert props["druid.indexer.storage.type"] == "metadata"


def test_coordinator_is_not_overlord_when_overlords_exist():
    props = properties.node_properties(COORDINATORS, config(has_overlords=True))
    assert not [k for k in props if k.startswith("druid.coordinator.asOverlord")]


def test_common_selectors_name_the_announced_services():
    common = properties.common_properties(PLAIN)
    assert common["druid.selectors.indexing.serviceName"] == properties.node_properties(OVERLORDS, PLAIN)["druid.service"]
    assert (common["druid.selectors.coordinator.serviceName"]
            == properties.node_properties(COORDINATORS, PLAIN)["druid.service"])


# --- render / parse ---------------------------------------------------------------------------------------------


def test_render_is_sorted_key_value_lines():
    text = properties.render({"b.key": "2", "a.key": "1", "c": '{"x":"y"}'})
    assert text == 'a.key=1\nb.key=2\nc={"x":"y"}\n'


@pytest.mark.parametrize("cfg", [PLAIN, TLS, config(has_overlords=False, tls_mode=tls.TLSMode.TLS_ONLY)], ids=["plain", "tls", "no-ovl"])
def test_render_roundtrips_every_generated_file(cfg):
    files = [properties.common_properties(cfg)] + [properties.node_properties(n, cfg) for n in RESTART_ORDER]
    for props in files:
        text = properties.render(props)
        keys = [line.split("=", 1)[0] for line in text.splitlines()]
        assert keys == sorted(props)
        assert properties.parse(text) == props
        # Java .properties treats a backslash as an escape: generated values must not contain one.
        assert "\\" not in text


def test_parse_skips_comments_and_blank_lines():
    assert properties.parse("# comment\n! other\n\n  a.b = c=d \nno-separator\n") == {"a.b": "c=d"}


_keys = st.from_regex(r"[a-zA-Z][a-zA-Z0-9._-]{0,30}", fullmatch=True)
# Printable ASCII without backslash (a .properties file is Latin-1 with backslash escapes); no edge whitespace.
_values = st.from_regex(r"[!-\[\]-~]([ -\[\]-~]{0,40}[!-\[\]-~])?", fullmatch=True) | st.just("")


@given(st.dictionaries(_keys, _values, max_size=20))
def test_parse_render_roundtrip_property(props):
    assert properties.parse(properties.render(props)) == props


def test_multi_stage_query_is_loaded_as_an_extension_only_before_druid_35():
    def load_list(version):
        return json.loads(properties.common_properties(config(druid_version=version))["druid.extensions.loadList"])

    assert "druid-multi-stage-query" in load_list("31.0.0")
    assert "druid-multi-stage-query" not in load_list("36.0.0")


# --- probes under basic security --------------------------------------------------------------------------------

# Paths Druid serves without authentication by itself (its Jetty initializers' UNSECURED_PATHS, apache/druid#8841).
DRUID_UNSECURED = {"/status/health", "/druid/historical/v1/readiness", "/druid/broker/v1/readiness"}


def test_security_leaves_every_readiness_path_open_to_the_kubelet():
    """The kubelet's probes carry no credentials: each node type's readiness path is unsecured by Druid or by us."""
    unsecured = json.loads(properties.common_properties(PLAIN)["druid.auth.unsecuredPaths"])
    assert unsecured == ["/status/selfDiscovered"]  # nothing more is opened than the probes need
    for node in RESTART_ORDER:
        assert node.readiness_path in DRUID_UNSECURED | set(unsecured), node.key


def test_no_unsecured_paths_without_security():
    assert "druid.auth.unsecuredPaths" not in properties.common_properties(config(security=False))


def test_user_unsecured_paths_keep_the_probe_paths():
    ours = properties.common_properties(PLAIN)
    user = {"druid.auth.unsecuredPaths": '["/druid/coordinator/v1/loadqueue"]'}
    merged = properties.with_user(ours, user, security=True)
    assert json.loads(merged["druid.auth.unsecuredPaths"]) == ["/druid/coordinator/v1/loadqueue",
                                                               "/status/selfDiscovered"]
    # in a node's own file too (it overrides the common one)
    node = properties.with_user(properties.node_properties(ROUTERS, PLAIN), user, security=True)
    assert "/status/selfDiscovered" in json.loads(node["druid.auth.unsecuredPaths"])
    # everything else: theirs
    assert properties.with_user(ours, {"druid.emitter": "logging"}, security=True)["druid.emitter"] == "logging"
    assert properties.with_user({}, user, security=False) == user


# --- the TLS modes between plaintext and TLS only (druid-tls §3.3) -----------------------------------------------

MODES = list(tls.TLSMode)


def _mode_props(mode: tls.TLSMode) -> dict[str, str]:
    return properties.common_properties(config(tls_mode=mode))


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_each_mode_renders_exactly_its_halves(mode):
    props = _mode_props(mode)
    client = {k for k in props if k.startswith("druid.client.https.")}
    server = {k for k in props if k.startswith("druid.server.https.")}
    assert bool(client) is mode.client_trust
    assert ("simple-client-sslcontext" in load_list(props)) is mode.client_trust
    assert bool(server) is mode.tls_port and (props.get("druid.enableTlsPort") == "true") is mode.tls_port
    # Druid's default is plaintext on: only tls-only closes it.
    assert props.get("druid.enablePlaintextPort", "true") == ("true" if mode.plaintext_port else "false")


def test_adjacent_modes_differ_in_one_half_only():
    """Each roll changes one thing (druid-tls §3.4): no two of client trust, TLS port and plaintext port move in
    the same step. tls-port -> tls-services changes only the Services, not the properties."""
    halves = lambda m: (m.client_trust, m.tls_port, m.plaintext_port)  # noqa: E731
    order = [tls.TLSMode.OFF, tls.TLSMode.CLIENT_TRUST, tls.TLSMode.TLS_PORT, tls.TLSMode.TLS_SERVICES,
             tls.TLSMode.TLS_ONLY]
    for a, b in zip(order, order[1:]):
        moved = sum(x != y for x, y in zip(halves(a), halves(b)))
        assert moved == (0 if (a, b) == (tls.TLSMode.TLS_PORT, tls.TLSMode.TLS_SERVICES) else 1), (a, b)
        if moved == 0:
            assert _mode_props(a) == _mode_props(b) and a.services_tls != b.services_tls


def test_a_node_with_its_tls_port_open_always_has_client_trust():
    """Peers reach a node over HTTPS once it announces a TLS port; every mode that opens one also trusts."""
    assert all(m.client_trust for m in MODES if m.tls_port)
    assert all(m.plaintext_port for m in MODES if not m.services_tls), "Services never point at a closed port"
    for m in MODES:  # a Service offers only ports every pod of that mode serves
        assert all((m.tls_port if tls_ else m.plaintext_port) for tls_ in m.service_schemes), m
    assert tls.TLSMode.declared(True) is tls.TLSMode.TLS_ONLY and tls.TLSMode.declared(False) is tls.TLSMode.OFF
