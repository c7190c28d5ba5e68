# Helpers the benchmark scripts source.

# free_port prints a loopback TCP port that is free now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# cpu_ticks PID prints the process's user + system CPU time in clock ticks
# (hz of them per second).
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# setup_work NAME: a work directory (under DIR or the repository) with a
# fresh fleetkv binary in it, removed on exit with the server $spid.
setup_work() {
  WORK=$(mktemp -d "${DIR:-$PWD}/$1.XXXXXX")
  BIN=$WORK/fleetkv
  go build -o "$BIN" ./cmd/fleetkv
  spid=""
  trap 'if [ -n "$spid" ]; then kill "$spid" 2>/dev/null; fi; rm -rf "$WORK"' EXIT
}

# elapsed T0 prints the seconds since T0 (date +%s.%N).
elapsed() { python3 -c "import time; print(f'{time.time()-$1:.2f}')"; }

# wait_tcp PORT waits until a loopback TCP port accepts (10 s at most).
wait_tcp() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 not up" >&2; exit 1; }
# ports N: N distinct loopback ports free now (each held until all are chosen).
ports() { python3 -c 'import socket,sys; s=[socket.socket() for _ in range(int(sys.argv[1]))]; [x.bind(("127.0.0.1",0)) for x in s]; print(" ".join(str(x.getsockname()[1]) for x in s))' "$1"; }
# low_ports N: N distinct free ports below 50000 (redis-server in cluster mode
# also listens on port+10000).
low_ports() { python3 -c '
import random, socket, sys
out, held = [], []
while len(out) < int(sys.argv[1]):
    p = random.randrange(20000, 50000)
    a, b = socket.socket(), socket.socket()
    try:
        a.bind(("127.0.0.1", p)); b.bind(("127.0.0.1", p + 10000))
    except OSError:
        continue
    held += [a, b]; out.append(p)
print(" ".join(map(str, out)))' "$1"; }

# resp_keys PORT N writes key:%012d = 256 bytes for 0..N-1 over a RESP port
# (redis-cli --pipe, on CPU 1): the key names redis-benchmark -r N reads.
resp_keys() {
  python3 -c "
import sys
v = b'x' * 256
out = sys.stdout.buffer
for i in range($2):
    k = b'key:%012d' % i
    out.write(b'*3\r\n\$3\r\nSET\r\n\$%d\r\n%s\r\n\$256\r\n%s\r\n' % (len(k), k, v))
" | taskset -c 1 redis-cli -p "$1" --pipe >/dev/null
}

# plot_timeline CSV TITLE START [EPOCH=LABEL ...] draws CSV, the timeline of
# a load started at epoch START, as CSV's name with .svg (fleetkv loadgen
# plot), with each mark at its epoch seconds since START.
plot_timeline() {
  local csv=$1 title=$2 start=$3 m
  shift 3
  local marks=()
  for m in "$@"; do
    marks+=(--mark "$(python3 -c "print(f'{max(${m%%=*} - $start, 0):.2f}')")=${m#*=}")
  done
  "$BIN" loadgen plot "$csv" --out "${csv%.csv}.svg" --title "$title" "${marks[@]}" && echo "chart: ${csv%.csv}.svg"
}
