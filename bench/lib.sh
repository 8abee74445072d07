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

# The host's CPU counters (the `cpu` line of /proc/stat: user nice system
# idle iowait irq softirq steal), for host_busy.
cpu_ticks() { awk '/^cpu /{print $2, $3, $4, $5, $6, $7, $8, $9}' /proc/stat; }

# The share of the CPU time the host's cores had (time the hypervisor took,
# steal, left out) that was busy, not idle nor waiting for I/O, between two
# cpu_ticks readings: host_busy "$before" "$after".
host_busy() {
  python3 -c "import sys; a=list(map(int,sys.argv[1].split())); b=list(map(int,sys.argv[2].split())); d=[y-x for x,y in zip(a,b)]; had=sum(d)-d[7]; print(f'{100*(had-d[3]-d[4])/max(had,1):.0f}%')" "$1" "$2"
}
