#!/usr/bin/env bash
# Turns `go test -bench YCSB -count N` output (stdin) into the markdown table
# of BENCHMARKS.md: per configuration, the median Mops/s of each peer with
# its min-max over the runs, and fleetkv's ratio to each peer's median.
set -euo pipefail
awk '
/^BenchmarkYCSB\// {
  name = $1; sub(/-[0-9]+$/, "", name)
  for (i = 2; i < NF; i++) if ($(i+1) == "Mops/s") v = $i
  n = split(name, p, "/")           # BenchmarkYCSB mix dist size w peer
  cfg = p[2] " | " p[3] " | " p[4] " | " p[5]
  peer = p[6]
  k = cfg SUBSEP peer
  cnt[k]++; val[k, cnt[k]] = v
  if (!(cfg in seen)) { seen[cfg] = 1; order[++ncfg] = cfg }
  if (!(peer in pseen)) { pseen[peer] = 1; peers[++npeer] = peer }
}
function median(k,   m, i, j, t, a) {
  m = cnt[k]; for (i = 1; i <= m; i++) a[i] = val[k, i]
  for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  lo = a[1]; hi = a[m]
  return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
END {
  printf "| mix | keys dist | keys | workers |"
  for (j = 1; j <= npeer; j++) printf " %s Mops/s (min-max) |", peers[j]
  for (j = 2; j <= npeer; j++) printf " fleetkv / %s |", peers[j]
  printf "\n|---|---|---|---|"
  for (j = 1; j < 2 * npeer; j++) printf "---|"
  printf "\n"
  for (c = 1; c <= ncfg; c++) {
    cfg = order[c]; printf "| %s |", cfg
    for (j = 1; j <= npeer; j++) {
      k = cfg SUBSEP peers[j]
      if (!(k in cnt)) { printf " - |"; continue }
      med[j] = median(k); printf " %.2f (%.2f-%.2f) |", med[j], lo, hi
    }
    for (j = 2; j <= npeer; j++) printf " %.2fx |", med[1] / med[j]
    printf "\n"
  }
}'
