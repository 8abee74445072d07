# Helpers the bench scripts share; sourced, not run.

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits up to 30 s for 127.0.0.1:$1 to accept connections.
wait_port() {
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 did not open" >&2
  return 1
}

# The median of the numbers on stdin, printed with $1 decimals.
median() { sort -n | awk -v d="$1" '{a[NR]=$1} END {printf "%.*f\n", d, (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
