#!/usr/bin/env python3
"""Generates schema.rs, the protobuf field tables of gitplane's Kubernetes protobuf decoder.

Usage (from anywhere; paths are resolved against this file and ~/.cargo/registry):

    python3 apimachinery/src/protobuf/generate.py
        Rewrites schema.rs from the local cargo registry and go_fields.txt.

    python3 apimachinery/src/protobuf/generate.py --go-api DIR --go-apimachinery DIR
        First rewrites go_fields.txt from checkouts of k8s.io/api and k8s.io/apimachinery
        (at the tag named in GO_TAG), then schema.rs.

Inputs, each an API fact taken from where Kubernetes publishes it:

- k8s-pb (K8S_PB_VERSION, in the local cargo registry): prost structs generated from
  Kubernetes' generated.proto files. Gives each message's field numbers, wire types, labels
  (optional, repeated, map) and nested message types, and the Rust field names.
- k8s-openapi (K8S_OPENAPI_VERSION, same registry): its Deserialize impls map each JSON name
  to a Rust field name ("podIP" => Field::Key_pod_ip), which joins a proto field to its JSON
  name. Every version directory (v1_33 ...) is read; a field's name never changes between
  Kubernetes versions, and the generator fails if two versions disagree.
- go_fields.txt (committed): for every scalar field of every message in the tables, whether
  Kubernetes' JSON keeps its zero value. Kubernetes' Go marshaller writes every non-pointer
  field, so "" and 0 arrive on the wire for fields the client never set; encoding/json then
  drops them when the Go field is a non-pointer with `omitempty`, and keeps them when the field
  is a pointer (an explicit `replicas: 0`) or has no `omitempty`. Neither crate records Go
  pointer-ness, so this file is extracted from the Go types (types.go) by --go-api/--go-apimachinery;
  it holds facts (message, field number, JSON name, keep|omit), not code. It also lists the
  message fields Go embeds with `json:",inline"` (VolumeSource in Volume, ProbeHandler in
  Probe): proto nests them, JSON flattens their fields into the enclosing object. The JSON
  names of a message that is only ever inlined come from the objects it is inlined into.

The output is deterministic: messages are numbered in breadth-first order from TOP_LEVEL,
fields are sorted by field number. The generator fails, rather than guess, when a message in
the closure has no JSON names, a field has no JSON name, a Go fact is missing or disagrees
with k8s-openapi's JSON name, or a prost attribute has a shape it does not know.
"""

import argparse
import glob
import os
import re
import subprocess
import sys

K8S_PB_VERSION = "0.9.0"
K8S_OPENAPI_VERSION = "0.29.0"
GO_TAG = "v0.35.0"  # the k8s.io/api and k8s.io/apimachinery tag matching k8s-pb 0.9.0 (Kubernetes 1.35)

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_RS = os.path.join(HERE, "schema.rs")
GO_FIELDS = os.path.join(HERE, "go_fields.txt")

# The kinds the decoder accepts: (proto message, apiVersion, kind). "*" as apiVersion: any
# (Kubernetes registers DeleteOptions in every group version).
TOP_LEVEL = [
    ("k8s.io.api.core.v1.Namespace", "v1", "Namespace"),
    ("k8s.io.api.core.v1.ConfigMap", "v1", "ConfigMap"),
    ("k8s.io.api.core.v1.Secret", "v1", "Secret"),
    ("k8s.io.api.core.v1.Service", "v1", "Service"),
    ("k8s.io.api.core.v1.ServiceAccount", "v1", "ServiceAccount"),
    ("k8s.io.api.core.v1.Pod", "v1", "Pod"),
    ("k8s.io.api.core.v1.Binding", "v1", "Binding"),
    ("k8s.io.api.core.v1.Endpoints", "v1", "Endpoints"),
    ("k8s.io.api.core.v1.Event", "v1", "Event"),
    ("k8s.io.api.core.v1.Node", "v1", "Node"),
    ("k8s.io.api.core.v1.PersistentVolume", "v1", "PersistentVolume"),
    ("k8s.io.api.core.v1.PersistentVolumeClaim", "v1", "PersistentVolumeClaim"),
    ("k8s.io.api.core.v1.ResourceQuota", "v1", "ResourceQuota"),
    ("k8s.io.api.core.v1.LimitRange", "v1", "LimitRange"),
    ("k8s.io.api.apps.v1.Deployment", "apps/v1", "Deployment"),
    ("k8s.io.api.apps.v1.ReplicaSet", "apps/v1", "ReplicaSet"),
    ("k8s.io.api.apps.v1.StatefulSet", "apps/v1", "StatefulSet"),
    ("k8s.io.api.apps.v1.DaemonSet", "apps/v1", "DaemonSet"),
    ("k8s.io.api.apps.v1.ControllerRevision", "apps/v1", "ControllerRevision"),
    ("k8s.io.api.batch.v1.Job", "batch/v1", "Job"),
    ("k8s.io.api.batch.v1.CronJob", "batch/v1", "CronJob"),
    ("k8s.io.api.rbac.v1.Role", "rbac.authorization.k8s.io/v1", "Role"),
    ("k8s.io.api.rbac.v1.ClusterRole", "rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("k8s.io.api.rbac.v1.RoleBinding", "rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("k8s.io.api.rbac.v1.ClusterRoleBinding", "rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("k8s.io.api.coordination.v1.Lease", "coordination.k8s.io/v1", "Lease"),
    ("k8s.io.api.scheduling.v1.PriorityClass", "scheduling.k8s.io/v1", "PriorityClass"),
    ("k8s.io.api.policy.v1.PodDisruptionBudget", "policy/v1", "PodDisruptionBudget"),
    ("k8s.io.api.policy.v1.Eviction", "policy/v1", "Eviction"),
    ("k8s.io.api.networking.v1.Ingress", "networking.k8s.io/v1", "Ingress"),
    ("k8s.io.api.networking.v1.IngressClass", "networking.k8s.io/v1", "IngressClass"),
    ("k8s.io.api.discovery.v1.EndpointSlice", "discovery.k8s.io/v1", "EndpointSlice"),
    ("k8s.io.api.authentication.v1.TokenRequest", "authentication.k8s.io/v1", "TokenRequest"),
    ("k8s.io.api.autoscaling.v1.Scale", "autoscaling/v1", "Scale"),
    ("k8s.io.api.autoscaling.v1.HorizontalPodAutoscaler", "autoscaling/v1", "HorizontalPodAutoscaler"),
    ("k8s.io.api.autoscaling.v2.HorizontalPodAutoscaler", "autoscaling/v2", "HorizontalPodAutoscaler"),
    ("k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions", "*", "DeleteOptions"),
    ("k8s.io.api.authorization.v1.SelfSubjectAccessReview", "authorization.k8s.io/v1", "SelfSubjectAccessReview"),
    ("k8s.io.api.authorization.v1.SelfSubjectRulesReview", "authorization.k8s.io/v1", "SelfSubjectRulesReview"),
    ("k8s.io.api.authorization.v1.SubjectAccessReview", "authorization.k8s.io/v1", "SubjectAccessReview"),
]

# Messages with their own JSON form, decoded by hand-written code (the Type variant named here).
SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawExtension",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "FieldsV1",
}

# prost scalar type -> Type variant in table.rs.
SCALARS = {
    "string": "Str",
    "bool": "Bool",
    "int32": "I32",
    "int64": "I64",
    "double": "F64",
    'bytes = "vec"': "Bytes",
}


def fail(msg):
    sys.exit(f"generate.py: {msg}")


def registry_crate(name, version):
    hits = sorted(glob.glob(os.path.expanduser(f"~/.cargo/registry/src/*/{name}-{version}")))
    if not hits:
        fail(f"{name} {version} is not in the local cargo registry (run `cargo fetch` on a project using it)")
    return hits[0]


# ---------------------------------------------------------------------------------------------
# k8s-pb: messages and fields


def proto_package(module):
    """["api", "core", "v1"] -> "k8s.io.api.core.v1"."""
    return "k8s.io." + ".".join(module)


def parse_k8s_pb(root):
    """Returns {proto message: [field dict]} for every struct in k8s-pb."""
    messages = {}
    for path in sorted(glob.glob(os.path.join(root, "src", "**", "mod.rs"), recursive=True)):
        module = os.path.relpath(os.path.dirname(path), os.path.join(root, "src")).split(os.sep)
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"^pub struct (\w+) \{\n(.*?)^\}", text, re.S | re.M):
            name = proto_package(module) + "." + m.group(1)
            messages[name] = parse_fields(name, m.group(2), module)
    return messages


def parse_fields(message, body, module):
    fields = []
    for chunk in body.split("#[prost(")[1:]:
        attr, _, rest = chunk.partition(")]")
        attr = " ".join(attr.split())
        rest = " ".join(line.strip() for line in rest.splitlines() if not line.strip().startswith("//"))
        fm = re.match(r"pub (?:r#)?(\w+): (.*),$", rest.strip())
        if not fm:
            fail(f"{message}: cannot read the field after #[prost({attr})]")
        rust, rust_type = fm.group(1), fm.group(2)
        tm = re.search(r'tag = "(\d+)"', attr)
        if not tm:
            fail(f"{message}.{rust}: no tag in #[prost({attr})]")
        tag = int(tm.group(1))
        spec = re.sub(r',? ?tag = "\d+"', "", attr)
        spec = re.sub(r', packed = "false"', "", spec)
        spec = re.sub(r", boxed", "", spec)
        field = {"tag": tag, "rust": rust}
        mm = re.fullmatch(r'btree_map = "string, (\w+)"', spec)
        if mm:
            field["label"] = "map"
            if mm.group(1) == "message":
                field["type"] = resolve(module, last_generic(rust_type))
            elif mm.group(1) in ("string", "bytes"):
                field["type"] = SCALARS["string" if mm.group(1) == "string" else 'bytes = "vec"']
            else:
                fail(f"{message}.{rust}: unknown map value {mm.group(1)}")
        else:
            sm = re.fullmatch(r"(.+), (optional|repeated)", spec)
            if not sm:
                fail(f"{message}.{rust}: unknown prost attribute {attr!r}")
            kind, label = sm.group(1), sm.group(2)
            field["label"] = "single" if label == "optional" else "repeated"
            if kind == "message":
                field["type"] = resolve(module, last_generic(rust_type))
            elif kind in SCALARS:
                field["type"] = SCALARS[kind]
            else:
                fail(f"{message}.{rust}: unknown prost type {kind!r}")
        fields.append(field)
    return fields


def last_generic(rust_type):
    """The innermost type argument: Option<Box<a::B>> -> a::B; BTreeMap<String, a::B> -> a::B."""
    inner = rust_type
    while "<" in inner:
        inner = inner[inner.index("<") + 1 : inner.rindex(">")]
    return inner.strip().rstrip(",").split(",")[-1].strip()


def resolve(module, path):
    """Resolves a Rust type path relative to the module it appears in to a proto message name."""
    parts = path.split("::")
    mod = list(module)
    while parts and parts[0] == "super":
        mod.pop()
        parts.pop(0)
    if len(parts) == 1:
        return proto_package(module) + "." + parts[0]
    return proto_package(mod + parts[:-1]) + "." + parts[-1]


# ---------------------------------------------------------------------------------------------
# k8s-openapi: JSON names


def squash(rust):
    """The join key of a Rust field name: k8s-pb and k8s-openapi snake-case Kubernetes' names
    differently (pod_cid_rs / pod_cidrs, r#type / type_), but agree once underscores and case go."""
    return rust.replace("_", "").lower()


def parse_k8s_openapi(root):
    """Returns {proto message: {rust field: json name}}, merged over every version directory."""
    names = {}
    versions = sorted(d for d in os.listdir(os.path.join(root, "src")) if re.fullmatch(r"v1_\d+", d))
    for version in versions:
        for path in sorted(glob.glob(os.path.join(root, "src", version, "**", "*.rs"), recursive=True)):
            text = open(path, encoding="utf-8").read()
            dm = re.match(r"// Generated from definition (\S+)", text)
            if not dm or not dm.group(1).startswith("io.k8s."):
                continue
            message = "k8s.io." + dm.group(1)[len("io.k8s.") :]
            entry = names.setdefault(message, {})
            for jm in re.finditer(r'^\s*"([^"]+)" => Field::Key_(\w+),$', text, re.M):
                rust = squash(jm.group(2))
                if entry.get(rust, jm.group(1)) != jm.group(1):
                    fail(f"{message}.{rust}: k8s-openapi versions disagree on the JSON name")
                entry[rust] = jm.group(1)
    return names


def canonical_names(pb, names):
    """Renames k8s-pb's messages to Kubernetes' own spelling.

    k8s-pb aligns the case of some Rust type names (PodDNSConfig -> PodDnsConfig); Kubernetes'
    proto messages, Go types and OpenAPI definitions share one spelling, taken from k8s-openapi.
    """
    by_lower = {}
    for message in names:
        key = message.lower()
        if key in by_lower and by_lower[key] != message:
            fail(f"k8s-openapi has both {by_lower[key]} and {message}")
        by_lower[key] = message

    def rename(message):
        return by_lower.get(message.lower(), message)

    renamed = {}
    for message, fields in pb.items():
        for field in fields:
            if field["type"] not in SCALARS.values():
                field["type"] = rename(field["type"])
        renamed[rename(message)] = fields
    return renamed


# ---------------------------------------------------------------------------------------------
# Go facts: which scalar fields keep their zero value in Kubernetes' JSON


def go_dir(package, api_dir, apimachinery_dir):
    if package.startswith("k8s.io.api."):
        return os.path.join(api_dir, *package[len("k8s.io.api.") :].split("."))
    if package.startswith("k8s.io.apimachinery."):
        return os.path.join(apimachinery_dir, *package[len("k8s.io.apimachinery.") :].split("."))
    fail(f"no Go package for {package}")


def parse_go_structs(directory):
    """Returns {struct: {field number: (json name, keep|omit|inline)}} for a Go package."""
    structs = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.go"))):
        base = os.path.basename(path)
        if base.endswith("_test.go") or base.startswith("zz_generated") or base.startswith("generated."):
            continue
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"^type (\w+) struct \{\n(.*?)^\}", text, re.S | re.M):
            fields = {}
            for fm in re.finditer(r"^\s+(?:(\w+)\s+)?([^\s`]+)\s+`([^`]*)`", m.group(2), re.M):
                go_type, tags = fm.group(2), fm.group(3)
                pm = re.search(r'protobuf:"\w+,(\d+),', tags)
                jm = re.search(r'json:"([^"]*)"', tags)
                if not pm or not jm:
                    continue
                json_opts = jm.group(1).split(",")
                if "inline" in json_opts[1:]:
                    fields[int(pm.group(1))] = ("-", "inline")
                    continue
                omits = "omitempty" in json_opts[1:] or "omitzero" in json_opts[1:]
                keep = go_type.startswith("*") or not omits
                fields[int(pm.group(1))] = (json_opts[0], "keep" if keep else "omit")
            structs[m.group(1)] = fields
    return structs


def write_go_fields(closure, pb, api_dir, apimachinery_dir):
    cache = {}
    lines = [
        f"# Generated by generate.py --go-api/--go-apimachinery from k8s.io/api and k8s.io/apimachinery {GO_TAG}.",
        "# For every scalar field of every message in schema.rs: message, field number, JSON name, and",
        "# whether Kubernetes' JSON keeps the field's zero value (keep: a Go pointer or no omitempty)",
        "# or drops it (omit: a non-pointer with omitempty); and every message field Go embeds",
        "# with `json:\",inline\"`, whose fields JSON flattens into the enclosing object (inline).",
    ]
    for message in closure:
        package, _, struct = message.rpartition(".")
        if package not in cache:
            cache[package] = parse_go_structs(go_dir(package, api_dir, apimachinery_dir))
        go = cache[package].get(struct)
        if go is None:
            fail(f"no Go struct for {message}")
        for field in sorted(pb[message], key=lambda f: f["tag"]):
            if field["tag"] not in go:
                fail(f"{message}: Go struct has no field {field['tag']}")
            json, rule = go[field["tag"]]
            scalar = field["label"] == "single" and field["type"] in SCALARS.values()
            if scalar or rule == "inline":
                lines.append(f"{message} {field['tag']} {json} {rule}")
    with open(GO_FIELDS, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


def read_go_fields():
    facts = {}
    for line in open(GO_FIELDS, encoding="utf-8"):
        if line.startswith("#") or not line.strip():
            continue
        message, tag, json, rule = line.split()
        facts[(message, int(tag))] = (json, rule)
    return facts


# ---------------------------------------------------------------------------------------------
# Closure and output


def compute_closure(pb):
    order = []
    seen = set()
    queue = [message for message, _, _ in TOP_LEVEL]
    while queue:
        message = queue.pop(0)
        if message in seen or message in SPECIAL:
            continue
        if message not in pb:
            fail(f"{message} is not in k8s-pb")
        seen.add(message)
        order.append(message)
        for field in sorted(pb[message], key=lambda f: f["tag"]):
            if field["type"] not in SCALARS.values():
                queue.append(field["type"])
    return order


def type_expr(ty, index):
    if ty in SCALARS.values():
        return ty
    if ty in SPECIAL:
        return SPECIAL[ty]
    return f"Msg({index[ty]})"


def rust_str(s):
    if not re.fullmatch(r"[A-Za-z0-9_./$*-]*", s):
        fail(f"unexpected character in {s!r}")
    return f'"{s}"'


def write_schema(pb, names, facts, closure):
    index = {message: i for i, message in enumerate(closure)}
    out = [
        "//! Generated field tables of the Kubernetes protobuf messages gitplane decodes. Do not edit.",
        "//!",
        f"//! Generated by `python3 apimachinery/src/protobuf/generate.py` from k8s-pb {K8S_PB_VERSION}",
        f"//! (field numbers, wire types, nested messages; Kubernetes 1.35), k8s-openapi {K8S_OPENAPI_VERSION}",
        f"//! (JSON names) and go_fields.txt (zero values kept in JSON; k8s.io/api {GO_TAG}). To regenerate,",
        "//! edit TOP_LEVEL or the crate versions in generate.py and run it; see its docstring.",
        "",
        "use super::table::{Message, Type::*, inline, keep, map, omit, rep};",
        "",
        f"/// Every message reachable from [`KINDS`] ({len(closure)}); `Msg(i)` is `MESSAGES[i]`.",
        "pub(super) static MESSAGES: &[Message] = &[",
    ]
    fields_total = 0
    # A message Go always embeds inline has no OpenAPI definition of its own: its JSON names
    # are those of the objects it is flattened into.
    for message in closure:
        for field in pb[message]:
            fact = facts.get((message, field["tag"]))
            if fact is not None and fact[1] == "inline" and field["type"] not in names:
                names.setdefault(field["type"] + "#inline", {}).update(names.get(message, {}))
    for message in closure:
        jnames = names.get(message, names.get(message + "#inline"))
        if jnames is None:
            fail(f"{message} has no k8s-openapi definition (add it to SPECIAL if it has its own JSON form)")
        out.append(f"    // {index[message]}")
        out.append("    Message {")
        out.append(f"        name: {rust_str(message)},")
        out.append("        fields: &[")
        for field in sorted(pb[message], key=lambda f: f["tag"]):
            ty = type_expr(field["type"], index)
            fact = facts.get((message, field["tag"]))
            if fact is not None and fact[1] == "inline":
                if field["label"] != "single" or not ty.startswith("Msg("):
                    fail(f"{message} field {field['tag']}: only a message can be inline")
                out.append(f"            inline({field['tag']}, {ty}),")
                fields_total += 1
                continue
            json = jnames.get(squash(field["rust"]))
            if json is None:
                fail(f"{message}.{field['rust']} (field {field['tag']}) has no JSON name in k8s-openapi")
            if field["label"] == "single" and field["type"] in SCALARS.values():
                if fact is None:
                    fail(f"{message} field {field['tag']} is not in go_fields.txt; regenerate it with --go-api")
                if fact[0] != json:
                    fail(f"{message} field {field['tag']}: Go says {fact[0]!r}, k8s-openapi says {json!r}")
                ctor = fact[1]
            elif field["label"] == "single":
                ctor = "omit"
            elif field["label"] == "repeated":
                ctor = "rep"
            else:
                ctor = "map"
            out.append(f"            {ctor}({field['tag']}, {rust_str(json)}, {ty}),")
            fields_total += 1
        out.append("        ],")
        out.append("    },")
    out.append("];")
    out.append("")
    out.append("/// The kinds [`super::decode`] accepts: (apiVersion, kind, message); apiVersion `*` means any.")
    out.append("pub(super) static KINDS: &[(&str, &str, u16)] = &[")
    for message, api_version, kind in TOP_LEVEL:
        out.append(f"    ({rust_str(api_version)}, {rust_str(kind)}, {index[message]}),")
    out.append("];")
    with open(SCHEMA_RS, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    # Formatted as `cargo fmt` would, so that regenerating never leaves a diff.
    subprocess.run(["rustfmt", "--edition", "2024", SCHEMA_RS], check=True)
    print(f"generate.py: {len(closure)} messages, {fields_total} fields, {len(TOP_LEVEL)} kinds -> {SCHEMA_RS}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--go-api", help="a checkout of k8s.io/api at GO_TAG; rewrites go_fields.txt")
    parser.add_argument("--go-apimachinery", help="a checkout of k8s.io/apimachinery at GO_TAG")
    args = parser.parse_args()
    pb = parse_k8s_pb(registry_crate("k8s-pb", K8S_PB_VERSION))
    names = parse_k8s_openapi(registry_crate("k8s-openapi", K8S_OPENAPI_VERSION))
    pb = canonical_names(pb, names)
    closure = compute_closure(pb)
    if args.go_api or args.go_apimachinery:
        if not (args.go_api and args.go_apimachinery):
            fail("--go-api and --go-apimachinery go together")
        write_go_fields(closure, pb, args.go_api, args.go_apimachinery)
    write_schema(pb, names, read_go_fields(), closure)


if __name__ == "__main__":
    main()
