"""JVM sizes for a Druid container, derived from its memory limit and CPUs, and the `apache/druid` image's environment
contract that carries them (spec real-node §7, §8; decision 0008). Pure: bytes and property dicts in, sizes out.

Budget of one container: heap + direct memory + JVM overhead (+ the peons a middleManager forks) <= memory limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .nodes import MIDDLE_MANAGERS, NodeType

MiB = 1024 * 1024

# The image's entrypoint replaces these jvm.config lines (druid.sh `setJavaKey`) and appends JAVA_OPTS after them.
XMX_ENV, XMS_ENV, DIRECT_ENV, JAVA_OPTS_ENV = "DRUID_XMX", "DRUID_XMS", "DRUID_MAXDIRECTMEMORYSIZE", "JAVA_OPTS"

BUFFER_SIZE = "druid.processing.buffer.sizeBytes"
NUM_THREADS = "druid.processing.numThreads"
NUM_MERGE_BUFFERS = "druid.processing.numMergeBuffers"
FORK_PROPERTY = "druid.indexer.fork.property."  # a middleManager passes these to its peons as -D<rest>
WORKER_CAPACITY = "druid.worker.capacity"
PEON_JAVA_OPTS = "druid.indexer.runner.javaOpts"  # peons run `java <javaOpts> <javaOptsArray> ...` (ForkingTaskRunner)
PEON_JAVA_OPTS_ARRAY = "druid.indexer.runner.javaOptsArray"

# Metaspace (Druid loads many classes), code cache, thread stacks, GC and JIT structures: what a JVM takes beyond heap
# and direct memory. Not yet measured in pods (spec real-node §8 estimates 150-250 MB): the larger of a floor and a
# sixteenth of the limit, because GC structures grow with the heap.
OVERHEAD_FLOOR = 256 * MiB
OVERHEAD_DIVISOR = 16


@dataclass(frozen=True)
class Share:
    heap: float  # share of what is left after overhead, direct memory and peons that becomes heap
    min_heap: int  # a smaller heap is refused
    direct: int  # direct memory besides the processing buffers (Jetty and NIO buffers, decompression)
    processing: bool  # allocates processing buffers, and Druid checks MaxDirectMemorySize against them at start


# The one table of per-node-type memory shares. Historicals leave half of the rest unused by the JVM: the page cache
# serves their memory-mapped segments from it. Routers proxy every query through Jetty's direct buffers.
SHARES: dict[str, Share] = {
    "coordinators": Share(1.0, 256 * MiB, 64 * MiB, False),
    "overlords": Share(1.0, 256 * MiB, 64 * MiB, False),
    "brokers": Share(1.0, 256 * MiB, 64 * MiB, True),
    "routers": Share(1.0, 128 * MiB, 128 * MiB, False),
    "historicals": Share(0.5, 256 * MiB, 64 * MiB, True),
    "middleManagers": Share(1.0, 128 * MiB, 64 * MiB, False),  # its peons are other JVMs (Peons below)
}

# Peons: small fixed JVMs (decision 0008), rendered into the middleManager's properties; the middleManager's memory
# limit must hold druid.worker.capacity of them.
PEON_HEAP = 512 * MiB
PEON_DIRECT_SLACK = 64 * MiB

# Druid's nodes reach each other by pod FQDN, and a replaced pod comes back under its name at a new address. The JVM
# keeps an address it looked up for 30 s: a router that looked the broker up in the old pod's last half-minute
# connects to the old address when the broker is back, and its client gets 502 (decision 0026). One second is far
# below the time a new pod takes to start its JVM and announce itself. (The system property, not the security
# property networkaddress.cache.ttl, which only a file sets; the JDK reads the one when the other is unset.)
DNS_CACHE_SECONDS = 1
DNS_CACHE_FLAG = f"-Dsun.net.inetaddr.ttl={DNS_CACHE_SECONDS}"


class JvmSizingError(ValueError):
    """The container cannot run this Druid node as configured. `reason` suits a condition; the message says what to
    change."""

    reason = "InvalidJvmConfiguration"


class InsufficientMemory(JvmSizingError):
    reason = "InsufficientMemory"

    def __init__(self, node: str, limit: int, minimum: int, message: str):
        super().__init__(message)
        self.node, self.limit, self.minimum = node, limit, minimum


def mebibytes(n: int) -> str:
    """Bytes as a Kubernetes quantity, rounded up to MiB."""
    return f"{_ceil_mib(n) // MiB}Mi"


def jvm_size(n: int) -> str:
    """Bytes (a whole number of MiB) as a JVM size flag value."""
    return f"{n // MiB}m"


def _ceil_mib(n: int) -> int:
    return -(-n // MiB) * MiB


def _floor_mib(n: float) -> int:
    return int(n) // MiB * MiB


_DRUID_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
                "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}


def druid_bytes(text: str) -> int:
    """A Druid `HumanReadableBytes` value: a number with an optional k/m/g/t/p (decimal) or Ki/Mi/Gi/Ti/Pi[B]
    (binary) suffix, any case."""
    m = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", text.strip())
    unit = m and m.group(2).lower()
    if unit and unit.endswith("ib"):
        unit = unit[:-1]
    if not m or unit not in _DRUID_UNITS:
        raise ValueError(f"{text!r} is not a size Druid reads")
    return int(m.group(1)) * _DRUID_UNITS[unit]


def _jvm_bytes(text: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgGtT]?)", text)
    if not m:
        raise ValueError(f"{text!r} is not a JVM size")
    unit = m.group(2).lower()
    return int(m.group(1)) * (1024 ** ("kmgt".index(unit) + 1) if unit else 1)


def processing_direct(props: Mapping[str, str], processors: int = 1) -> int:
    """Direct memory Druid demands at start of a process with processing buffers (historical, broker, peon):
    buffer.sizeBytes x (numThreads + numMergeBuffers + 1), else it refuses to start ("Not enough direct memory").
    Without buffer.sizeBytes Druid sizes the buffers to fit, so nothing is demanded. Missing counts take Druid's
    defaults for `processors` CPUs."""
    if BUFFER_SIZE not in props:
        return 0
    size = druid_bytes(props[BUFFER_SIZE])
    threads = int(props.get(NUM_THREADS) or max(1, processors - 1))
    merge = int(props.get(NUM_MERGE_BUFFERS) or max(2, threads // 4))
    return size * (threads + merge + 1)


def peon_java_opts(processing: Mapping[str, str]) -> str:
    """The peons' JVM options for the given peon processing properties: a small heap, direct memory for their
    processing buffers plus slack, Serial GC (several peons share the middleManager's CPUs)."""
    direct = _ceil_mib(processing_direct(processing) + PEON_DIRECT_SLACK)
    return " ".join(["-server", f"-Xms{jvm_size(PEON_HEAP)}", f"-Xmx{jvm_size(PEON_HEAP)}",
                     f"-XX:MaxDirectMemorySize={jvm_size(direct)}", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError",
                     "-Duser.timezone=UTC", "-Dfile.encoding=UTF-8", DNS_CACHE_FLAG,
                     "-Djava.util.logging.manager=org.apache.logging.log4j.jul.LogManager"])


def java_opts(processors: int | None) -> str:
    """JAVA_OPTS for a Druid container that gets `processors` CPUs (None: not known)."""
    flags = ["-XX:+ExitOnOutOfMemoryError", DNS_CACHE_FLAG]
    if processors is not None:
        # Without a CPU limit the JVM sizes its GC, JIT and Druid's default thread pools for every CPU of the node.
        flags.append(f"-XX:ActiveProcessorCount={processors}")
        if processors < 2:
            # Serial GC is what the JVM picks by itself on one CPU. The stock coordinator-overlord jvm.config sets
            # -XX:+UseG1GC and two collectors make the JVM refuse to start, so the others are switched off first.
            flags += ["-XX:-UseG1GC", "-XX:-UseParallelGC", "-XX:+UseSerialGC"]
    return " ".join(flags)


@dataclass(frozen=True)
class Peons:
    count: int
    heap: int
    direct: int
    overhead: int

    @property
    def each(self) -> int:
        return self.heap + self.direct + self.overhead

    @property
    def total(self) -> int:
        return self.count * self.each


@dataclass(frozen=True)
class JvmMemory:
    node: str
    limit: int
    heap: int
    direct: int
    overhead: int
    peons: Peons | None = None

    @property
    def total(self) -> int:
        return self.heap + self.direct + self.overhead + (self.peons.total if self.peons else 0)

    def env(self) -> list[dict]:
        return [{"name": XMX_ENV, "value": jvm_size(self.heap)}, {"name": XMS_ENV, "value": jvm_size(self.heap)},
                {"name": DIRECT_ENV, "value": jvm_size(self.direct)}]


def overhead(limit: int) -> int:
    return max(OVERHEAD_FLOOR, limit // OVERHEAD_DIVISOR)


def _minimum_limit(needed: int) -> int:
    """The smallest limit (whole MiB) that leaves `needed` bytes after the overhead."""
    if (needed + OVERHEAD_FLOOR) // OVERHEAD_DIVISOR <= OVERHEAD_FLOOR:
        return _ceil_mib(needed + OVERHEAD_FLOOR)
    return _ceil_mib(-(-needed * OVERHEAD_DIVISOR // (OVERHEAD_DIVISOR - 1)))


def _property_error(node: NodeType, props: Mapping[str, str | None], keys: tuple[str, ...]) -> JvmSizingError:
    given = ", ".join(f"{k}={props[k]!r}" for k in keys if props.get(k) is not None)
    return JvmSizingError(f"{node.key}: {given or keys[0]} cannot be read as Druid would")


_PROCESSING_KEYS = (BUFFER_SIZE, NUM_THREADS, NUM_MERGE_BUFFERS)


def _peons(node: NodeType, limit: int, props: Mapping[str, str], processors: int) -> Peons:
    try:
        capacity = int(props.get(WORKER_CAPACITY) or max(1, processors - 1))  # Druid's default: CPUs - 1
    except ValueError:
        raise _property_error(node, props, (WORKER_CAPACITY,)) from None
    try:
        array = json.loads(props.get(PEON_JAVA_OPTS_ARRAY) or "[]")
        if not isinstance(array, list):
            raise ValueError(PEON_JAVA_OPTS_ARRAY)
        opts = props.get(PEON_JAVA_OPTS, "").split() + [str(o) for o in array]
        heap = direct = None
        for opt in opts:  # the last flag wins, as in the JVM
            if opt.startswith("-Xmx"):
                heap = _jvm_bytes(opt[4:])
            elif opt.startswith("-XX:MaxDirectMemorySize="):
                direct = _jvm_bytes(opt.split("=", 1)[1])
    except ValueError:
        raise _property_error(node, props, (PEON_JAVA_OPTS, PEON_JAVA_OPTS_ARRAY)) from None
    heap = heap if heap is not None else limit // 4  # the JVM's default: a quarter of the container's memory
    direct = direct if direct is not None else heap  # the JVM's default
    # Peons inherit the middleManager's druid.* properties; fork properties override them.
    processing = {k: props.get(FORK_PROPERTY + k, props.get(k)) for k in _PROCESSING_KEYS}
    try:
        needed = processing_direct({k: v for k, v in processing.items() if v is not None}, processors)
    except ValueError:
        raise _property_error(node, {FORK_PROPERTY + k: v for k, v in processing.items()},
                              tuple(FORK_PROPERTY + k for k in _PROCESSING_KEYS)) from None
    if direct < needed:
        raise JvmSizingError(
            f"{node.key}: peons get {mebibytes(direct)} of direct memory but their processing buffers need "
            f"{mebibytes(needed)} ({FORK_PROPERTY}{BUFFER_SIZE} x (numThreads + numMergeBuffers + 1)); raise "
            f"-XX:MaxDirectMemorySize in {PEON_JAVA_OPTS} or lower the buffers")
    return Peons(capacity, heap, direct, OVERHEAD_FLOOR)


def plan(node: NodeType, limit: int, props: Mapping[str, str], processors: int | None = None) -> JvmMemory:
    """Heap, direct memory and overhead for `node` in a container with memory limit `limit` (bytes), whose effective
    runtime properties are `props` (common + node file, the user's merged in). Raises InsufficientMemory naming the
    node and the smallest limit that would do."""
    share, cpus = SHARES[node.key], processors or 1
    try:
        needed = processing_direct(props, cpus) if share.processing else 0
    except ValueError:
        raise _property_error(node, props, _PROCESSING_KEYS) from None
    direct = _ceil_mib(needed + share.direct)
    peons = _peons(node, limit, props, cpus) if node is MIDDLE_MANAGERS else None
    fixed = direct + (peons.total if peons else 0)
    spare = limit - overhead(limit) - fixed
    if spare < share.min_heap:
        minimum = _minimum_limit(share.min_heap + fixed)
        parts = [f"heap >= {mebibytes(share.min_heap)}", f"direct memory {mebibytes(direct)}",
                 f"JVM overhead >= {mebibytes(OVERHEAD_FLOOR)}"]
        if peons:
            parts.append(f"{peons.count} peons ({WORKER_CAPACITY}) x {mebibytes(peons.each)}")
        raise InsufficientMemory(
            node.key, limit, minimum,
            f"{node.key}: a memory limit of {mebibytes(limit)} is too small for Druid; it needs at least "
            f"{mebibytes(minimum)} ({', '.join(parts)}); raise resources.limits.memory of the druid container in "
            f"spec.topology.{node.key}.podTemplate")
    heap = _floor_mib(max(share.min_heap, spare * share.heap))
    return JvmMemory(node.key, limit, heap, direct, overhead(limit), peons)
