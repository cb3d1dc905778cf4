#!/usr/bin/env bash
# The knob sweep behind BENCHMARKS.md: every run writes bench/results/<date>.json; compare them with
# `npx tsx bench/results-table.ts`. Runs go one after the other, never in parallel (the machine has 2 cores), and
# each phase first waits (up to 2 min) for other work on the machine to calm down.
set -u
cd "$(dirname "$0")/.."
run() {
  echo "== $* (AS_CONSUMER_MAX_BYTES_PER_PARTITION=${AS_CONSUMER_MAX_BYTES_PER_PARTITION:-default})"
  "$@" || echo "(exit $?)"
}

# Defaults, three times: the spread between them is the noise floor.
for i in 1 2 3; do run npx tsx bench/runtime.ts --label "default #$i"; done

# Fetch size per partition (= the engine's batch size, and the size of each transaction).
for b in 65536 131072 262144; do AS_CONSUMER_MAX_BYTES_PER_PARTITION=$b run npx tsx bench/runtime.ts --label "fetch $b"; done
AS_CONSUMER_MAX_BYTES_PER_PARTITION=4194304 run npx tsx bench/runtime.ts --phases baseline-chunked,router,windowed --phase-timeout 60 --label "fetch 4194304"

# Partitions processed concurrently by one member (runProcessor's `concurrency`; the baselines use the same).
run npx tsx bench/runtime.ts --phases baseline-chunked,router,windowed --concurrency 1 --label "concurrency 1"
for c in 1 2 3; do
  AS_CONSUMER_MAX_BYTES_PER_PARTITION=262144 run npx tsx bench/runtime.ts --phases baseline-chunked,router,windowed --concurrency "$c" --label "fetch 262144, concurrency $c"
done

# What kafkajs' O(n²) grouping costs: the same runs with a linear grouping preloaded (bench process only).
run npx tsx --import ./bench/kafkajs-linear-grouping.ts bench/runtime.ts --label "kafkajs linear grouping"
AS_CONSUMER_MAX_BYTES_PER_PARTITION=262144 run npx tsx --import ./bench/kafkajs-linear-grouping.ts bench/runtime.ts --label "fetch 262144 + kafkajs linear grouping"

# Liveness hazard: every event routed to one topic, default fetch size (expected: stuck on MESSAGE_TOO_LARGE).
run npx tsx bench/runtime.ts --phases router --trade-share 0 --phase-timeout 45 --label "hazard: all PriceTick"
AS_CONSUMER_MAX_BYTES_PER_PARTITION=262144 run npx tsx bench/runtime.ts --phases router --trade-share 0 --label "all PriceTick, fetch 262144"
