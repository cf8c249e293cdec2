"""A pod's /etc/resolv.conf, as the kubelet computes it and the container runtime writes it.

The kubelet builds a CRI ``DNSConfig`` (servers, searches, options); the runtime turns it into the file. Each rule
follows an upstream source:

| rule | upstream |
|---|---|
| parse the node file: `nameserver` lines accumulate, the last `search` and the last `options` line win, `#` lines are comments, a search domain loses its trailing dot | kubernetes `pkg/kubelet/network/dns/dns.go` `parseResolvConf` |
| policy → base config: `None` empty; `ClusterFirstWithHostNet` cluster; `ClusterFirst` cluster, or `Default` on hostNetwork; `Default` the node file; an unknown policy is treated as cluster | `dns.go` `getPodDNSType` |
| cluster: nameservers = `clusterDNS` only; search = `<ns>.svc.<domain> svc.<domain> <domain>` + the node's list, de-duplicated; options = `ndots:5` only (the node's options are dropped) | `dns.go` `GetPodDNS`, `generateSearchesForDNSClusterFirst`, `defaultDNSOptions` |
| no `clusterDNS`: `MissingClusterDNS` warning (on the node and the pod), then as `Default` | `dns.go` `GetPodDNS` |
| kubelet `--resolv-conf=""` (``node_resolv_conf=None`` here) under `Default`: `nameserver 127.0.0.1`, `search .` | `dns.go` `GetPodDNS` |
| `dnsConfig`: nameservers and searches appended then de-duplicated; options merged by name, the pod's value wins | `dns.go` `appendDNSConfig`, `mergeDNSOptions` |
| limits: 3 nameservers; search ≤ 32 domains, a domain > 253 chars dropped, the line ≤ 2048 chars (cut from the tail); each trim is a `DNSConfigForming` warning with the kubelet's text | `dns.go` `formDNSNameserversFitsLimits`, `formDNSSearchFitsLimits`; `pkg/apis/core/validation` (KEP-2595 limits, GA in 1.28) |
| file text: `search …` line, one `nameserver` line each, `options …` line, in that order, each only when non-empty; an empty result makes the runtime copy the host's file instead | containerd CRI `parseDNSOptions` and sandbox `/etc/resolv.conf` setup |

One choice of ours: the kubelet merges options through a Go map, so their order in the file is unspecified
upstream; here it is the node's (or `ndots:5`) first, then the pod's new names, in the order given.
"""

from __future__ import annotations

from typing import Any

MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_LINE_CHARS = 2048
MAX_DOMAIN_CHARS = 253  # DNS1123SubdomainMaxLength
DEFAULT_OPTIONS = ("ndots:5",)


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, searches, options) of a resolv.conf, read the way the kubelet reads the node's.

    >>> parse_resolv_conf("# node\\nnameserver 10.0.0.2\\nsearch a.example. b.example\\nnameserver 10.0.0.3\\noptions ndots:2 rotate\\n")
    (['10.0.0.2', '10.0.0.3'], ['a.example', 'b.example'], ['ndots:2', 'rotate'])
    """
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.split("\n"):
        trimmed = line.strip()
        if trimmed.startswith("#"):
            continue
        fields = trimmed.split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            nameservers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:]]
        elif fields[0] == "options":
            options = fields[1:]
    return nameservers, searches, options


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _merge_options(existing: list[str], pod_options: list[dict[str, Any]]) -> list[str]:
    merged: dict[str, str] = {}
    for op in existing:
        name, _, value = op.partition(":")
        merged[name] = value
    for op in pod_options:
        value = op.get("value")
        merged[op.get("name", "")] = "" if value is None else str(value)
    return [f"{name}:{value}" if value else name for name, value in merged.items()]


def _fit_search(search: list[str]) -> tuple[list[str], bool]:
    exceeded = False
    if len(search) > MAX_SEARCH_PATHS:
        search, exceeded = search[:MAX_SEARCH_PATHS], True
    kept = [s for s in search if len(s) <= MAX_DOMAIN_CHARS]
    if len(kept) != len(search):
        exceeded = True
    search = kept
    line_len = len(" ".join(search))
    if line_len > MAX_SEARCH_LINE_CHARS:
        cut = 0
        cut_len = 0
        for domain in reversed(search):
            cut_len += len(domain) + 1
            cut += 1
            if line_len - cut_len <= MAX_SEARCH_LINE_CHARS:
                break
        search = search[:len(search) - cut]
        exceeded = True
    return search, exceeded


def format_resolv_conf(nameservers: list[str], searches: list[str], options: list[str]) -> str:
    """The file text containerd writes for a sandbox's DNS config.

    >>> print(format_resolv_conf(["10.96.0.10"], ["default.svc.cluster.local", "svc.cluster.local"], ["ndots:5"]), end="")
    search default.svc.cluster.local svc.cluster.local
    nameserver 10.96.0.10
    options ndots:5
    """
    text = ""
    if searches:
        text += "search " + " ".join(searches) + "\n"
    for server in nameservers:
        text += f"nameserver {server}\n"
    if options:
        text += "options " + " ".join(options) + "\n"
    return text


def pod_resolv_conf(pod: dict[str, Any], *, cluster_dns: list[str], cluster_domain: str,
                    node_resolv_conf: str | None) -> tuple[str, list[tuple[str, str]]]:
    """The pod's /etc/resolv.conf and the Warning events the kubelet records on the pod, as (reason, message).

    ``cluster_dns`` and ``cluster_domain`` are the kubelet's ``clusterDNS`` and ``clusterDomain``;
    ``node_resolv_conf`` is the text of the kubelet's ``resolvConf`` file (None: ``--resolv-conf=""``).

    >>> pod = {"metadata": {"name": "p", "namespace": "team-a"}, "spec": {"containers": []}}
    >>> text, events = pod_resolv_conf(pod, cluster_dns=["10.96.0.10"], cluster_domain="cluster.local",
    ...                                node_resolv_conf="nameserver 10.0.0.2\\nsearch corp.example\\noptions edns0\\n")
    >>> print(text, end="")
    search team-a.svc.cluster.local svc.cluster.local cluster.local corp.example
    nameserver 10.96.0.10
    options ndots:5
    >>> events
    []
    """
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    events: list[tuple[str, str]] = []
    if node_resolv_conf is None:
        servers, searches, options = [], [], []
    else:
        servers, searches, options = parse_resolv_conf(node_resolv_conf)

    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "None":
        kind = "none"
    elif policy == "ClusterFirstWithHostNet":
        kind = "cluster"
    elif policy == "ClusterFirst":
        kind = "host" if spec.get("hostNetwork") else "cluster"
    elif policy == "Default":
        kind = "host"
    else:  # rejected by the API server; the kubelet logs it and falls back to ClusterFirst
        kind = "cluster"

    if kind == "none":
        servers, searches, options = [], [], []
    elif kind == "cluster" and cluster_dns:
        servers = list(cluster_dns)
        if cluster_domain:
            ns = meta.get("namespace") or "default"
            searches = _dedupe([f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain, *searches])
        options = list(DEFAULT_OPTIONS)
    else:
        if kind == "cluster":
            msg = ('kubelet does not have ClusterDNS IP configured and cannot create Pod using "ClusterFirst" policy. '
                   'Falling back to "Default" policy.')
            who = f'{meta.get("name", "")}_{meta.get("namespace", "")}({meta.get("uid", "")})'
            events.append(("MissingClusterDNS", f'pod: "{who}". {msg}'))
        if node_resolv_conf is None:
            servers, searches = ["127.0.0.1"], ["."]

    dns_config = spec.get("dnsConfig")
    if dns_config is not None:
        servers = _dedupe(servers + list(dns_config.get("nameservers") or []))
        searches = _dedupe(searches + list(dns_config.get("searches") or []))
        options = _merge_options(options, list(dns_config.get("options") or []))

    if len(servers) > MAX_NAMESERVERS:
        servers = servers[:MAX_NAMESERVERS]
        events.append(("DNSConfigForming", "Nameserver limits were exceeded, some nameservers have been omitted, "
                                           f"the applied nameserver line is: {' '.join(servers)}"))
    searches, exceeded = _fit_search(searches)
    if exceeded:
        events.append(("DNSConfigForming", "Search Line limits were exceeded, some search paths have been omitted, "
                                           f"the applied search line is: {' '.join(searches)}"))

    text = format_resolv_conf(servers, searches, options)
    if not text:  # containerd copies the host's file when the sandbox has no DNS settings
        text = node_resolv_conf or ""
    return text, events
