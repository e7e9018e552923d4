#!/usr/bin/env bash
# Makes sure the PostgreSQL server the tests create their databases on answers
# (TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres);
# starts the local cluster when it is installed but stopped.
set -euo pipefail
url="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
hostport="${url#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$host" ] && port=5432
answers() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
if answers; then exit 0; fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  echo "PostgreSQL is not answering on $host:$port; starting cluster $version/main" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
  for _ in $(seq 1 50); do answers && exit 0; sleep 0.2; done
fi
cat >&2 <<MSG
The tests need PostgreSQL at $host:$port (TEST_DATABASE_URL=$url) and none answers.
Start one (e.g. 'sudo pg_ctlcluster 15 main start', or
'docker run -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16'),
or point TEST_DATABASE_URL at a server where this user may CREATE DATABASE.
MSG
exit 1
