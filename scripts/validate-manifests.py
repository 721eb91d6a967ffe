#!/usr/bin/env python3
"""Validates the generated Kubernetes objects offline.

1. Every built-in object passes `kubernetes-validate --strict` (official schemas, unknown fields rejected).
2. Every sample EgressHost is valid against the generated CRD's openAPIV3Schema, and every fixture under
   Tests/fixtures/egresshosts/invalid is rejected by it.

Usage: scripts/validate-manifests.py [extra manifest files to strict-validate ...]
"""
import glob
import os
import subprocess
import sys

import jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
passed, failed = 0, 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what}")


def documents(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


builtin = sorted(
    glob.glob(os.path.join(ROOT, "config/rbac/*.yaml"))
    + glob.glob(os.path.join(ROOT, "config/operator/*.yaml"))
    + glob.glob(os.path.join(ROOT, "config/crd/egresshosts*.yaml"))
    + glob.glob(os.path.join(ROOT, "Tests/ManifestsTests/Golden/proxy-*.yaml"))
    + glob.glob(os.path.join(ROOT, "Tests/ManifestsTests/Golden/lockdown.yaml"))
    + sys.argv[1:]
)
for path in builtin:
    if os.path.basename(path) == "kustomization.yaml":
        continue
    result = subprocess.run(["kubernetes-validate", "--strict", path], capture_output=True, text=True)
    out = result.stdout + result.stderr
    ok = result.returncode == 0 and "ERROR" not in out
    check(ok, f"kubernetes-validate --strict {os.path.relpath(path, ROOT)}:\n{out}")

crd = documents(os.path.join(ROOT, "config/crd/egresshosts.egress.dev.yaml"))[0]
schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
validator = jsonschema.Draft7Validator(schema)

samples = sorted(glob.glob(os.path.join(ROOT, "config/samples/*.yaml")))
samples = [s for s in samples if os.path.basename(s) != "kustomization.yaml"]
check(len(samples) >= 3, "at least three samples")
for path in samples:
    for doc in documents(path):
        errors = [e.message for e in validator.iter_errors(doc)]
        check(not errors, f"sample {os.path.relpath(path, ROOT)} is invalid: {errors}")

invalid = sorted(glob.glob(os.path.join(ROOT, "Tests/fixtures/egresshosts/invalid/*.yaml")))
check(len(invalid) >= 5, "at least five invalid fixtures")
for path in invalid:
    for doc in documents(path):
        errors = list(validator.iter_errors(doc))
        check(bool(errors), f"invalid fixture {os.path.relpath(path, ROOT)} was accepted by the schema")

print(f"manifests: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
