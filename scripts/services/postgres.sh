# Sourced by scripts/test.sh: makes a PostgreSQL server available to the tests and exports
# KIDJAMO_TEST_PG (an admin connection URL). Uses, in order: KIDJAMO_TEST_PG if already set, the
# local server on 127.0.0.1:5432, or a throwaway cluster started here with the installed
# binaries (initdb/pg_ctl) on a free port, as a non-root user, removed when the tests end.
# KIDJAMO_TEST_PG_THROWAWAY=1 always starts the throwaway cluster.

pg_ready() { # host port user
  psql "postgres://$3@$1:$2/postgres" -tAc 'select 1' >/dev/null 2>&1
}

if [ -n "${KIDJAMO_TEST_PG:-}" ]; then
  echo "== PostgreSQL: using KIDJAMO_TEST_PG"
elif [ -z "${KIDJAMO_TEST_PG_THROWAWAY:-}" ] && pg_ready 127.0.0.1 5432 postgres; then
  export KIDJAMO_TEST_PG="postgres://postgres@127.0.0.1:5432/postgres"
  echo "== PostgreSQL: using the server on 127.0.0.1:5432"
else
  pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    echo "error: no PostgreSQL server on 127.0.0.1:5432 and no initdb to start one; install PostgreSQL >= 15 (apt-get install postgresql)" >&2
    exit 2
  fi
  pg_dir="$(mktemp -d /tmp/kidjamo-pg.XXXXXX)"
  pg_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  run_as=()
  if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root.
    pg_user="postgres"
    id "$pg_user" >/dev/null 2>&1 || useradd --system --no-create-home "$pg_user"
    chown "$pg_user" "$pg_dir"
    run_as=(runuser -u "$pg_user" --)
  fi
  "${run_as[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust >"$pg_dir/initdb.log" 2>&1
  "${run_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
    -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1" start >/dev/null
  stop_postgres() { "${run_as[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$pg_dir"; }
  on_exit+=(stop_postgres)
  export KIDJAMO_TEST_PG="postgres://postgres@127.0.0.1:$pg_port/postgres"
  echo "== PostgreSQL: started a throwaway cluster on port $pg_port"
fi
