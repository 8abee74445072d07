#!/usr/bin/env bash
# Side by side: Postfix's smtp-sink (stores nothing) and emailin (release build,
# SQLite, default config) under the same smtp-source load, then emailin's own
# load tool against emailin on PostgreSQL.
#
#   bash bench/smtp.sh                 # 20,000 messages of 5 KB per run, 3 rounds per load
#   MESSAGES=5000 ROUNDS=1 bash bench/smtp.sh   # a quicker pass
#
# Each load runs ROUNDS times, smtp-sink and emailin in turn (a fresh database
# each round); every round is printed, then the median of the rounds' ratios.
#
# Needs: smtp-source/smtp-sink (Debian package postfix; installed here without
# starting its daemon) and, for the PostgreSQL part, a server on 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

MESSAGES=${MESSAGES:-20000}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-5120}
PG_URL_BASE=${PG_URL_BASE:-postgres://postgres@127.0.0.1:5432}

if ! command -v smtp-source >/dev/null 2>&1; then
  echo "installing postfix for smtp-source/smtp-sink (daemon not started)"
  apt-get update -qq
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq postfix >/dev/null
fi
cargo build --release --quiet --bin emailin --bin bench

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1/($3-$2):.0f}')"; }

# Starts emailin on a fresh database; sets EMAILIN_PID, EMAILIN_PORT, EMAILIN_DB.
start_emailin() {
  local url=$1
  EMAILIN_PORT=$(free_port)
  EMAILIN_DB=$url
  EMAILIN__DATABASE__URL=$url EMAILIN__SMTP__LISTEN=127.0.0.1:$EMAILIN_PORT \
    EMAILIN__HTTP__LISTEN=127.0.0.1:0 RUST_LOG=warn target/release/emailin serve >"$work/emailin.log" 2>&1 &
  EMAILIN_PID=$!
  pids+=("$EMAILIN_PID")
  wait_port "$EMAILIN_PORT"
}
stop_emailin() { kill "$EMAILIN_PID"; wait "$EMAILIN_PID" 2>/dev/null || true; }

stored() { target/release/bench count --database-url "$1" | awk '$1=="processed"{print $2}'; }
# Waits (up to 120 s) until $2 messages are processed; prints the time then.
processed_by() {
  local deadline=$(( $(date +%s) + 120 ))
  while [ "$(stored "$1")" != "$2" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.01; done
  now
}

# Runs this round's smtp-source load against 127.0.0.1:$1; sets s and e (its
# start and end) and c and c_end (the host's CPU counters then).
drive() {
  c=$(cpu_ticks); s=$(now)
  smtp-source "${flag[@]}" -s "$sessions" -l "$SIZE" -m "$MESSAGES" -f load@bench.example -t sales@localhost 127.0.0.1:"$1"
  e=$(now); c_end=$(cpu_ticks)
}

sink_port=$(free_port)
sink_user=()
[ "$(id -u)" = 0 ] && sink_user=(-u nobody)
smtp-sink "${sink_user[@]}" -c 127.0.0.1:"$sink_port" 1000 >/dev/null 2>&1 &
pids+=("$!")
wait_port "$sink_port"

echo "== smtp-source: $MESSAGES messages of $SIZE bytes; emailin on SQLite (default config)"
echo "(emailin/s: all $MESSAGES stored and processed, timed to when processing caught up; acked/s: to smtp-source's end;"
echo " host CPU busy: share of both cores' time not idle nor waiting for I/O while smtp-source ran, smtp-sink / emailin)"
printf '%-34s %12s %12s %7s\n' "load" "smtp-sink/s" "emailin/s" "ratio"
for mode in "10 new" "50 new" "50 reuse"; do
  set -- $mode
  sessions=$1
  flag=(); [ "$2" = reuse ] && flag=(-d)
  ratios=()
  for round in $(seq 1 "$ROUNDS"); do
    drive "$sink_port"
    sink=$(rate "$MESSAGES" "$s" "$e"); sink_busy=$(host_busy "$c" "$c_end")
    db="$work/sqlite-$sessions-$2-$round"; mkdir -p "$db"
    start_emailin "sqlite://$db/emailin.db"
    drive "$EMAILIN_PORT"
    # Processing is timed before anything else runs: a python3 start costs
    # ~0.1 s, which would otherwise count against emailin's rate.
    p=$(processed_by "$EMAILIN_DB" "$MESSAGES")
    acked=$(rate "$MESSAGES" "$s" "$e"); ours_busy=$(host_busy "$c" "$c_end")
    ours=$(rate "$MESSAGES" "$s" "$p")
    n=$(stored "$EMAILIN_DB"); rss=$(awk '/VmHWM/{print $2" "$3}' "/proc/$EMAILIN_PID/status")
    stop_emailin
    ratio=$(python3 -c "print(f'{$ours/$sink:.2f}')")
    ratios+=("$ratio")
    printf '%-34s %12s %12s %7s   acked/s %s, stored+processed %s/%s, peak RSS %s, host CPU busy %s / %s\n' \
      "$sessions sessions, $2 connection ($round)" "$sink" "$ours" "$ratio" "$acked" "${n:-0}" "$MESSAGES" "$rss" \
      "$sink_busy" "$ours_busy"
    [ "${n:-0}" = "$MESSAGES" ] || { echo "emailin stored ${n:-0} of $MESSAGES" >&2; exit 1; }
    rm -rf "$db"
  done
  printf '%-34s %12s %12s %7s\n' "$sessions sessions, $2 connection" "" "median" \
    "$(printf '%s\n' "${ratios[@]}" | median 2)"
done

echo
echo "== emailin load tool against emailin on SQLite (50 sessions, 20% replies)"
db="$work/sqlite-tool"; mkdir -p "$db"
start_emailin "sqlite://$db/emailin.db"
target/release/bench smtp --addr 127.0.0.1:"$EMAILIN_PORT" --pid "$EMAILIN_PID" --database-url "$EMAILIN_DB" --sessions 50 --messages "$MESSAGES" --sizes "$SIZE" --reuse
echo "-- at 500 messages/s, new connection per message:"
target/release/bench smtp --addr 127.0.0.1:"$EMAILIN_PORT" --pid "$EMAILIN_PID" --database-url "$EMAILIN_DB" --sessions 50 --messages 5000 --sizes "$SIZE" --rate 500
stop_emailin

if command -v psql >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo
  echo "== emailin load tool against emailin on PostgreSQL (synchronous_commit $(psql -h 127.0.0.1 -U postgres -qAt -c 'show synchronous_commit'))"
  psql -h 127.0.0.1 -U postgres -qAt -c "DROP DATABASE IF EXISTS emailin_bench WITH (FORCE)" -c "CREATE DATABASE emailin_bench"
  start_emailin "$PG_URL_BASE/emailin_bench"
  target/release/bench smtp --addr 127.0.0.1:"$EMAILIN_PORT" --pid "$EMAILIN_PID" --database-url "$EMAILIN_DB" --sessions 50 --messages "$MESSAGES" --sizes "$SIZE"
  target/release/bench smtp --addr 127.0.0.1:"$EMAILIN_PORT" --pid "$EMAILIN_PID" --database-url "$EMAILIN_DB" --sessions 50 --messages "$MESSAGES" --sizes "$SIZE" --reuse
  stop_emailin
else
  echo "PostgreSQL not reachable on 127.0.0.1:5432: PostgreSQL part skipped"
fi
