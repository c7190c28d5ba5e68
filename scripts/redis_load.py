#!/usr/bin/env python3
# Loads key:0..KEYS-1 (redis-benchmark's -r key names) with VALUE-byte
# values into a Redis Cluster, each master's keys piped to it with
# redis-cli --pipe. The slot owners are read from the first port's
# CLUSTER NODES.
#
# Usage: scripts/redis_load.py KEYS VALUE WORKDIR PORT...
import subprocess, sys
keys, value, work, ports = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
def crc16(b):
    crc = 0
    for c in b:
        crc ^= c << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xffff if crc & 0x8000 else (crc << 1) & 0xffff
    return crc
owner = [None] * 16384
out = subprocess.run(["redis-cli", "-p", ports[0], "cluster", "nodes"], capture_output=True, text=True).stdout
# each line: id ip:port@cport flags master ping pong epoch state range...
for line in out.strip().split("\n"):
    f = line.split()
    port = f[1].split("@")[0].split(":")[1]
    for r in f[8:]:
        lo, _, hi = r.partition("-")
        for s in range(int(lo), int(hi or lo) + 1):
            owner[s] = port
files = {p: open(f"{work}/load-{p}.resp", "wb") for p in ports}
v = b"x" * value
for k in range(keys):
    key = b"key:%012d" % k
    files[owner[crc16(key) % 16384]].write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, value, v))
for p, f in files.items():
    f.close()
    subprocess.run(f"redis-cli -p {p} --pipe < {work}/load-{p}.resp", shell=True, check=True, capture_output=True)
