#!/usr/bin/env bash
# Rehearse CI as other machines run it: a fresh clone of the committed HEAD, with ../shared
# beside it, `bash .ci/run` started with SIGINT and SIGQUIT ignored (as under `nohup`, a
# background job of a script and many CI runners) and no standard input; optionally pinned
# to one core (a machine half as fast).
#
# usage: scripts/rehearse.sh [--one-core] [--keep]
#
# Prints the run's last lines, its wall time and exit status, and any process it left
# behind: one whose command line names the clone, or that carries this rehearsal's mark
# (AGR_REHEARSAL in its environment, inherited by everything the run starts, daemons
# included; another run's processes carry another mark or none). Such a process would take
# the next run's messages; it is stopped (SIGTERM, then SIGKILL) and the rehearsal fails.
# Exit status: CI's, or 3 for a leak after a green run.
set -u
one_core=; keep=
for a in "$@"; do
  case $a in
    --one-core) one_core=1 ;;
    --keep) keep=1 ;;
    *) echo "unknown flag $a (use --one-core, --keep)"; exit 2 ;;
  esac
done
top=$(git rev-parse --show-toplevel) || exit 2
shared=$(cd "$top/../shared" 2>/dev/null && pwd) || { echo "no ../shared beside the checkout"; exit 2; }
work=$(mktemp -d -t rehearse.XXXX)
git clone -q "$top" "$work/main" || exit 2
echo "== rehearsing $(git -C "$work/main" log -1 --format='%h %s' | cut -c1-100)"
cp -r "$shared" "$work/shared" && chmod -R a-w "$work/shared"
log="$work/ci.log"
before=$(ps -eo pid= | sort)
pin=""; [ -n "$one_core" ] && pin="taskset -c 0"
started=$(date +%s)
# An explicit trap: bash ignores SIGINT only for some kinds of background job, and the
# ignored disposition is what every child then inherits.
AGR_REHEARSAL=$work bash -c "trap '' INT QUIT; cd '$work/main' && CI=true exec $pin bash .ci/run" < /dev/null > "$log" 2>&1
status=$?
took=$(( $(date +%s) - started ))
sleep 3  # what is exiting anyway has exited
tail -n 30 "$log"
echo "== rehearsal: exit status $status in ${took}s (one core: ${one_core:-no}; SIGINT ignored: yes; no stdin)"

of_this_run() {  # pid: whether the run started it
  local p=$1
  case "$(ps -o args= -p "$p" 2>/dev/null)" in *"$work"*) return 0 ;; esac
  { tr '\0' '\n' < "/proc/$p/environ"; } 2>/dev/null | grep -qx "AGR_REHEARSAL=$work"  # gone meanwhile: not left
}
left=$(comm -13 <(echo "$before") <(ps -eo pid= | sort) | while read -r p; do
  [ "$p" != "$$" ] && of_this_run "$p" && echo "$p $(ps -o args= -p "$p" 2>/dev/null)"; done)
if [ -n "$left" ]; then
  echo "== processes left running after CI (a leak: they would take the next run's messages); stopping them:"
  echo "$left" | cut -c1-200
  for p in $(echo "$left" | awk '{print $1}'); do kill -TERM "$p" 2>/dev/null; done; sleep 5
  for p in $(echo "$left" | awk '{print $1}'); do kill -KILL "$p" 2>/dev/null; done
  [ "$status" -eq 0 ] && status=3
else
  echo "== no process left behind"
fi
if [ -n "$keep" ]; then echo "== kept: $work"; else chmod -R u+w "$work"; rm -rf "$work"; fi
exit "$status"
