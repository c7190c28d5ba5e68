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
