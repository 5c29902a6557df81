#!/bin/sh
# CLI start-up, measured from outside: median of N runs of `receiver check-config` (wall
# seconds, user+sys CPU seconds, max RSS kB) and what it imports, slowest last.
#   sh bench/cli_startup.sh [N] [config.yaml]
N=${1:-10}; CONFIG=${2:-config.yaml}; PY=${PY:-.venv/bin/python}; RX=${RX:-.venv/bin/receiver}
for i in $(seq "$N"); do
  /usr/bin/time -f '%e %U %S %M' "$RX" check-config "$CONFIG" 2>&1 >/dev/null | tail -1
done | awk '{print $1, $2 + $3, $4}' | sort -n | awk -v n="$N" '
  { wall[NR] = $1; cpu[NR] = $2; rss[NR] = $3 }
  END { m = int((n + 1) / 2); printf "check-config: wall %.2f s (median of %d), cpu %.2f s, max RSS %.1f MB\n", wall[m], n, cpu[m], rss[m] / 1024 }'
"$PY" -X importtime -m receiver check-config "$CONFIG" 2>&1 >/dev/null | sort -t'|' -k2 -n | tail -5
