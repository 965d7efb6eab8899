#!/usr/bin/env bash
# Lists every user-facing error format passed to diag_error / parse_error and fails when
# one has no test: the text before the format's first conversion must appear in a golden
# .err file or in a test source. Run by CI (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=0
total=0
while IFS= read -r fmt; do
    total=$((total + 1))
    # the longest literal run of the format (split at conversions), at least 12 chars
    key=$(printf '%s' "$fmt" | sed -E 's/%(\.\*)?[-0-9.]*(ll|l|z)?[a-z]/\n/g' |
          awk '{ if (length($0) > length(best)) best = $0 } END { print best }')
    key=${key//\\\"/\"}
    [ ${#key} -ge 8 ] || continue
    case "$fmt" in "internal error"*) continue ;; esac
    if ! grep -rqF -- "$key" tests/golden/errors tests/unit; then
        echo "untested error: \"$fmt\""
        missing=$((missing + 1))
    fi
done < <(grep -rhoE '(diag_error|parse_error)\([^"]*"([^"\\]|\\.)*"' compiler grammar |
         sed -E 's/^[^"]*"//; s/"$//' | sort -u)
echo "check_error_tests: $total error formats, $missing without a test"
[ "$missing" -eq 0 ]
