#!/usr/bin/env bash
# Scale: emailin's rate on a SQLite database already holding SEED messages
# against its rate on an empty one, under the same load (the load tool, 50
# sessions, a new connection per message, 1,000 senders who are also the
# seeded contacts, 20% replies), in alternating pairs. Prints each pair's
# rates (stored and processed) and ratio, then the median ratio.
#
#   bash bench/scale.sh                        # seeds $DIR/large.db once (~13 GB, ~2.5 min)
#   PAIRS=3 bash bench/scale.sh                # quicker; fewer MESSAGES than ~25,000 end
#                                              # before the server's first checkpoint
#
# EMAILIN__* settings in the environment apply to the seed and to every
# server, so a setting is compared on a database of its own, e.g.
#   EMAILIN__DATABASE__SQLITE_CACHE_KIB=32768 DIR=/tmp/scale-32m bash bench/scale.sh
#
# Each run starts after `sync` and a pause, so it does not pay for the
# previous run's writes still being flushed (without that the second run of
# a pair is the slower one whichever it is); every server stops cleanly, so
# the large database starts each run with its WAL folded in.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

DIR=${DIR:-/tmp/emailin-scale}
SEED=${SEED:-1000000}
PAIRS=${PAIRS:-6}
# 60,000 messages take about 12 s, over twice the checkpoint interval (5 s), so each
# run pays for the checkpoints its own writes cause.
MESSAGES=${MESSAGES:-60000}
PAUSE=${PAUSE:-2}

cargo build --release --quiet --bin emailin --bin bench
mkdir -p "$DIR"
large="sqlite://$DIR/large.db"
if [ ! -f "$DIR/large.db" ]; then
  target/release/bench seed --database-url "$large" --count "$SEED"
fi

log=$(mktemp)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -f "$log" "$log.out"' EXIT

# One run against $1; prints messages/s stored and processed.
run() {
  local url=$1 port
  sync; sleep "$PAUSE"
  port=$(free_port)
  EMAILIN__DATABASE__URL=$url EMAILIN__SMTP__LISTEN=127.0.0.1:$port EMAILIN__HTTP__LISTEN=127.0.0.1:0 \
    RUST_LOG=warn target/release/emailin serve >"$log" 2>&1 &
  server=$!
  # This runs in a command substitution, whose exit does not run the trap:
  # a failed run stops its server itself.
  if ! wait_port "$port" || ! target/release/bench smtp --addr "127.0.0.1:$port" --database-url "$url" \
    --pid "$server" --sessions 50 --messages "$MESSAGES" >"$log.out" 2>&1; then
    cat "$log.out" "$log" >&2 2>/dev/null; kill "$server" 2>/dev/null; exit 1
  fi
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  grep -oP '\d+(?= messages/s stored and processed)' "$log.out"
}

echo "== $MESSAGES messages, 50 sessions: database with $(target/release/bench count --database-url "$large" | awk '$1=="processed"{print $2}') processed messages vs an empty one"
ratios=()
for pair in $(seq 1 "$PAIRS"); do
  rm -f "$DIR"/empty.db*
  if [ $((pair % 2)) = 1 ]; then
    l=$(run "$large"); e=$(run "sqlite://$DIR/empty.db")
  else
    e=$(run "sqlite://$DIR/empty.db"); l=$(run "$large")
  fi
  r=$(python3 -c "print(f'{$l/$e:.3f}')"); ratios+=("$r")
  echo "pair $pair: large $l/s, empty $e/s, ratio $r"
done
rm -f "$DIR"/empty.db*
echo "median ratio $(printf '%s\n' "${ratios[@]}" | median 3)"
