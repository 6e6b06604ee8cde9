# Shared helpers of the bench/ scripts (sourced).

# pct: reads numbers (ms), one per line; prints the summary with n. A p99
# needs at least 100 samples: with fewer, the largest is printed as "max".
pct() {
  python3 -c '
import sys
v = sorted(float(x) for x in sys.stdin.read().split())
if not v:
    print("no samples (n=0)")
    sys.exit(0)
p = lambda q: v[min(len(v) - 1, int(round(q * (len(v) - 1))))]
n = len(v)
if n >= 100:
    print(f"p50 {p(.5):.1f} ms, p99 {p(.99):.1f} ms, min {v[0]:.1f}, max {v[-1]:.1f} (n={n})")
else:
    print(f"p50 {p(.5):.1f} ms, max {v[-1]:.1f} ms, min {v[0]:.1f} (n={n}; too few for a p99)")
'
}

# machine: one line naming the machine the figures come from.
machine() {
  local cpu mem
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
  echo "$(nproc) cores ($cpu), $mem, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
}

# header COMMAND: the first lines of every benchmark's output.
header() {
  echo "Command: $*"
  echo "Date: $(date -u +%FT%TZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "Machine: $(machine)"
  echo "Load: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min load average at the end; the machine is shared)"
  echo "Engine: dockerd $(dockerd --version | awk '{print $3}' | tr -d ,) in the sandbox swarm (scripts/sandbox), release build of swarmlog"
}

# proxy_start SOCK UPSTREAM LOG: the counting proxy (bench/count_proxy.py) in
# front of a Docker socket; sets PROXY_PID.
proxy_start() {
  python3 bench/count_proxy.py "$1" "$2" "$3" &
  PROXY_PID=$!
  for _ in $(seq 50); do [[ -S $1 ]] && return 0; sleep 0.1; done
  echo "the counting proxy did not start" >&2
  return 1
}

# writes_in LOG: requests in a count_proxy log that change the swarm.
writes_in() { grep -cE '^(POST|PUT|DELETE) ' "$1" || true; }

# build_release: the release binary the benchmarks run, the same static
# build scripts/test makes for the operator image (one build serves both);
# sets SL to its path.
build_release() {
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet --target x86_64-unknown-linux-gnu
  SL=$PWD/target/x86_64-unknown-linux-gnu/release/swarmlog
}
