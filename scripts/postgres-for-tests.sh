#!/usr/bin/env bash
# Starts Debian's PostgreSQL cluster (installing it where missing) and creates the
# test role and database. Prints the SQLAlchemy URL on stdout. Idempotent.
set -euo pipefail
# Everything but the URL goes to stderr: callers capture stdout, and pg_ctlcluster
# chats there ("Removed stale pid file." after an unclean shutdown broke CI once).
exec 3>&1 1>&2

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main"' | grep -q .; then
  pg_createcluster "$version" main >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $4}' | grep -q online; then
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 3>&-  # the server must not hold the caller's pipe
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')

psql_as_postgres() { su postgres -s /bin/sh -c "psql -q -p $port -v ON_ERROR_STOP=1 $*"; }
psql_as_postgres "-tAc \"SELECT 1 FROM pg_roles WHERE rolname='bootbrain'\"" | grep -q 1 ||
  psql_as_postgres "-c \"CREATE ROLE bootbrain LOGIN PASSWORD 'bootbrain' CREATEDB\""
# The benchmark checkpoints after its bulk load (bench/ipxe_storm.py); PostgreSQL < 15
# has no such role, and the benchmark then says so.
psql_as_postgres "-c \"GRANT pg_checkpoint TO bootbrain\"" 2>/dev/null || true
for db in bootbrain_test bootbrain_migrations bootbrain_ansible bootbrain_bench; do
  psql_as_postgres "-tAc \"SELECT 1 FROM pg_database WHERE datname='$db'\"" | grep -q 1 ||
    psql_as_postgres "-c \"CREATE DATABASE $db OWNER bootbrain\""
done
echo "postgresql+psycopg://bootbrain:bootbrain@127.0.0.1:$port/bootbrain_test" >&3
