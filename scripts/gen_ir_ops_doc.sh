#!/bin/sh
# gen_ir_ops_doc.sh - regenerates the op table in docs/ir.md (between the markers
# <!-- ops:begin --> and <!-- ops:end -->) from compiler/ir/ir_ops.def, the one table
# of op facts. tests/unit/test_ir_print.c runs it with --check.
#   scripts/gen_ir_ops_doc.sh           rewrite docs/ir.md in place
#   scripts/gen_ir_ops_doc.sh --check   exit 1 (and say so) when docs/ir.md is stale
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
def="$root/compiler/ir/ir_ops.def"
doc="$root/docs/ir.md"

# One markdown row per X(...) line; the "/* ---- group ---- */" comments name the group.
table() {
    awk '
    function flags(s, prefix,    n, parts, i, out, w) {
        if (s == "0") return "-"
        n = split(s, parts, "|")
        out = ""
        for (i = 1; i <= n; i++) {
            w = parts[i]
            gsub(/ /, "", w)
            sub("^" prefix, "", w)
            out = out (out == "" ? "" : ", ") tolower(w)
        }
        return out
    }
    function count(s) { return s == "-1" ? "any" : s }
    BEGIN {
        print "| group | op | operands | results | traits | attributes |"
        print "|---|---|---|---|---|---|"
    }
    /^\/\* ---- .* ---- \*\/$/ {
        group = $0
        sub(/^\/\* ---- /, "", group)
        sub(/ ---- \*\/$/, "", group)
    }
    /^X\(/ {
        line = $0
        sub(/^X\(/, "", line)
        sub(/\)[ \t]*$/, "", line)
        n = split(line, f, ",")
        for (i = 1; i <= n; i++) gsub(/^[ \t]+|[ \t]+$/, "", f[i])
        name = f[2]
        gsub(/"/, "", name)
        printf "| %s | `%s` | %s | %s | %s | %s |\n", group, name, count(f[3]), count(f[4]), flags(f[5], "IRT_"), flags(f[6], "IRA_")
    }' "$def"
}

# docs/ir.md with the lines between the markers replaced by the table.
splice() {
    table > "$tmp_table"
    awk -v tablefile="$tmp_table" '
    /<!-- ops:begin -->/ {
        print
        while ((getline row < tablefile) > 0) print row
        skipping = 1
        next
    }
    /<!-- ops:end -->/ { skipping = 0 }
    !skipping { print }' "$doc"
}

tmp_table=$(mktemp)
tmp_doc=$(mktemp)
trap 'rm -f "$tmp_table" "$tmp_doc"' EXIT

grep -q '<!-- ops:begin -->' "$doc" && grep -q '<!-- ops:end -->' "$doc" || {
    echo "gen_ir_ops_doc.sh: $doc lacks the <!-- ops:begin --> / <!-- ops:end --> markers" >&2
    exit 1
}
splice > "$tmp_doc"

if [ "${1:-}" = "--check" ]; then
    if ! cmp -s "$tmp_doc" "$doc"; then
        echo "docs/ir.md: the op table is out of date; run scripts/gen_ir_ops_doc.sh" >&2
        exit 1
    fi
    exit 0
fi
cat "$tmp_doc" > "$doc"
