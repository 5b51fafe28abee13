#!/usr/bin/env bash
# Runs every transport scenario (benches/transport_*.rs), each in a fresh process so
# memory figures do not inherit another scenario's heap. Lines starting with `RESULT`
# carry the figures; docs/BENCHMARKS.md records them with the commands that made them.
#
#   benches/run-transport.sh                  # everything, ~6 min
#   benches/run-transport.sh --quinn-only     # raw-quinn baselines only
#   benches/run-transport.sh --size-mib 256 --runs 3 --count 200 --rate-mbit 100 --relayed-mib 32
#
# Options (defaults): --size-mib 1024 (loopback bulk size), --runs 5 (bulk pairs),
# --count 1000 (scale connections / sessions), --rate-mbit 100 (per-path rate R of the
# relayed and failover scenarios), --relayed-mib 96 (their transfer size), --quinn-only.
set -uo pipefail
cd "$(dirname "$0")/.."

size_mib=1024 runs=5 count=1000 rate_mbit=100 relayed_mib=96 quinn_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) size_mib=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --rate-mbit) rate_mbit=$2; shift 2 ;;
    --relayed-mib) relayed_mib=$2; shift 2 ;;
    --quinn-only) quinn_only=1; shift ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

benches=(transport_bulk transport_relayed transport_failover transport_latency transport_scale)
cargo bench -p kwik-integration --no-run "${benches[@]/#/--bench=}" || exit 1

echo "host: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
failed=()
scenario() {
  echo
  echo "\$ $*"
  local bench=$1
  shift
  if ! cargo bench -q -p kwik-integration --bench "$bench" -- "$@"; then
    echo "RESULT FAILED $bench $*"
    failed+=("$bench $*")
  fi
}

if [ "$quinn_only" = 1 ]; then
  scenario transport_bulk bulk --stack quinn --size-mib "$size_mib" --runs "$runs"
else
  scenario transport_bulk bulk-pair --size-mib "$size_mib" --runs "$runs"
fi
scenario transport_relayed --stack quinn --paths 1 --rate-mbit "$rate_mbit" --size-mib "$relayed_mib"
if [ "$quinn_only" = 0 ]; then
  for paths in 1 2; do
    scenario transport_relayed --stack kwik --paths "$paths" --rate-mbit "$rate_mbit" \
      --size-mib "$relayed_mib" --scheduler aggregate
  done
  for cut in 1 0; do
    scenario transport_failover --rate-mbit "$rate_mbit" --size-mib "$relayed_mib" --cut-path "$cut"
  done
fi
scenario transport_latency --stack quinn
if [ "$quinn_only" = 0 ]; then
  for policy in min-rtt redundant; do
    scenario transport_latency --stack kwik --scheduler "$policy"
  done
fi
scenario transport_scale --stack quinn --count "$count"
if [ "$quinn_only" = 0 ]; then
  scenario transport_scale --stack kwik --count "$count"
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "${#failed[@]} scenario(s) failed:"
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
