#!/bin/bash
# `zkServer.sh start-foreground` of ZooKeeper's distribution, reduced to what the image runs: QuorumPeerMain in the
# foreground, logging to the console. Honours ZOOCFGDIR, ZK_SERVER_HEAP (MB), SERVER_JVMFLAGS, JVMFLAGS.
set -euo pipefail

if [ "${1:-}" != "start-foreground" ]; then
    echo "zkServer.sh: only 'start-foreground' is supported in this image" >&2
    exit 2
fi
ZOOCFGDIR="${ZOOCFGDIR:-/conf}"
home="$(cd "$(dirname "$0")/.." && pwd)"
read -r -a server_flags <<<"${SERVER_JVMFLAGS:-}"
read -r -a flags <<<"${JVMFLAGS:-}"
exec java "-Xmx${ZK_SERVER_HEAP:-1000}m" -XX:+ExitOnOutOfMemoryError \
    "-Dzookeeper.log.dir=${ZOO_LOG_DIR:-/logs}" "-Dzookeeper.log.file=zookeeper.log" \
    "-Dzookeeper.root.logger=${ZOO_LOG4J_PROP:-INFO,CONSOLE}" \
    "${server_flags[@]}" "${flags[@]}" \
    -cp "$ZOOCFGDIR:$home/lib/*" org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZOOCFGDIR/zoo.cfg"
