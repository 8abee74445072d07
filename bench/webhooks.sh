#!/usr/bin/env bash
# Webhooks: deliveries per second to a local receiver, and intake's rate under
# load with no webhook against two webhooks configured (every event delivered
# to both, a local receiver answering 204), on SQLite.
#
#   bash bench/webhooks.sh                    # 10,000 messages per run, 4 rounds
#   MESSAGES=5000 ROUNDS=1 bash bench/webhooks.sh
#   BEFORE=/path/to/emailin bash bench/webhooks.sh   # also a build without webhooks
#                                             # (no event log at all), as a third column
#
# Each round runs both configurations in turn on fresh databases (which goes
# first alternates); every round is printed, then the median of the rounds'
# ratios (two webhooks / none). The server stops when its load is done, so
# the receiver's count is what was delivered while intake was under load.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

MESSAGES=${MESSAGES:-10000}
ROUNDS=${ROUNDS:-4}
DELIVERIES_MESSAGES=${DELIVERIES_MESSAGES:-2000}
cargo build --release --quiet --bin emailin --bin bench

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo "== deliveries: $DELIVERIES_MESSAGES seeded messages, their events to 2 webhooks (SQLite)"
target/release/bench webhooks --database-url "sqlite://$work/deliveries.db" --messages "$DELIVERIES_MESSAGES"

rport=$(free_port)
target/release/bench receiver --listen "127.0.0.1:$rport" 2>"$work/receiver.log" &
pids+=("$!")
wait_port "$rport"
: >"$work/none.toml"
cat >"$work/two.toml" <<TOML
[[webhooks]]
url = "http://127.0.0.1:$rport/a"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[webhooks]]
url = "http://127.0.0.1:$rport/b"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOML

# One load against a fresh server with config $1 (binary $3, default this
# build); prints its acknowledged messages/s.
load() {
  local config=$1 round=$2 binary=${3:-target/release/emailin} port url pid rate
  port=$(free_port)
  url="sqlite://$work/$config-$round-$RANDOM.db"
  EMAILIN__DATABASE__URL=$url EMAILIN__SMTP__LISTEN=127.0.0.1:$port EMAILIN__HTTP__LISTEN=127.0.0.1:0 \
    RUST_LOG=warn "$binary" --config "$work/$config.toml" serve >"$work/$config.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_port "$port"
  rate=$(target/release/bench smtp --addr "127.0.0.1:$port" --database-url "$url" --sessions 50 \
    --messages "$MESSAGES" | awk '/^acknowledged/{for(i=1;i<=NF;i++) if($i=="messages/s;") print $(i-1)}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$rate"
}

echo "== intake under load: bench smtp, 50 sessions, $MESSAGES messages; none vs two webhooks"
printf '%-6s %12s %12s %7s %12s\n' round "none/s" "two/s" ratio "before/s"
ratios=()
befores=()
for round in $(seq 1 "$ROUNDS"); do
  # Which runs first alternates, so neither gets the warmer machine every time.
  if [ $((round % 2)) = 1 ]; then
    none=$(load none "$round"); two=$(load two "$round")
  else
    two=$(load two "$round"); none=$(load none "$round")
  fi
  ratio=$(python3 -c "print(f'{$two/$none:.3f}')")
  ratios+=("$ratio")
  before=-
  if [ -n "${BEFORE:-}" ]; then
    before=$(load none "$round" "$BEFORE")
    befores+=("$(python3 -c "print(f'{$two/$before:.3f}')")")
  fi
  printf '%-6s %12s %12s %7s %12s\n' "$round" "$none" "$two" "$ratio" "$before"
done
echo "median ratio (two webhooks / none): $(printf '%s\n' "${ratios[@]}" | median 3)"
if [ -n "${BEFORE:-}" ]; then
  echo "median ratio (two webhooks / the build before webhooks): $(printf '%s\n' "${befores[@]}" | median 3)"
fi
echo "receiver: $(tail -n1 "$work/receiver.log")"
echo "reproduce: MESSAGES=$MESSAGES ROUNDS=$ROUNDS bash bench/webhooks.sh"
