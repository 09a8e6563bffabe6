#!/usr/bin/env bash
# The whole test suite: system packages, formatting, lints, every test.
#
# With CI=true the MySQL-backed tests run against the MariaDB at
# 127.0.0.1:3306 (root, no password, database `test`; override with
# PARLEY_TEST_MYSQL_URL) and FAIL if it is unreachable. Locally they are
# skipped with a loud warning when no MariaDB is running.
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
echo "== all tests passed"
