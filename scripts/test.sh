#!/usr/bin/env bash
# The whole test suite: system packages, formatting, lints, every test.
#
# With CI=true the MySQL-backed tests run against the MariaDB at
# 127.0.0.1:3306 (root, no password, database `test`; override with
# PARLEY_TEST_MYSQL_URL) and FAIL if it is unreachable. Locally they are
# skipped with a loud warning when no MariaDB is running. The same holds for
# the cluster tests and NATS at 127.0.0.1:4222 (PARLEY_TEST_NATS_URL).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/parley-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

./scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets "$@"
echo "== load generator smoke: 1 000 connections, 10 s, no message lost or duplicated"
cargo build -p parley-server -p parley-bench
"$CARGO_TARGET_DIR/debug/parley-bench" throughput --smoke --spawn-server > /dev/null
echo "== all tests passed"
