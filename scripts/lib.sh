# Helpers the benchmark scripts source.

# free_port prints a loopback TCP port that is free now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# cpu_ticks PID prints the process's user + system CPU time in clock ticks
# (hz of them per second).
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
