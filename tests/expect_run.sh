#!/bin/sh
# Runs a program for ctest and passes only when BOTH its exit status is the
# expected one AND its output (stdout and stderr together) matches an extended
# regular expression. ctest's PASS_REGULAR_EXPRESSION alone ignores the exit
# status, so a program that printed the right line and then crashed passed.
#   usage: expect_run.sh STATUS REGEX PROGRAM [ARGS...]
if [ "$#" -lt 3 ]; then
  echo "usage: $0 STATUS REGEX PROGRAM [ARGS...]" >&2
  exit 2
fi
want=$1
pattern=$2
shift 2
out=$("$@" 2>&1)
got=$?
printf '%s\n' "$out"
status=0
if [ "$got" != "$want" ]; then
  echo "expect_run: exit status $got, expected $want" >&2
  status=1
fi
if ! printf '%s\n' "$out" | grep -Eq -- "$pattern"; then
  echo "expect_run: the output does not match /$pattern/" >&2
  status=1
fi
[ "$status" = 0 ] && echo "expect_run: exit status $got and the output matches /$pattern/"
exit "$status"
