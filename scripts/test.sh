#!/usr/bin/env bash
# The whole test suite, as a newcomer or CI runs it: installs what the tests
# need (the tansu Kafka-protocol broker, promtool, chromium, Python tools in a venv), starts the
# broker on a free loopback port, runs every test, and stops the broker.
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE=${REFLEX_TEST_STATE:-$ROOT/target/test-env}
mkdir -p "$STATE"

log() { printf '\n== %s\n' "$*"; }

# --- tansu (Kafka-protocol broker) -----------------------------------------
TANSU=${TANSU:-$(command -v tansu || true)}
if [ -z "$TANSU" ] && [ -x "$HOME/.cargo/bin/tansu" ]; then TANSU=$HOME/.cargo/bin/tansu; fi
if [ -z "$TANSU" ]; then
  log "installing tansu (one-off, ~15 min on 2 cores)"
  cargo install --locked tansu --version 0.6.0 --features dynostore
  TANSU=$HOME/.cargo/bin/tansu
fi

# --- Python interop client (confluent-kafka from PyPI), reused when present --
VENV=$STATE/venv
if ! "$VENV/bin/python" -c 'import confluent_kafka, fastavro' 2>/dev/null; then
  log "creating the Python venv for the interop test ($VENV)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet confluent-kafka fastavro
fi
export REFLEX_TEST_PYTHON=$VENV/bin/python

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
PORT=$(free_port)
log "starting tansu on 127.0.0.1:$PORT"
"$TANSU" broker --storage-engine memory://tansu/ \
  --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
  >"$STATE/tansu.log" 2>&1 &
BROKER_PID=$!
cleanup() { kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1',$PORT)))"; then break; fi
  kill -0 "$BROKER_PID" 2>/dev/null || { cat "$STATE/tansu.log"; echo "tansu failed to start"; exit 1; }
  sleep 0.1
done
export REFLEX_TEST_BROKERS="127.0.0.1:$PORT"
export REFLEX_TEST_TANSU="$TANSU"   # the outage test starts its own broker behind a proxy

# --- promtool (Debian's prometheus package) --------------------------------
# The alert rules are checked here; tests/telemetry.rs pipes a live /metrics
# scrape through `promtool check metrics` (under CI=true a missing promtool
# fails that test instead of skipping the check).
if ! command -v promtool >/dev/null 2>&1; then
  log "installing promtool (apt: prometheus)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends prometheus
fi
log "promtool check rules deploy/prometheus/alerts.yaml"
promtool check rules deploy/prometheus/alerts.yaml
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["panels"], "no panels"' deploy/grafana/reflex.json

# --- chromium (Debian's package) -------------------------------------------
# tests/board.rs and tests/report.rs drive headless Chromium over its DevTools
# pipe (the incident board, the HTML value report); under CI=true a missing
# chromium fails them instead of skipping the browser checks.
if ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium (apt) for the browser tests"
  if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
fi

# --- Rust: module cycles, format, lints, tests -----------------------------
log "module cycles (scripts/modcycles.py; self-test first)"
python3 scripts/modcycles.py --self-test
python3 scripts/modcycles.py
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
log "cargo test"
cargo test --locked --all-targets
# Benches compile as part of --all-targets; run them with `cargo bench`.

# --- Kubernetes manifests (offline schema validation) ----------------------
VENV=$STATE/venv
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  log "installing kubernetes-validate into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet kubernetes-validate
fi
log "deploy/k8s: topology ConfigMap up to date, manifests valid (Kubernetes 1.34, strict)"
python3 deploy/k8s/gen_topology_configmap.py --check
"$VENV/bin/kubernetes-validate" --kubernetes-version 1.34.0 --strict --quiet deploy/k8s/*.yaml
