#!/bin/bash
# Entrypoint of kubedruid's local `mysql` image, which is MariaDB 10.11 from Debian bookworm under the mysql name
# (src/kubedruid/devcluster/images.py, docs/decisions/0010-local-images.md). It honours the official mysql image's
# contract for what the operator uses:
#   an empty /var/lib/mysql (a fresh volume, possibly owned by root) is initialised on the first start;
#   MYSQL_ROOT_PASSWORD (or MYSQL_ALLOW_EMPTY_PASSWORD=yes): root@localhost and root@MYSQL_ROOT_HOST (default '%')
#     with that password, mysql_native_password;
#   MYSQL_DATABASE: created with utf8mb4; MYSQL_USER/MYSQL_PASSWORD: a user with all rights on it;
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz run once at initialisation;
#   every VAR above may come as VAR_FILE (a file holding the value);
#   the server then runs in the foreground on 0.0.0.0:3306 and logs to stderr.
# Passwords are never printed and never put on a command line.
set -euo pipefail

say() { printf '%s entrypoint: %s\n' "$(date -Is)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

file_env() {
    local var="$1" file_var="${1}_FILE" value="${2:-}"
    if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
        die "both $var and $file_var are set"
    fi
    if [ -n "${!var:-}" ]; then
        value="${!var}"
    elif [ -n "${!file_var:-}" ]; then
        value="$(<"${!file_var}")"
    fi
    export "$var"="$value"
    unset "$file_var"
}

sql_string() { # a single-quoted SQL string literal
    local s="${1//\\/\\\\}"
    printf "'%s'" "${s//\'/\\\'}"
}

sql_name() { # a backquoted SQL identifier
    printf '`%s`' "${1//\`/\`\`}"
}

if [ "${1:0:1}" = "-" ]; then
    set -- mysqld "$@"
fi
case "${1:-}" in
mysqld | mariadbd) ;;
*) exec "$@" ;;
esac

DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock
server_user=()
mkdir -p "$DATADIR" /run/mysqld
if [ "$(id -u)" = "0" ]; then
    find "$DATADIR" /run/mysqld \! -user mysql -exec chown mysql:mysql '{}' +
    server_user=(--user=mysql)
fi

if [ ! -d "$DATADIR/mysql" ]; then
    file_env MYSQL_ROOT_PASSWORD
    file_env MYSQL_ROOT_HOST '%'
    file_env MYSQL_DATABASE
    file_env MYSQL_USER
    file_env MYSQL_PASSWORD
    file_env MYSQL_ALLOW_EMPTY_PASSWORD
    if [ -n "${MYSQL_RANDOM_ROOT_PASSWORD:-}" ]; then
        die "MYSQL_RANDOM_ROOT_PASSWORD is not supported by this image (it would print a password)"
    fi
    if [ -z "$MYSQL_ROOT_PASSWORD" ] && [ -z "$MYSQL_ALLOW_EMPTY_PASSWORD" ]; then
        die "the database is uninitialised and no password option is given: set MYSQL_ROOT_PASSWORD (or MYSQL_ALLOW_EMPTY_PASSWORD=yes)"
    fi

    say "initialising $DATADIR (MariaDB $(mariadbd --version | awk '{print $3}'))"
    mariadb-install-db "${server_user[@]}" --datadir="$DATADIR" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve >/dev/null
    "$@" "${server_user[@]}" --datadir="$DATADIR" --skip-networking --socket="$SOCKET" &
    pid=$!
    for _ in $(seq 60); do
        mariadb-admin --socket="$SOCKET" -uroot ping >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || die "the temporary server exited"
        sleep 0.5
    done
    client=(mariadb --protocol=socket --socket="$SOCKET" -uroot)

    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
        *.sh) say "running $f"; . "$f" ;;
        *.sql) say "running $f"; "${client[@]}" ${MYSQL_DATABASE:+"$MYSQL_DATABASE"} <"$f" ;;
        *.sql.gz) say "running $f"; gunzip -c "$f" | "${client[@]}" ${MYSQL_DATABASE:+"$MYSQL_DATABASE"} ;;
        *) [ ! -e "$f" ] || say "ignoring $f" ;;
        esac
    done

    password="$(sql_string "$MYSQL_ROOT_PASSWORD")"
    {
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        echo "DELETE FROM mysql.global_priv WHERE User='';"  # anonymous accounts, as the mysql image has none
        if [ -n "$MYSQL_DATABASE" ]; then
            echo "CREATE DATABASE IF NOT EXISTS $(sql_name "$MYSQL_DATABASE") CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;"
        fi
        if [ -n "$MYSQL_USER" ] && [ -n "$MYSQL_PASSWORD" ]; then
            user="$(sql_string "$MYSQL_USER")@'%'"
            echo "CREATE USER $user IDENTIFIED VIA mysql_native_password USING PASSWORD($(sql_string "$MYSQL_PASSWORD"));"
            [ -z "$MYSQL_DATABASE" ] || echo "GRANT ALL ON $(sql_name "$MYSQL_DATABASE").* TO $user;"
        fi
        if [ -n "$MYSQL_ROOT_HOST" ] && [ "$MYSQL_ROOT_HOST" != "localhost" ]; then
            root="'root'@$(sql_string "$MYSQL_ROOT_HOST")"
            echo "CREATE USER IF NOT EXISTS $root IDENTIFIED VIA mysql_native_password USING PASSWORD($password);"
            echo "GRANT ALL ON *.* TO $root WITH GRANT OPTION;"
            echo "GRANT PROXY ON ''@'%' TO $root WITH GRANT OPTION;"
        fi
        # Last: from here on root needs the password.
        echo "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD($password);"
        echo "FLUSH PRIVILEGES;"
    } | "${client[@]}"

    kill -TERM "$pid"
    wait "$pid" || die "the temporary server did not stop cleanly"
    say "initialised; root may connect from '$MYSQL_ROOT_HOST'${MYSQL_DATABASE:+, database $MYSQL_DATABASE created}"
fi

exec "$@" "${server_user[@]}"
