#!/usr/bin/env bash
# Rebuilds the built-in category model (topology/models/category.json) from
# `reflex demo` seeds 1001-1060 — never the evaluation seeds 1-20 — exactly
# as it was produced (training is deterministic). About 5 minutes on 2 cores
# after a release build; needs ~200 MB of scratch space per seed at a time.
#   scripts/train_builtin_model.sh [FIRST_SEED LAST_SEED]
# Then: python3 deploy/k8s/gen_topology_configmap.py, and measure with
#   cargo run --release --example diagnosis_eval -- 1 20
set -euo pipefail
cd "$(dirname "$0")/.."
first=${1:-1001}
last=${2:-1060}
cargo build --release --bin reflex
bin=${CARGO_TARGET_DIR:-target}/release/reflex
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for s in $(seq "$first" "$last"); do
  "$bin" demo --seed "$s" --export "$work/s$s" > /dev/null
  cat "$work/s$s/labelled.jsonl" >> "$work/labelled.jsonl"
  rm -rf "$work/s$s"
done
"$bin" train --input "$work/labelled.jsonl" --output topology/models/category.json
