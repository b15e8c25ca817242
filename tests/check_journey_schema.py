#!/usr/bin/env python3
"""Checks every journey file against journey.schema.json, so the schema editors use and the
format Voronka reads cannot drift apart. Run by tests/run.sh with the tools venv's Python
(jsonschema comes with cfn-lint)."""
import json
import pathlib
import sys
import tomllib

import jsonschema

folder = pathlib.Path(__file__).resolve().parent.parent / "shared" / "campaigns" / "journeys"
schema = json.loads((folder / "journey.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
files = sorted(folder.glob("*.toml"))
problems = 0
for path in files:
    for error in validator.iter_errors(tomllib.loads(path.read_text())):
        problems += 1
        print(f"{path.name}: {'/'.join(map(str, error.path))}: {error.message}")
# A broken journey must be caught, or the check proves nothing.
broken = tomllib.loads((folder / "category_interest.toml").read_text())
broken["steps"][0]["type"] = "sleep"
if validator.is_valid(broken):
    print("the schema accepted a step of unknown type")
    problems += 1
print(f"{len(files)} journey files checked against the schema, {problems} problems")
sys.exit(1 if problems else 0)
