#!/usr/bin/env bash
# `make test`'s three tiers, side by side. The lab's tier (the longest) writes to the terminal as
# it goes; the two that need no lab write to .test-logs/ and are printed when the lab's tier ends.
# Every tier's log stays in .test-logs/. Ends with what failed in each failed tier (pytest's
# FAILED/ERROR lines, Ansible's fatal tasks, make's errors), so that the end of the output says
# it. Exits non-zero if any tier failed, after all three have ended.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=.test-logs
mkdir -p "$logs"
declare -A pid rc
for tier in unit podman; do
  make --no-print-directory "test-$tier" > "$logs/$tier.log" 2>&1 &
  pid[$tier]=$!
done
start=$SECONDS
make --no-print-directory test-lab 2>&1 | tee "$logs/lab.log"
rc[lab]=${PIPESTATUS[0]}
for tier in unit podman; do
  wait "${pid[$tier]}"
  rc[$tier]=$?
  printf '\n==== test-%s (%s/%s.log)\n' "$tier" "$logs" "$tier"
  cat "$logs/$tier.log"
done
printf '\n==== tiers after %d s:' $((SECONDS - start))
failed=0
for tier in unit podman lab; do
  if [ "${rc[$tier]}" -eq 0 ]; then printf ' test-%s passed;' "$tier"
  else printf ' test-%s FAILED (exit %d);' "$tier" "${rc[$tier]}"; failed=1; fi
done
echo
for tier in unit podman lab; do
  [ "${rc[$tier]}" -eq 0 ] && continue
  printf '==== what failed in test-%s (%s/%s.log):\n' "$tier" "$logs" "$tier"
  # Molecule prints "default scenario glob failed" whatever happens: not a failure of ours.
  grep -aE '^(FAILED|ERROR) |^fatal: |^failed: |CRITICAL |make(\[[0-9]+\])?: \*\*\*' "$logs/$tier.log" \
    | grep -av 'default scenario glob' | cut -c1-400 | head -40
done
exit "$failed"
