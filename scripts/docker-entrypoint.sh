#!/bin/sh
# Picks the program from the first argument (primary | replica | writer)
# and runs it as PID 1's only child via exec, so SIGTERM from `docker stop`
# reaches it and it shuts down cleanly (its daemon.running sentinel is removed).
set -e
role="${1:-primary}"
[ "$#" -gt 0 ] && shift
case "$role" in
  primary) exec node packages/primary/dist/cli.js "$@" ;;
  replica) exec node packages/replica/dist/cli.js "$@" ;;
  writer) exec node scripts/writer.mjs "$@" ;;
  *) echo "usage: primary|replica|writer [flags]" >&2; exit 2 ;;
esac
