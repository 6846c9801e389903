#!/usr/bin/env bash
# Rewrites the README's component reference (between the
# `<!-- components:start -->` and `<!-- components:end -->` markers) from
# `dataplane list --format markdown`, which reads each component's
# parameter struct. tests/tests/cli.rs fails until this has been run after
# a parameter changes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p dataplane-engine --bin dataplane
reference=$(target/release/dataplane list --format markdown)
REFERENCE="$reference" python3 - <<'PY'
import os, re
path = "README.md"
text = open(path).read()
start, end = "<!-- components:start -->\n", "<!-- components:end -->"
head, rest = text.split(start, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(head + start + os.environ["REFERENCE"] + "\n" + end + tail)
PY
echo "README.md: component reference rewritten"
