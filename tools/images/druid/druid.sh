#!/bin/bash
# Entrypoint of kubedruid's local apache/druid image (src/kubedruid/devcluster/images.py): the runtime contract of
# apache/druid's distribution/docker/druid.sh (spec/real-node.md §7), written anew. Runs as uid 1000 with no
# capabilities and works on a copy of the configuration in /tmp, so a read-only root file system is fine.
#
#   /druid.sh <service> [args...]     service: coordinator overlord broker historical middleManager router indexer
#
# DRUID_CONFIG_COMMON, DRUID_CONFIG_<service>  files copied over common.runtime.properties / the service's file
# ZOOKEEPER                                    druid.zk.service.host
# DRUID_SET_HOST (default 1)                   druid.host = this pod's IP (`ip r get 1`)
# druid_<a>_<b>=v                              property a.b=v (`__` stands for a literal `_`); applied last, so
#                                              druid_host wins over DRUID_SET_HOST
# s3service_<a>_<b>=v                          s3service.a-b=v in jets3t.properties
# DRUID_XMX DRUID_XMS DRUID_MAXNEWSIZE DRUID_NEWSIZE DRUID_MAXDIRECTMEMORYSIZE   replace the jvm.config line
# JAVA_OPTS                                    appended after jvm.config (the later flag wins in OpenJDK)
# DRUID_LOG_LEVEL, DRUID_LOG4J                 root log level / the whole log4j2.xml
# DRUID_ADDITIONAL_CLASSPATH                   appended to the classpath
# DRUID_DIRS_TO_CREATE                         directories made under /opt/druid before the start
set -euo pipefail

SERVICE="${1:?usage: /druid.sh <service> [args...]}"
shift
# Where the image's configuration lives and where the working copy goes (overridable for the unit tests).
CONF_SOURCE="${DRUID_CONF_SOURCE:-/opt/druid/conf/druid}"
CONF_COPY="${DRUID_CONF_COPY:-/tmp/conf/druid}"

say() { printf '%s druid.sh: %s\n' "$(date -Is)" "$*"; }

say "starting $SERVICE"
mkdir -p "$(dirname "$CONF_COPY")"
rm -rf "$CONF_COPY"
cp -r "$CONF_SOURCE" "$CONF_COPY"

conf_dir() {
    local base="$CONF_COPY/cluster"
    case "$1" in
    _common) echo "$base/_common" ;;
    historical | middleManager | indexer) echo "$base/data/$1" ;;
    coordinator | overlord) echo "$base/master/coordinator-overlord" ;;
    broker | router) echo "$base/query/$1" ;;
    *) echo "$base/misc/$1" ;;
    esac
}
COMMON_DIR="$(conf_dir _common)"
SERVICE_DIR="$(conf_dir "$SERVICE")"
COMMON_PROPS="$COMMON_DIR/common.runtime.properties"
SERVICE_PROPS="$SERVICE_DIR/runtime.properties"
JVM_CONFIG="$SERVICE_DIR/jvm.config"
mkdir -p "$COMMON_DIR" "$SERVICE_DIR"
touch "$COMMON_PROPS"

# Removes the lines that set `key` (key=v, key:v, key v) from a properties file; other keys with that prefix stay.
drop_key() {
    [ -f "$1" ] || return 0
    awk -v key="$2" '{
        line = $0; sub(/^[ \t]+/, "", line)
        if (index(line, key) == 1) { rest = substr(line, length(key) + 1); if (rest == "" || rest ~ /^[ \t]*[=:]/ || rest ~ /^[ \t]/) next }
        print
    }' "$1" >"$1.new"
    mv "$1.new" "$1"
}

# Sets a property for this service: removed from both files, written to the service's file (to the common file
# when the service has none). Values are never logged: they may be passwords.
set_key() {
    drop_key "$COMMON_PROPS" "$1"
    drop_key "$SERVICE_PROPS" "$1"
    if [ -f "$SERVICE_PROPS" ]; then
        printf '\n%s=%s\n' "$1" "$2" >>"$SERVICE_PROPS"
    else
        printf '\n%s=%s\n' "$1" "$2" >>"$COMMON_PROPS"
    fi
    say "set $1"
}

if [ -n "${DRUID_CONFIG_COMMON:-}" ]; then
    cp -f "$DRUID_CONFIG_COMMON" "$COMMON_PROPS"
fi
service_config_var="DRUID_CONFIG_${SERVICE}"
if [ -n "${!service_config_var:-}" ]; then
    cp -f "${!service_config_var}" "$SERVICE_PROPS"
fi

if [ -n "${ZOOKEEPER:-}" ]; then
    set_key druid.zk.service.host "$ZOOKEEPER"
fi

if [ "${DRUID_SET_HOST:-1}" = "1" ]; then
    # `ip r get 1` prints "... src <this host's address> ...".
    ip_address="$(ip r get 1 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "src") {print $(i + 1); exit}}' || true)"
    if [ -n "$ip_address" ]; then
        set_key druid.host "$ip_address"
    else
        say "warning: DRUID_SET_HOST=1 but no address from 'ip r get 1'; druid.host left as configured"
    fi
fi

# Environment order is kept: a later druid_* variable wins over an earlier one for the same property.
while IFS= read -r -d '' assignment; do
    name="${assignment%%=*}"
    value="${assignment#*=}"
    case "$name" in
    druid_*)
        key="${name//__/$'\x01'}"
        key="${key//_/.}"
        set_key "${key//$'\x01'/_}" "$value"
        ;;
    s3service_*)
        key="${name/_/.}"
        printf '%s=%s\n' "${key//_/-}" "$value" >>"$COMMON_DIR/jets3t.properties"
        ;;
    esac
done < <(env -0)

# This image is assembled from what Maven Central serves, which lacks some extensions at some Druid versions (the
# image's label kubedruid.dev/missing-extensions lists them; docs/decisions/0010). Druid refuses to start when a
# loadList entry has no directory, so such entries are dropped here, each one named in the log. Upstream images
# ship every extension and never take this path.
drop_missing_extensions() {
    local file="$1" line list kept=() dropped=() name
    [ -f "$file" ] || return 0
    line="$(grep -E '^[[:space:]]*druid\.extensions\.loadList[[:space:]]*[=:]' "$file" | tail -n 1 || true)"
    [ -n "$line" ] || return 0
    list="${line#*[=:]}"
    for name in $(grep -o '"[^"]*"' <<<"$list" | tr -d '"'); do
        if [ -d "$name" ] || [ -d "${DRUID_EXTENSIONS_DIR:-/opt/druid/extensions}/$name" ]; then kept+=("\"$name\""); else dropped+=("$name"); fi
    done
    [ "${#dropped[@]}" -gt 0 ] || return 0
    say "warning: this local image lacks the extension(s) ${dropped[*]} (not on Maven Central for this version): dropped from druid.extensions.loadList"
    local joined; joined="$(IFS=,; echo "${kept[*]}")"
    drop_key "$file" druid.extensions.loadList
    printf 'druid.extensions.loadList=[%s]\n' "$joined" >>"$file"
}
drop_missing_extensions "$COMMON_PROPS"
drop_missing_extensions "$SERVICE_PROPS"

# Replaces the jvm.config line that starts with `prefix` by `flag`.
set_jvm() {
    touch "$JVM_CONFIG"
    awk -v prefix="$1" '{ line = $0; sub(/^[ \t]+/, "", line); if (index(line, prefix) != 1) print }' "$JVM_CONFIG" >"$JVM_CONFIG.new"
    mv "$JVM_CONFIG.new" "$JVM_CONFIG"
    printf '%s\n' "$2" >>"$JVM_CONFIG"
}
[ -z "${DRUID_XMX:-}" ] || set_jvm -Xmx "-Xmx$DRUID_XMX"
[ -z "${DRUID_XMS:-}" ] || set_jvm -Xms "-Xms$DRUID_XMS"
[ -z "${DRUID_MAXNEWSIZE:-}" ] || set_jvm -XX:MaxNewSize= "-XX:MaxNewSize=$DRUID_MAXNEWSIZE"
[ -z "${DRUID_NEWSIZE:-}" ] || set_jvm -XX:NewSize= "-XX:NewSize=$DRUID_NEWSIZE"
[ -z "${DRUID_MAXDIRECTMEMORYSIZE:-}" ] || set_jvm -XX:MaxDirectMemorySize= "-XX:MaxDirectMemorySize=$DRUID_MAXDIRECTMEMORYSIZE"

if [ -n "${DRUID_LOG_LEVEL:-}" ]; then
    sed -i "s/\"info\"/\"${DRUID_LOG_LEVEL}\"/g" "$COMMON_DIR/log4j2.xml"
fi
if [ -n "${DRUID_LOG4J:-}" ]; then
    printf '%s\n' "$DRUID_LOG4J" >"$COMMON_DIR/log4j2.xml"
fi

DRUID_DIRS_TO_CREATE="${DRUID_DIRS_TO_CREATE-var/tmp var/druid/segments var/druid/indexing-logs var/druid/task var/druid/hadoop-tmp var/druid/segment-cache}"
for dir in $DRUID_DIRS_TO_CREATE; do
    mkdir -p "$dir" 2>/dev/null || say "warning: cannot create $dir"
done

# Java 17: what Druid's bin/run-java adds (docs/operations/java.md, "Strong encapsulation").
java_flags=(
    --add-exports=java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports=java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens=java.base/java.nio=ALL-UNNAMED
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens=java.base/java.io=ALL-UNNAMED
    --add-opens=java.base/java.lang=ALL-UNNAMED
    --add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED
)
set -f # a flag such as -Dx=lib/* is not a glob
if [ -f "$JVM_CONFIG" ]; then
    while read -r -a words || [ "${#words[@]}" -gt 0 ]; do
        [ "${#words[@]}" -eq 0 ] || [[ "${words[0]}" == \#* ]] || java_flags+=("${words[@]}")
    done <"$JVM_CONFIG"
fi
read -r -a extra_opts <<<"${JAVA_OPTS:-}"
java_flags+=("${extra_opts[@]}")
set +f

classpath="$COMMON_DIR:$SERVICE_DIR:lib/*"
[ -z "${DRUID_ADDITIONAL_CLASSPATH:-}" ] || classpath="$classpath:$DRUID_ADDITIONAL_CLASSPATH"

say "exec java for $SERVICE (conf $SERVICE_DIR)"
exec java "${java_flags[@]}" -cp "$classpath" org.apache.druid.cli.Main server "$SERVICE" "$@"
