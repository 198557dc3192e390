#!/usr/bin/env bash
# Prints the path of a working Python 3.13 interpreter, or one line saying how to get one.
# Why not just `python3.13`: a pyenv shim can exist on PATH yet refuse to run while the global
# pyenv version is another one, so every candidate is tried for real.
set -u
want="3.13"
try() {
  [ -n "$1" ] && [ -x "$1" ] || return 1
  "$1" -c "import sys; sys.exit(0 if sys.version_info[:2] == (3, 13) else 1)" >/dev/null 2>&1 || return 1
  echo "$1"; exit 0
}
[ -n "${PYTHON:-}" ] && try "$(command -v "$PYTHON" 2>/dev/null)"
try "$(command -v python3.13 2>/dev/null)"
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root)
  for p in $(ls -d "$root"/versions/3.13.*/bin/python3.13 2>/dev/null | sort -rV); do try "$p"; done
fi
for p in /usr/local/bin/python3.13 /usr/bin/python3.13 /opt/homebrew/bin/python3.13; do try "$p"; done
echo "error: Python $want is required (Azure Functions' Python 3.13 line). Install it (python.org, pyenv install 3.13, or your package manager) and put python3.13 on PATH, or run: make PYTHON=/path/to/python3.13 ..." >&2
exit 1
