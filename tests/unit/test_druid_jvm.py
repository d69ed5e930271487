"""JVM sizes from a container's memory limit and CPUs (druid/jvm.py, decision 0008)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubedruid.druid import jvm, properties
from kubedruid.druid.nodes import BY_KEY, BROKERS, HISTORICALS, MIDDLE_MANAGERS, RESTART_ORDER, ROUTERS
from kubedruid.druid.properties import ClusterConfig, MetadataStore

MiB = 1024 * 1024
CFG = ClusterConfig(zookeeper="zk:2181", zookeeper_base="/druid",
                    metadata=MetadataStore("MySQL", "mysql", 3306, "druid", "root"), deep_storage_type="s3")


def rendered(node) -> dict[str, str]:
    """What the node runs with: common + node properties as rendered."""
    return {**properties.common_properties(CFG), **properties.node_properties(node, CFG)}


def size(flag_value: str) -> int:
    m = re.fullmatch(r"(\d+)([kmg]?)", flag_value.lower())
    return int(m[1]) * {"": 1, "k": 1024, "m": MiB, "g": 1024 * MiB}[m[2]]


# --- Druid's own rules --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [("50000000", 50_000_000), ("500m", 500_000_000), ("1G", 10**9),
                                           ("64MiB", 64 * MiB), ("64mib", 64 * MiB), ("2Gi", 2 * 1024 * MiB),
                                           ("10k", 10_000), (" 7 ", 7)])
def test_druid_human_readable_bytes(text, expected):
    assert jvm.druid_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "5 MB", "1.5g", "-3"])
def test_druid_bytes_refuses_what_druid_refuses(text):
    with pytest.raises(ValueError):
        jvm.druid_bytes(text)


def test_processing_direct_is_druids_start_check():
    # buffer.sizeBytes x (numThreads + numMergeBuffers + 1)
    props = {jvm.BUFFER_SIZE: "100000000", jvm.NUM_THREADS: "3", jvm.NUM_MERGE_BUFFERS: "2"}
    assert jvm.processing_direct(props) == 600_000_000
    # without sizeBytes Druid sizes the buffers to what the JVM has: nothing demanded
    assert jvm.processing_direct({jvm.NUM_THREADS: "3"}) == 0
    # Druid's defaults for the counts: numThreads = CPUs - 1 (at least 1), numMergeBuffers = max(2, numThreads / 4)
    assert jvm.processing_direct({jvm.BUFFER_SIZE: "1000"}, processors=9) == 1000 * (8 + 2 + 1)
    assert jvm.processing_direct({jvm.BUFFER_SIZE: "1000"}, processors=1) == 1000 * (1 + 2 + 1)


# --- the rendered defaults fit ------------------------------------------------------------------------------------


@pytest.mark.parametrize("node", [BROKERS, HISTORICALS])
def test_direct_memory_covers_the_rendered_processing_buffers(node):
    props = rendered(node)
    needed = (int(props[jvm.BUFFER_SIZE])
              * (int(props[jvm.NUM_THREADS]) + int(props[jvm.NUM_MERGE_BUFFERS]) + 1))
    plan = jvm.plan(node, 1024 * MiB, props, 1)
    assert plan.direct >= needed
    assert plan.direct - needed >= 32 * MiB  # slack for Jetty/NIO and decompression buffers


def test_peon_options_cover_their_processing_buffers():
    props = rendered(MIDDLE_MANAGERS)
    opts = props[jvm.PEON_JAVA_OPTS].split()
    heap = size(next(o for o in opts if o.startswith("-Xmx"))[4:])
    direct = size(next(o for o in opts if o.startswith("-XX:MaxDirectMemorySize="))[24:])
    fork = "druid.indexer.fork.property."
    needed = (int(props[fork + jvm.BUFFER_SIZE])
              * (int(props[fork + jvm.NUM_THREADS]) + int(props[fork + jvm.NUM_MERGE_BUFFERS]) + 1))
    assert direct >= needed
    assert 256 * MiB <= heap <= 1024 * MiB
    assert "-XX:+UseSerialGC" in opts and "-XX:+ExitOnOutOfMemoryError" in opts


def test_default_limits_give_these_figures():
    """The figures decision 0008 quotes, for KubeDB's default limits."""
    figures = {n.key: jvm.plan(n, (2560 if n is MIDDLE_MANAGERS else 1024) * MiB, rendered(n), 1)
               for n in RESTART_ORDER}
    as_mib = {k: (p.heap // MiB, p.direct // MiB, p.overhead // MiB) for k, p in figures.items()}
    assert as_mib == {"coordinators": (704, 64, 256), "overlords": (704, 64, 256), "brokers": (513, 255, 256),
                      "routers": (640, 128, 256), "historicals": (256, 255, 256), "middleManagers": (384, 64, 256)}
    peons = figures["middleManagers"].peons
    assert (peons.count, peons.heap // MiB, peons.direct // MiB, peons.overhead // MiB) == (2, 512, 160, 256)
    assert all(p.total <= p.limit for p in figures.values())


# --- any limit ----------------------------------------------------------------------------------------------------

nodes = st.sampled_from(RESTART_ORDER)


@settings(max_examples=200, deadline=None)
@given(node=nodes, limit_mib=st.integers(min_value=256, max_value=64 * 1024), cpus=st.sampled_from([None, 1, 2, 8]))
def test_the_budget_never_exceeds_the_limit(node, limit_mib, cpus):
    limit = limit_mib * MiB
    try:
        plan = jvm.plan(node, limit, rendered(node), cpus)
    except jvm.InsufficientMemory as e:
        assert e.minimum > limit and e.node == node.key
        return
    assert plan.total <= limit
    assert plan.heap >= jvm.SHARES[node.key].min_heap
    assert plan.overhead >= 150 * 10**6  # metaspace, code cache, threads (spec real-node §8: 150-250 MB)
    assert plan.heap % MiB == 0 and plan.direct % MiB == 0
    env = {e["name"]: e["value"] for e in plan.env()}
    assert env["DRUID_XMX"] == env["DRUID_XMS"] == f"{plan.heap // MiB}m"
    assert env["DRUID_MAXDIRECTMEMORYSIZE"] == f"{plan.direct // MiB}m"


@settings(max_examples=100, deadline=None)
@given(node=nodes, limit_mib=st.integers(min_value=2560, max_value=32 * 1024))
def test_more_memory_never_means_a_smaller_heap(node, limit_mib):
    smaller = jvm.plan(node, limit_mib * MiB, rendered(node), 1)
    larger = jvm.plan(node, (limit_mib + 512) * MiB, rendered(node), 1)
    assert larger.heap >= smaller.heap and larger.direct == smaller.direct


@pytest.mark.parametrize("node", RESTART_ORDER, ids=[n.key for n in RESTART_ORDER])
@pytest.mark.parametrize("buffer", ["50000000", "500000000"])
def test_the_minimum_named_is_exactly_enough(node, buffer):
    props = {**rendered(node), jvm.BUFFER_SIZE: buffer}
    with pytest.raises(jvm.InsufficientMemory) as e:
        jvm.plan(node, 300 * MiB, props, 1)
    minimum = e.value.minimum
    assert jvm.plan(node, minimum, props, 1).total <= minimum
    with pytest.raises(jvm.InsufficientMemory):
        jvm.plan(node, minimum - MiB, props, 1)
    assert e.value.reason == "InsufficientMemory"
    message = str(e.value)
    assert message.startswith(f"{node.key}: ") and f"{minimum // MiB}Mi" in message and "300Mi" in message


def test_middle_manager_minimum_counts_its_peons():
    with pytest.raises(jvm.InsufficientMemory) as e:
        jvm.plan(MIDDLE_MANAGERS, 1024 * MiB, rendered(MIDDLE_MANAGERS), 1)
    assert "2 peons" in str(e.value) and "druid.worker.capacity" in str(e.value)
    assert e.value.minimum >= 2 * (512 + 160) * MiB
    # one peon less: a smaller minimum
    fewer = {**rendered(MIDDLE_MANAGERS), jvm.WORKER_CAPACITY: "1"}
    with pytest.raises(jvm.InsufficientMemory) as e1:
        jvm.plan(MIDDLE_MANAGERS, 1024 * MiB, fewer, 1)
    assert e1.value.minimum < e.value.minimum


def test_user_peon_options_are_counted():
    props = {**rendered(MIDDLE_MANAGERS), jvm.PEON_JAVA_OPTS_ARRAY: json.dumps(["-Xmx1g"])}
    plan = jvm.plan(MIDDLE_MANAGERS, 8 * 1024 * MiB, props, 1)
    assert plan.peons.heap == 1024 * MiB  # javaOptsArray comes after javaOpts: its -Xmx wins
    assert plan.peons.direct == 160 * MiB
    # without -Xmx and -XX:MaxDirectMemorySize a peon's JVM takes a quarter of the container for each: one fits,
    # two never do
    bare = {**rendered(MIDDLE_MANAGERS), jvm.PEON_JAVA_OPTS: "-server", jvm.WORKER_CAPACITY: "1"}
    plan = jvm.plan(MIDDLE_MANAGERS, 8 * 1024 * MiB, bare, 1)
    assert plan.peons.heap == plan.peons.direct == 2 * 1024 * MiB
    with pytest.raises(jvm.InsufficientMemory):
        jvm.plan(MIDDLE_MANAGERS, 64 * 1024 * MiB, {**bare, jvm.WORKER_CAPACITY: "2"}, 1)


def test_peons_without_room_for_their_buffers_are_refused():
    props = {**rendered(MIDDLE_MANAGERS), "druid.indexer.fork.property." + jvm.BUFFER_SIZE: "100MiB"}
    with pytest.raises(jvm.JvmSizingError) as e:
        jvm.plan(MIDDLE_MANAGERS, 8 * 1024 * MiB, props, 1)
    assert "middleManagers: peons" in str(e.value) and "400Mi" in str(e.value)


def test_unreadable_properties_are_refused_with_the_key():
    props = {**rendered(BROKERS), jvm.BUFFER_SIZE: "lots"}
    with pytest.raises(jvm.JvmSizingError) as e:
        jvm.plan(BROKERS, 1024 * MiB, props, 1)
    assert e.value.reason == "InvalidJvmConfiguration"
    assert "brokers" in str(e.value) and jvm.BUFFER_SIZE in str(e.value)


def test_router_and_coordinator_have_no_processing_buffers_to_cover():
    # a processing property set in common does not inflate the direct memory of nodes without processing buffers
    props = {**rendered(ROUTERS), jvm.BUFFER_SIZE: "500000000"}
    assert jvm.plan(ROUTERS, 1024 * MiB, props, 1).direct == jvm.plan(ROUTERS, 1024 * MiB, rendered(ROUTERS), 1).direct
    props = {**rendered(BY_KEY["coordinators"]), jvm.BUFFER_SIZE: "500000000"}
    assert jvm.plan(BY_KEY["coordinators"], 1024 * MiB, props, 1).heap >= 512 * MiB


# --- JAVA_OPTS ----------------------------------------------------------------------------------------------------


def test_java_opts_for_one_cpu_choose_serial_gc_over_the_images_g1():
    opts = jvm.java_opts(1).split()
    assert "-XX:ActiveProcessorCount=1" in opts
    # G1 (set by the stock coordinator-overlord jvm.config, which comes first) is switched off before Serial is on
    assert opts.index("-XX:-UseG1GC") < opts.index("-XX:+UseSerialGC")
    assert "-XX:+ExitOnOutOfMemoryError" in opts


def test_java_opts_for_more_cpus_leave_the_collector_alone():
    opts = jvm.java_opts(4).split()
    assert "-XX:ActiveProcessorCount=4" in opts
    assert not [o for o in opts if o.endswith("GC")]
    assert jvm.java_opts(None) == "-XX:+ExitOnOutOfMemoryError -Dsun.net.inetaddr.ttl=1"


@pytest.mark.parametrize("opts", [jvm.java_opts(None), jvm.java_opts(1), jvm.peon_java_opts({})])
def test_every_druid_jvm_looks_a_peers_name_up_again_after_a_second(opts):
    """A peer that comes back at a new address is reached there (decision 0026); peons are queried too."""
    assert "-Dsun.net.inetaddr.ttl=1" in opts.split()


@pytest.mark.parametrize("node,key,value", [(BROKERS, jvm.NUM_THREADS, "two"),
                                            (MIDDLE_MANAGERS, jvm.WORKER_CAPACITY, "many"),
                                            (MIDDLE_MANAGERS, jvm.PEON_JAVA_OPTS, "-Xmx1q"),
                                            (MIDDLE_MANAGERS, jvm.PEON_JAVA_OPTS_ARRAY, '"-Xmx1g"'),
                                            (MIDDLE_MANAGERS, "druid.indexer.fork.property." + jvm.BUFFER_SIZE, "x")])
def test_the_error_names_the_unreadable_property(node, key, value):
    with pytest.raises(jvm.JvmSizingError) as e:
        jvm.plan(node, 8 * 1024 * MiB, {**rendered(node), key: value}, 1)
    assert f"{key}={value!r}" in str(e.value) and str(e.value).startswith(f"{node.key}: ")
