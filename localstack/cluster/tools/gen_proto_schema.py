#!/usr/bin/env python3
"""Generates src/api/proto_schema.txt: the protobuf field layout of the Kubernetes messages the
simulator accepts, joined from k8s-pb's generated code (tags, wire types) and k8s-openapi's serde
code (JSON field names, which protobuf field names do not reliably give back after snake_casing).

Usage: tools/gen_proto_schema.py <k8s-pb src dir> <k8s-openapi src/v1_34 dir> > src/api/proto_schema.txt
"""
import os
import re
import sys

PACKAGES = [
    "api/core/v1", "api/apps/v1", "api/networking/v1", "api/rbac/v1", "api/authorization/v1",
    "api/authentication/v1", "api/coordination/v1", "api/autoscaling/v1", "api/policy/v1",
    "api/batch/v1", "apimachinery/pkg/apis/meta/v1", "apimachinery/pkg/runtime",
    "apimachinery/pkg/util/intstr", "apimachinery/pkg/api/resource",
]

ATTR = re.compile(r'#\[prost\((.*)\)\]')
TAG = re.compile(r'tag = "(\d+)"')
WRAPPERS = {"Option", "Vec", "BTreeMap", "String", "Box"}


def camel(snake):
    head, *rest = snake.split("_")
    return head + "".join(p.capitalize() for p in rest)


def json_names(openapi_dir, pkg):
    names = {}
    d = os.path.join(openapi_dir, pkg)
    if not os.path.isdir(d):
        return names
    for f in os.listdir(d):
        if not f.endswith(".rs"):
            continue
        text = open(os.path.join(d, f)).read()
        m = re.search(r'pub struct (\w+)', text)
        if not m:
            continue
        fields = dict((rust, js) for js, rust in re.findall(r'"([A-Za-z0-9$]+)" => Field::Key_(\w+)', text))
        names[m.group(1).lower()] = {norm(rust): js for rust, js in fields.items()}
    return names


def norm(rust):
    """k8s-pb and k8s-openapi snake_case acronyms differently (`pod_cid_rs`, `pod_cidrs`)."""
    return rust.replace("_", "").lower()


def resolve(type_text, pkg):
    paths = re.findall(r'((?:super::|[a-z_0-9]+::)*[A-Z]\w*)', type_text)
    for p in paths:
        parts = p.split("::")
        if parts[-1] in WRAPPERS or (len(parts) > 1 and parts[0] in ("core", "prost", "alloc")):
            continue
        if "prost" in parts or "alloc" in parts or "core" in parts[:1]:
            continue
        module = pkg.split("/")
        for seg in parts[:-1]:
            if seg == "super":
                module = module[:-1]
            else:
                module = module + [seg]
        return "/".join(module) + "." + parts[-1]
    return None


def main():
    pb_dir, openapi_dir = sys.argv[1], sys.argv[2]
    out = []
    # Messages without a k8s-openapi struct (Go structs embedded in another, like VolumeSource)
    # take JSON names from any struct that has a field of the same name.
    anywhere = {}
    for pkg in PACKAGES:
        for fields in json_names(openapi_dir, pkg).values():
            for rust, js in fields.items():
                anywhere.setdefault(rust, js)
    for pkg in PACKAGES:
        names = json_names(openapi_dir, pkg)
        lines = open(os.path.join(pb_dir, pkg, "mod.rs")).read().split("\n")
        i = 0
        current = None
        while i < len(lines):
            line = lines[i].strip()
            m = re.match(r'pub struct (\w+) \{', line)
            if m:
                current = m.group(1)
                out.append(f"M {pkg}.{current}")
                i += 1
                continue
            a = ATTR.match(line)
            if a and current:
                attr = a.group(1)
                decl = ""
                depth = 0
                i += 1
                while i < len(lines):
                    l = lines[i].strip()
                    decl += l
                    depth += l.count("<") - l.count(">")
                    i += 1
                    if depth <= 0 and l.endswith(","):
                        break
                fm = re.match(r'pub (r#)?(\w+):\s*(.*),$', decl)
                if not fm:
                    continue
                rust, type_text = fm.group(2), fm.group(3)
                tag = TAG.search(attr).group(1)
                known = names.get(current.lower())
                js = (known or {}).get(norm(rust))
                embedded_type = resolve(type_text, pkg) or ""
                if (js is None and known is not None and attr.startswith("message")
                        and embedded_type.endswith(camel(rust)[:1].upper() + camel(rust)[1:])):
                    # A Go embedded struct: its fields are inlined in the JSON object.
                    js = "-"
                js = js or anywhere.get(norm(rust)) or camel(rust)
                if attr.startswith("btree_map"):
                    kv = re.search(r'btree_map = "(\w+), (\w+)"', attr)
                    value = kv.group(2)
                    if value == "message":
                        value = "message:" + resolve(type_text.split(",", 1)[1], pkg)
                    out.append(f"F {tag} {js} map {value}")
                    continue
                kind = attr.split(",")[0].split(" ")[0]
                card = "repeated" if ", repeated" in attr else "optional"
                if kind == "message":
                    kind = "message:" + resolve(type_text, pkg)
                out.append(f"F {tag} {js} {card} {kind}")
                continue
            i += 1
    print("\n".join(out))


main()
