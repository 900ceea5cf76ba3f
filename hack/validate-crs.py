#!/usr/bin/env python3
"""Validates custom resources against the CRDs in deploy/crds, strictly.

kubernetes-validate knows only built-in kinds: for our kinds it merely warns that it has
no schema. This checks each document whose apiVersion/kind matches one of our CRDs against
that CRD's openAPIV3Schema, rejecting unknown fields the way the API server's Strict field
validation does (except under x-kubernetes-preserve-unknown-fields). Documents of other kinds
are left to kubernetes-validate. Exit 1 on any invalid document.

usage: validate-crs.py CRD_DIR FILE...
"""
import copy
import glob
import os
import sys

import jsonschema
import yaml


def strict(schema):
    """Copy of an OpenAPI v3 structural schema turned into strict JSON Schema."""
    s = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.pop("nullable", False) and "type" in node:
            node["type"] = [node["type"], "null"]
        if node.pop("x-kubernetes-int-or-string", False):
            node.pop("type", None)
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
        for key in [k for k in node if k.startswith("x-kubernetes-")]:
            node.pop(key)
        if "properties" in node:
            for child in node["properties"].values():
                walk(child)
            if not preserve and "additionalProperties" not in node:
                node["additionalProperties"] = False
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"])
        if "items" in node:
            walk(node["items"])
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key, []):
                walk(child)

    walk(s)
    return s


def load_crds(crd_dir):
    schemas = {}
    for path in sorted(glob.glob(os.path.join(crd_dir, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                group = doc["spec"]["group"]
                kind = doc["spec"]["names"]["kind"]
                for version in doc["spec"]["versions"]:
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    # metadata is validated by the API server itself, not by the CRD schema.
                    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                    schema["properties"]["apiVersion"] = {"type": "string"}
                    schema["properties"]["kind"] = {"type": "string"}
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    schemas = load_crds(sys.argv[1])
    if not schemas:
        print(f"no CRDs found in {sys.argv[1]}", file=sys.stderr)
        return 2
    failed = 0
    checked = 0
    for path in sys.argv[2:]:
        with open(path) as f:
            docs = list(yaml.safe_load_all(f))
        for i, doc in enumerate(docs):
            if not doc:
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            schema = schemas.get(key)
            if schema is None:
                continue
            checked += 1
            name = doc.get("metadata", {}).get("name", "?")
            errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
            for e in errors:
                where = ".".join(str(p) for p in e.absolute_path) or "<root>"
                print(f"{path}: document {i} ({key[1]} {name}): {where}: {e.message}", file=sys.stderr)
            failed += bool(errors)
            if not errors:
                print(f"{path}: {key[1]} {name}: valid")
    if failed:
        print(f"{failed} custom resource(s) invalid", file=sys.stderr)
        return 1
    print(f"{checked} custom resource(s) valid against deploy/crds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
