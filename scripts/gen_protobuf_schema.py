"""Generate kperflab/lab/protobuf_schema.json: the Kubernetes protobuf wire schema the lab's API server decodes.

Reads upstream's `generated.proto` files (message → field number, name, type, repeated/map) and the Go types
they are generated from (`json:` tags: the name, `omitempty`, embedded `,inline` structs; pointer, slice or value
fields) in git checkouts of kubernetes/api and kubernetes/apimachinery at a release branch, and of kubernetes/
kube-aggregator for apiregistration.k8s.io/v1 (APIService), e.g.

    .venv/bin/python scripts/gen_protobuf_schema.py /work/.mirror/kubernetes+api/repo \\
        /work/.mirror/kubernetes+apimachinery/repo --aggregator /work/.mirror/kubernetes+kube-aggregator/repo \\
        --rev release-1.32

The Go side matters because the API server turns a protobuf body into a Go struct and the lab wants the JSON that
struct would marshal to: a value field absent on the wire is Go's zero value, printed unless `omitempty`; a nil
pointer, slice or map is `null` unless `omitempty`; a struct is always printed.

Output (compact JSON):
  {"source": {...}, "versions": {"apps/v1": "k8s.io.api.apps.v1", ...},
   "messages": {"k8s.io.api.core.v1.ConfigMap": [[number, "jsonName", "type", "flags"], ...], ...},
   "lists": {"k8s.io.api.authentication.v1.ExtraValue": "string", ...}}
type: string|bool|int32|int64|bytes, a message's full name, or "map:<value type>" (keys are strings);
flags: r repeated, p Go pointer, o omitempty, i embedded struct inlined in its parent's JSON.
"lists" are messages Go declares as named slices (`type ExtraValue []string`): JSON prints their items as a list.
Only the stable (vN) packages of kubernetes/api and what they import are kept.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "kperflab" / "lab" / "protobuf_schema.json"
AGGREGATOR_DIRS = ("pkg/apis/apiregistration/v1",)
APIMACHINERY_DIRS = ("pkg/apis/meta/v1", "pkg/api/resource", "pkg/runtime", "pkg/runtime/schema", "pkg/util/intstr")
SCALARS = {"string", "bool", "int32", "int64", "bytes"}
# messages whose Go types marshal their own JSON (kperflab/lab/protobuf.py knows them): their proto fields are
# not Go struct fields
CUSTOM_JSON = {"k8s.io.apimachinery.pkg.apis.meta.v1." + n for n in ("Time", "MicroTime", "Duration", "FieldsV1")} | {
    "k8s.io.apimachinery.pkg.api.resource.Quantity", "k8s.io.apimachinery.pkg.util.intstr.IntOrString",
    "k8s.io.apimachinery.pkg.runtime.RawExtension"}

FIELD = re.compile(r"^\s*(?:(optional|repeated|required)\s+)?([.\w]+)\s+(\w+)\s*=\s*(\d+)\s*;")
MAP_FIELD = re.compile(r"^\s*map<\s*string\s*,\s*([.\w]+)\s*>\s+(\w+)\s*=\s*(\d+)\s*;")
GO_STRUCT = re.compile(r"^type\s+(\w+)\s+struct\s*\{")
GO_SLICE = re.compile(r"^type\s+(\w+)\s+\[\]([\w.]+)\s*$")
GO_FIELD = re.compile(r"^(?:(\w+)\s+)?(\*?[\w.\[\]*]+(?:\[[\w.]+\][\w.*\[\]]+)?)\s+`([^`]*)`")


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def parse_proto(text: str) -> tuple[str, dict[str, list[list]]]:
    """(package, {message: [[number, name, type, label], ...]}) of one generated.proto."""
    package = re.search(r"^package\s+([\w.]+)\s*;", text, re.M).group(1)
    messages: dict[str, list[list]] = {}
    current: list[list] | None = None
    depth = 0
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].rstrip()
        if not line.strip():
            continue
        m = re.match(r"^\s*message\s+(\w+)\s*\{", line)
        if m:
            if depth:
                raise SystemExit(f"nested message {m.group(1)} in {package}: not expected from go-to-protobuf")
            current = messages.setdefault(f"{package}.{m.group(1)}", [])
            depth = 1
            continue
        if current is None:
            continue
        if line.strip() == "}":
            depth -= 1
            if depth == 0:
                current = None
            continue
        mm = MAP_FIELD.match(line)
        if mm:
            current.append([int(mm.group(3)), mm.group(2), "map:" + qualify(mm.group(1), package), "map"])
            continue
        fm = FIELD.match(line)
        if fm:
            current.append([int(fm.group(4)), fm.group(3), qualify(fm.group(2), package), fm.group(1) or "optional"])
            continue
        if line.strip().startswith(("option", "reserved")):
            continue
        raise SystemExit(f"cannot read a line of {package}: {raw!r}")
    return package, messages


def qualify(type_: str, package: str) -> str:
    if type_ in SCALARS:
        return type_
    if type_.startswith("."):
        return type_[1:]
    return f"{package}.{type_}"


def parse_go(texts: list[str]) -> tuple[dict[str, dict[str, dict]], dict[str, str]]:
    """Go structs of one package: {struct: {proto field name: {json, omitempty, inline, pointer, gotype}}}, and the
    named slice types {name: item type}."""
    structs: dict[str, dict[str, dict]] = {}
    slices: dict[str, str] = {}
    for text in texts:
        current: dict[str, dict] | None = None
        for raw in text.splitlines():
            line = raw.strip()
            if current is None:
                m = GO_STRUCT.match(raw)
                if m:
                    current = structs.setdefault(m.group(1), {})
                    continue
                s = GO_SLICE.match(raw)
                if s:
                    slices[s.group(1)] = s.group(2)
                continue
            if raw.startswith("}"):
                current = None
                continue
            if not line or line.startswith("//"):
                continue
            fm = GO_FIELD.match(line)
            if not fm:
                continue
            name, gotype, tags = fm.groups()
            proto = re.search(r'protobuf:"([^"]*)"', tags)
            js = re.search(r'json:"([^"]*)"', tags)
            if not proto or not js:
                continue
            pparts = proto.group(1).split(",")
            pname = next((p[5:] for p in pparts if p.startswith("name=")), None)
            jparts = js.group(1).split(",")
            current[pname or f"#{pparts[1]}"] = {"number": int(pparts[1]), "json": jparts[0], "omitempty": "omitempty" in jparts[1:],
                              "inline": name is None and jparts[0] == "", "pointer": gotype.startswith("*"),
                              "gotype": gotype}
    return structs, slices


def read_packages(api: str, machinery: str, rev: str, aggregator: str | None = None) -> tuple[dict, dict, dict, dict]:
    messages: dict[str, list[list]] = {}
    go: dict[str, dict[str, dict]] = {}
    slices: dict[str, str] = {}
    versions: dict[str, str] = {}
    repos: list[tuple[str, tuple[str, ...] | None]] = [(api, None), (machinery, APIMACHINERY_DIRS)]
    if aggregator:
        repos.append((aggregator, AGGREGATOR_DIRS))
    for repo, dirs in repos:
        files = git(repo, "ls-tree", "-r", "--name-only", rev).splitlines()
        protos = [f for f in files if f.endswith("/generated.proto")]
        if dirs is not None:
            protos = [f for f in protos if f.rsplit("/", 1)[0] in dirs]
        for path in protos:
            pkgdir = path.rsplit("/", 1)[0]
            package, msgs = parse_proto(git(repo, "show", f"{rev}:{path}"))
            messages.update(msgs)
            gofiles = [f for f in files if f.startswith(pkgdir + "/") and f.count("/") == pkgdir.count("/") + 1
                       and f.endswith(".go") and not f.endswith("_test.go") and not f.endswith("generated.pb.go")
                       and "zz_generated" not in f and "swagger_doc" not in f]
            structs, named = parse_go([git(repo, "show", f"{rev}:{f}") for f in gofiles])
            for sname, fields in structs.items():
                go[f"{package}.{sname}"] = fields
            for sname, item in named.items():
                slices[f"{package}.{sname}"] = item
            if dirs is None or dirs is AGGREGATOR_DIRS:
                group = re.search(r'GroupName\s*=\s*"([^"]*)"', git(repo, "show", f"{rev}:{pkgdir}/register.go"))
                version = pkgdir.rsplit("/", 1)[1]
                versions[f"{group.group(1)}/{version}" if group.group(1) else version] = package
            elif pkgdir == "pkg/apis/meta/v1":
                versions["meta.k8s.io/v1"] = package
    return messages, go, slices, versions


def build(api: str, machinery: str, rev: str, aggregator: str | None = None) -> dict:
    messages, go, slices, versions = read_packages(api, machinery, rev, aggregator)
    stable = {gv: pkg for gv, pkg in versions.items() if re.fullmatch(r"v\d+", gv.rsplit("/", 1)[-1])}
    keep: set[str] = set()
    todo = [name for name in messages if any(name.startswith(pkg + ".") and name.count(".") == pkg.count(".") + 1
                                              for pkg in stable.values())]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        for _, _, type_, _ in messages[name]:
            ref = type_[4:] if type_.startswith("map:") else type_
            if ref not in SCALARS:
                todo.append(ref)
    out_msgs: dict[str, list[list]] = {}
    lists: dict[str, str] = {}
    problems: list[str] = []
    for name in sorted(keep):
        fields = messages[name]
        gofields = go.get(name)
        if name in slices:  # `type ExtraValue []string` ⇄ `message ExtraValue { repeated string items = 1; }`
            if len(fields) != 1 or fields[0][3] != "repeated":
                problems.append(f"{name}: a Go slice type but not one repeated field")
            lists[name] = fields[0][2]
        rows = []
        for number, pname, type_, label in fields:
            g = (gofields or {}).get(pname) or (gofields or {}).get(f"#{number}")
            if g is None:
                if gofields is not None and name not in slices and name not in CUSTOM_JSON:
                    problems.append(f"{name}.{pname}: no Go field")
                g = {"json": pname, "omitempty": True, "inline": False, "pointer": False, "number": number}
            elif g["number"] != number:
                problems.append(f"{name}.{pname}: proto number {number}, Go tag {g['number']}")
            flags = ("r" if label == "repeated" else "") + ("p" if g["pointer"] else "") + \
                    ("o" if g["omitempty"] else "") + ("i" if g["inline"] else "")
            rows.append([number, g["json"], type_, flags])
        out_msgs[name] = rows
    if problems:
        raise SystemExit("schema mismatches:\n  " + "\n  ".join(problems))
    return {"versions": dict(sorted(stable.items())), "messages": out_msgs, "lists": lists}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("api", help="git directory of kubernetes/api")
    ap.add_argument("apimachinery", help="git directory of kubernetes/apimachinery")
    ap.add_argument("--aggregator", help="git directory of kubernetes/kube-aggregator (APIService)")
    ap.add_argument("--rev", default="release-1.32")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    schema = build(args.api, args.apimachinery, args.rev, args.aggregator)
    source = {"kubernetes/api": f"{args.rev} {git(args.api, 'rev-parse', args.rev).strip()}",
              "kubernetes/apimachinery": f"{args.rev} {git(args.apimachinery, 'rev-parse', args.rev).strip()}"}
    if args.aggregator:
        source["kubernetes/kube-aggregator"] = f"{args.rev} {git(args.aggregator, 'rev-parse', args.rev).strip()}"
    schema = {"source": {**source, "generator": "scripts/gen_protobuf_schema.py"}, **schema}
    def dump(value: object) -> str:
        return json.dumps(value, separators=(",", ":"))

    head = ",\n".join(f"{dump(k)}:{dump(schema[k])}" for k in ("source", "versions", "lists"))
    body = ",\n".join(f"{dump(k)}:{dump(v)}" for k, v in schema["messages"].items())
    text = "{" + head + ',\n"messages":{\n' + body + "}}\n"  # one message a line: diffs stay readable
    json.loads(text)
    args.out.write_text(text)
    print(f"{args.out}: {len(schema['messages'])} messages, {len(schema['versions'])} group versions, "
          f"{len(text) // 1024} KiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
