#!/bin/sh
# The export and the tokenizer folder on other transformers versions than the suite's: each version gets a venv of
# its own (torch first, as `make install` does) and runs the tests that load them in transformers.
#   sh bench/check_transformers_versions.sh [VERSION …]      (default: the oldest the dev range admits, and 4.57.6)
set -eu
cd "$(dirname "$0")/.."
versions="${*:-4.43.4 4.57.6}"
for version in $versions; do
    venv="${TMPDIR:-/tmp}/lmforge-transformers-$version"
    test -x "$venv/bin/python" || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch==2.13.0
    "$venv/bin/pip" install --quiet -e '.[train]' warcio pytest pytest-timeout "transformers==$version"
    echo "transformers $version:"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/test_export.py \
        tests/test_tokenizer.py::test_the_file_loads_in_tokenizers_and_transformers
done
