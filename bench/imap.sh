#!/usr/bin/env bash
# emailin's IMAP poller next to mbsync, on the same Dovecot mailbox:
# MESSAGES generated messages (default 5,000) dropped into a Maildir, then
#   - emailin from a cold start (fresh SQLite database, backfill_days = 1)
#     until every message is stored and processed;
#   - mbsync (Debian package isync) pulling the same folder into a Maildir.
#
#   bash bench/imap.sh
#
# Needs dovecot-imapd and isync from Debian (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

MESSAGES=${MESSAGES:-5000}
need=()
[ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd)
command -v mbsync >/dev/null 2>&1 || need+=(isync)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --quiet --bin emailin --bin bench

work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
now() { date +%s.%N; }

# Dovecot of our own on 127.0.0.1, plaintext auth, Maildir as nobody.
port=$(free_port)
mkdir -p "$work"/{run,state,mail/support/{cur,new,tmp}}
echo "support:{PLAIN}bench" >"$work/passwd"
cat >"$work/dovecot.conf" <<CONF
base_dir = $work/run
state_dir = $work/state
log_path = $work/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:$work/mail/%u
default_internal_user = dovecot
default_login_user = dovenull
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $work/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$work/mail/%u
}
service imap-login {
  inet_listener imap {
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
service stats {
  unix_listener stats-reader {
    mode = 0666
  }
  unix_listener stats-writer {
    mode = 0666
  }
}
CONF

# The messages: a Maildir drop of generated 3-5 KB mails with unique Message-IDs.
python3 - "$work/mail/support/new" "$MESSAGES" <<'PY'
import os, sys, random
folder, n = sys.argv[1], int(sys.argv[2])
line = "The quick brown fox jumps over the lazy dog, again and again and again.\n"
for i in range(n):
    body = line * random.randint(40, 70)
    msg = (f"From: Customer {i % 500} <customer{i % 500}@example.com>\nTo: support@acme.example\n"
           f"Delivered-To: support@acme.example\nSubject: Mailbox message {i}\n"
           f"Message-ID: <imapbench-{i}@example.com>\nDate: Sun, 22 Nov 2026 10:00:00 +0000\n\n{body}")
    with open(os.path.join(folder, f"{1700000000 + i}.{i}.bench"), "w") as f:
        f.write(msg)
PY
chown -R nobody:nogroup "$work/mail"
dovecot -F -c "$work/dovecot.conf" &
pids+=("$!")
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
# Let Dovecot index the drop once, so neither client pays for that.
python3 -c "
import imaplib; m = imaplib.IMAP4('127.0.0.1', $port); m.login('support', 'bench')
print('mailbox:', m.select('INBOX')[1][0].decode(), 'messages'); m.logout()"

# emailin, cold start.
cat >"$work/emailin.toml" <<CONF
[database]
url = "sqlite://$work/emailin/emailin.db"
[smtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[[aliases]]
address = "service@localhost"
name = "Service"
pipeline = "Service"
also = ["support@acme.example"]
[[imap]]
name = "support"
host = "127.0.0.1"
port = $port
tls = "none"
username = "support"
password = "bench"
alias = "service@localhost"
backfill_days = 1
CONF
s=$(now)
RUST_LOG=warn target/release/emailin --config "$work/emailin.toml" serve >"$work/emailin.log" 2>&1 &
pids+=("$!")
emailin_pid=$!
until [ "$(target/release/bench count --database-url "sqlite://$work/emailin/emailin.db" 2>/dev/null | awk '$1=="processed"{print $2}')" = "$MESSAGES" ]; do
  sleep 0.05
  if ! kill -0 "$emailin_pid" 2>/dev/null; then cat "$work/emailin.log"; exit 1; fi
done
e=$(now)
emailin_rate=$(python3 -c "print(f'{$MESSAGES/($e-$s):.0f}')")
emailin_secs=$(python3 -c "print(f'{$e-$s:.2f}')")
kill "$emailin_pid"

# mbsync into a Maildir.
mkdir -p "$work/mbsync/INBOX"
cat >"$work/mbsyncrc" <<CONF
IMAPAccount bench
Host 127.0.0.1
Port $port
User support
Pass bench
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account bench

MaildirStore local
Path $work/mbsync/
Inbox $work/mbsync/INBOX

Channel pull
Far :remote:INBOX
Near :local:INBOX
Sync Pull
Create Near
SyncState *
CONF
s=$(now)
mbsync -q -c "$work/mbsyncrc" pull
e=$(now)
got=$(find "$work/mbsync/INBOX" -type f \( -path '*/cur/*' -o -path '*/new/*' \) | wc -l)
mbsync_rate=$(python3 -c "print(f'{$MESSAGES/($e-$s):.0f}')")
mbsync_secs=$(python3 -c "print(f'{$e-$s:.2f}')")

echo "emailin: $MESSAGES messages stored and processed in ${emailin_secs} s from a cold start: $emailin_rate messages/s"
echo "mbsync:  $got messages fetched to a Maildir in ${mbsync_secs} s: $mbsync_rate messages/s"
echo "ratio emailin/mbsync: $(python3 -c "print(f'{$emailin_rate/$mbsync_rate:.2f}')")"
