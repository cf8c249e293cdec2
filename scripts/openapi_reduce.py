"""Reduce upstream's OpenAPI v2 document to the API groups the lab serves: kperflab/lab/openapi-spec.json.gz.

    git -C <kubernetes-client/python clone> show <commit>:kubernetes/swagger.json.unprocessed > /tmp/swagger.json
    .venv/bin/python scripts/openapi_reduce.py /tmp/swagger.json --source "kubernetes-client/python@<commit> (…)"

The input is kube-apiserver's own OpenAPI v2 document (`api/openapi-spec/swagger.json` of kubernetes/kubernetes),
which the official Python client keeps unprocessed as `kubernetes/swagger.json.unprocessed` next to the code it was
generated from. Kept: every path of every group/version in `kperflab.lab.resources.TYPES` (the lab picks what it
serves at run time, so a kind added later needs no new data when its group/version is already here), minus the
deprecated `/watch/` paths, and the definitions and shared parameters those paths reach. Dropped: the CBOR media
types (the lab speaks JSON, YAML and reads protobuf). Nothing else changes: names, descriptions and the
`x-kubernetes-*` extensions stay as upstream wrote them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kperflab.lab.openapi import _closure  # noqa: E402
from kperflab.lab.resources import TYPES  # noqa: E402

OUT = ROOT / "kperflab" / "lab" / "openapi-spec.json.gz"
DROP_MEDIA = ("application/cbor", "application/apply-patch+cbor")


def _prefixes() -> list[str]:
    gvs = {(t.group, t.version) for t in TYPES}
    return sorted(f"/apis/{g}/{v}/" if g else f"/api/{v}/" for g, v in gvs)


def _strip_media(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: [m for m in v if m not in DROP_MEDIA] if k in ("consumes", "produces") and isinstance(v, list)
                else _strip_media(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_strip_media(v) for v in node]
    return node


def reduce(doc: dict[str, Any], source: str) -> dict[str, Any]:
    prefixes = _prefixes()
    paths = {p: _strip_media(item) for p, item in doc["paths"].items()
             if any(p.startswith(pre) for pre in prefixes) and "/watch/" not in p}
    definitions, parameters = _closure(doc, paths)
    return {"swagger": doc["swagger"], "info": doc["info"], "x-kperflab-source": source,
            "paths": dict(sorted(paths.items())), "definitions": definitions, "parameters": parameters, "security": doc.get("security", []),
            "securityDefinitions": doc.get("securityDefinitions", {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("swagger", type=Path, help="upstream swagger.json (OpenAPI v2)")
    ap.add_argument("--source", required=True, help="where it came from, kept in the output")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    reduced = reduce(json.loads(args.swagger.read_text()), args.source)
    data = json.dumps(reduced, sort_keys=True, separators=(",", ":")).encode()
    args.out.write_bytes(gzip.compress(data, 9, mtime=0))
    print(f"{args.out.relative_to(ROOT)}: {len(reduced['paths'])} paths, {len(reduced['definitions'])} definitions, "
          f"{len(data)} bytes of JSON, {args.out.stat().st_size} gzipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
