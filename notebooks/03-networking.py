# %% [markdown]
# # 03 · Networking: kube-proxy's modes, Services at scale, DNS
#
# **You will learn to**
# 1. tell which mode kube-proxy runs in — from its ConfigMap, its own `/proxyMode` and its metrics — and how sure that is;
# 2. measure what the number of Services does to the latency of a **new** connection, in iptables and in nftables mode;
# 3. measure kube-proxy's rule programming time and count its rules against the formula `NAT = 5 + S·(2 + 3E)`;
# 4. see why a kept-alive connection does not pay for the Service rules;
# 5. count the DNS queries that `ndots:5` costs, and cut them.
#
# **Time:** about 25 minutes. **Needs:** a cluster (or the lab: `kperflab lab up`) where you may create namespaces, pods
# and Services. Reading kube-proxy (`/proxyMode`, `/metrics` on port 10249) needs `nodes/proxy` and a kube-proxy whose
# metrics listen beyond 127.0.0.1; switching modes needs the right to patch ConfigMap `kube-system/kube-proxy` and a
# kube-proxy that re-reads it (the lab's does; kubeadm and kind read it only at start, so there only the current mode is
# measured, and the findings say so). The DNS query counts need the API server's proxy to reach kube-dns's metrics port;
# without it the pod's own count of datagrams is shown.
# **Previous:** 02 · Storage. **Next:** 04 · Measuring. Facts below carry the Kubernetes version they hold for.

# %% tags=["parameters"]
# Parameters (papermill injects its own values after this cell)
kubeconfig = None
context = None
namespace = None
quick = False
solutions = False
sizes = (10, 100, 1000)           # numbers of Services to measure connection latency at
modes = ("iptables", "nftables")  # kube-proxy modes to compare (switched through its ConfigMap where it re-reads it)
samples = 200                     # new connections per probed Service
duration = 2.0                    # seconds each latency probe spreads its connections over
sync_sizes = (10, 100, 1000)      # numbers of Services to time kube-proxy's syncs at
changes = 3                       # one-Service changes timed per size (sync time)
keepalive_services = 1000         # Services in the cluster for the keep-alive comparison
requests = 400                    # HTTP requests each way (kept alive / new connection)
dns_repeat = 10                   # lookups per DNS case

# %%
if quick:
    sizes, samples, duration, sync_sizes, changes = (10, 1000), 100, 0.5, (100,), 1
    keepalive_services, requests, dns_repeat = 200, 100, 2
import kperflab
import kperflab.figures
from kperflab import exercises
from IPython.display import Markdown, display

kperflab.figures.setup_notebook()
cluster = kperflab.connect(kubeconfig, context, namespace)
print(cluster.describe())
from kperflab import host
from kperflab.experiments import networking
print(f"This machine: the ip_vs kernel module is {'loaded' if host.ipvs_available() else 'not loaded'}"
      + ("" if host.ipvs_available() else ", so neither kube-proxy's IPVS mode nor kube-router can run in a lab here: "
         "below they are described and quoted from published measurements only"))

# %% [markdown]
# ## 1. What kube-proxy does, in three modes
#
# A Service's ClusterIP is virtual: no interface has it. On every node **kube-proxy** watches Services and
# EndpointSlices and writes kernel rules that rewrite (DNAT) a connection's first packet from the ClusterIP to one of
# the Service's endpoints; conntrack remembers the choice, so later packets of that connection skip the rules.
#
# ![One node's pod network: each pod's eth0 is one end of a veth pair whose other end is a port of the node's bridge
# (the pods' gateway, 10.244.0.1 in the pod CIDR 10.244.0.0/16); a connection to the ClusterIP 10.96.0.20 goes to the
# gateway, kube-proxy's rules in the node's nat PREROUTING hook rewrite its first packet to an endpoint pod's address,
# conntrack translates the rest and the replies, and the bridge delivers it over the endpoint's veth
# pair](../images/pod-network.png)
#
# - **iptables** (the default on Linux, still in 1.35): the `nat` table jumps to `KUBE-SERVICES`, **one rule per Service
#   port**, matched in order; the match jumps to `KUBE-SVC-…`, which picks an endpoint with `-m statistic` rules and
#   jumps to its `KUBE-SEP-…` (DNAT). The first packet of every new connection walks `KUBE-SERVICES` until its rule
#   matches: O(number of Services). Every sync rewrites `KUBE-SERVICES` with `iptables-restore`; partial syncs
#   (KEP-3453, on by default since 1.27, GA in 1.28) re-send only the changed Services' chains, but still that whole chain.
# - **IPVS**: the kernel's load balancer, a hash table per virtual server (O(1)), needs the `ip_vs` modules.
#   **Deprecated in 1.35** (a startup warning and an `IPVSDeprecation` event; KEP-5495 plans a feature gate that is off
#   by default from 1.40 and removal in 1.43). Tigera measured in 2019, at 10,000 Services and 1,000 requests/s each on a
#   new connection, about 35% of a core for iptables mode against about 8% for IPVS; with keep-alive, iptables mode
#   dropped to about 2%.
# - **nftables**: alpha in 1.29, beta in 1.31, **GA in 1.33** (kernel ≥ 5.13). One table `ip kube-proxy`; a verdict
#   map `service-ips` sends a packet to its Service's chain in **one hash lookup**, whatever the number of Services,
#   and a change rewrites only what changed. iptables remains the default; nftables is the recommended way off IPVS.
# - **kube-router** replaces kube-proxy altogether: its service proxy programs IPVS, its router speaks BGP (GoBGP) to
#   announce each node's pod CIDR, and its firewall enforces NetworkPolicy with iptables and ipsets. It cannot run in
#   the lab on a machine without the `ip_vs` module (the connect cell says whether this one has it), and the lab's single
#   node has no BGP peer, so here it appears only through published numbers.
#
# ![The first packet of a new connection to the ClusterIP 172.30.0.44:80 of a Service with two endpoints (upstream's
# test fixture ns4/svc4). iptables mode: nat PREROUTING/OUTPUT jump to KUBE-SERVICES, whose rules, one per Service
# port, are tried in order until one matches and jumps to KUBE-SVC-4SW47YFZTEDKD3PK, which picks an endpoint with a
# 0.5 probability rule and jumps to its KUBE-SEP chain for the DNAT. nftables mode: table ip kube-proxy, nat-prerouting
# jumps to the services chain, one lookup in the verdict map service-ips goes to the Service's chain, which picks an
# endpoint chain with numgen random mod 2 for the DNAT. In both, conntrack handles the connection's later
# packets](../images/kube-proxy-modes.png)
#
# Published numbers (Kubernetes blog, "NFTables mode for kube-proxy", 2025-02-28, measured for KubeCon NA 2024): in
# iptables mode the median first-packet latency grew more than fivefold from 5,000 to 30,000 Services, and the spread
# between the fastest and slowest percentiles widened (where a Service's rule sits in `KUBE-SERVICES`); in nftables mode
# it stayed about flat, and at 30,000 Services its worst case beat iptables' best case.
#
# First, which mode does *this* cluster run? Each source below is read through the API server; a row that could not
# be read says why.

# %%
mode = networking.detect_proxy_mode(cluster)
mode.show(table=True)

# %% [markdown]
# ## 2. New-connection latency vs the number of Services
#
# The experiment creates N ClusterIP Services, all selecting the same two small HTTP echo pods (two endpoints each, so
# each has real rules), many at a time through the API. A client pod (with `enableServiceLinks: false`: with thousands
# of Services the kubelet would otherwise put thousands of variables into its environment) waits until every probed
# Service answers — the rules are programmed — then times `connect()` to the first and last created and ten in between,
# interleaved. It does so in each mode, switching kube-proxy through its ConfigMap, and puts the original mode back.

# %%
latency = networking.service_latency(cluster, sizes=sizes, modes=modes, samples=samples, duration=duration)
latency.show(table=True)

# %% [markdown]
# Does it matter *which* Service you connect to? Below, each probed Service's median at the largest size,
# in creation order. The lab's kube-proxy writes `KUBE-SERVICES` in Service-name order and the experiment's names sort in
# creation order, so there the x axis is the position of the Service's rule in the chain; upstream kube-proxy writes that
# chain in Go map order (random), so on a real cluster the slowest/fastest ratio over the probed Services is what shows
# the linear scan.

# %%
networking.by_position(latency)

# %% [markdown]
# ## 3. How long kube-proxy takes to program a change
#
# kube-proxy times each sync in its histogram `kubeproxy_sync_proxy_rules_duration_seconds` (on port 10249). With N of
# our Services in place, one more Service is added and the sync that programs it is timed, from the histogram's
# `_sum` and `_count` before and after. In iptables mode kube-proxy also counts the rules it owns,
# `kubeproxy_sync_proxy_rules_iptables_total{table="nat"}`.

# %%
sync = networking.sync_time(cluster, sizes=sync_sizes, modes=modes, changes=changes)
sync.show(table=True)

# %% [markdown]
# ### Exercise 1 — count the NAT rules
# In iptables mode kube-proxy writes, per ClusterIP Service port with E endpoints: 1 rule in `KUBE-SERVICES`, in its
# `KUBE-SVC-…` chain 1 masquerade rule and E endpoint-choice rules, and 2 rules in each endpoint's `KUBE-SEP-…` chain
# (plus 5 fixed rules for the whole node). How many NAT rules did the experiment's S Services add? The check compares
# your answer with kube-proxy's own count, read before and after them.

# %%
S, E, measured_nat, unavailable = networking.nat_rules_added(sync)
print(f"S = {S} Services, E = {E} endpoints each" if S else f"Not measured here: {unavailable}")
answer_nat_rules = None  # a number

# %% jupyter={"source_hidden": true} tags=["solution"]
if solutions and S is not None:
    answer_nat_rules = S * (1 + 1 + E + 2 * E)  # = S·(2 + 3E): the formula without its 5 fixed rules

# %%
exercises.check(answer_nat_rules, measured_nat, unit="NAT rules", strict=solutions, unavailable=unavailable,
                why="Each Service port costs 2 + 3E rules, so KUBE-SERVICES and the rule count grow with every Service.")

# %% [markdown]
# ## 4. Keep-alive: pay for the rules once
#
# Only a connection's first packet walks kube-proxy's rules; conntrack translates the rest. With many Services, HTTP
# requests over one kept-alive connection are set against a new connection per request (alternating blocks of each),
# to the last-created Service.

# %%
keepalive = networking.keepalive_vs_new_connections(cluster, n_services=keepalive_services, modes=modes, requests=requests)
keepalive.show(table=True)

# %% [markdown]
# ## 5. DNS: what `ndots:5` costs
#
# A pod's `/etc/resolv.conf` (dnsPolicy `ClusterFirst`) holds the cluster DNS server, three search domains
# (`<namespace>.svc.cluster.local svc.cluster.local cluster.local`) and `options ndots:5`: a name with fewer than five
# dots is tried with each search domain **before** as it is. glibc (the python image is Debian's) asks for A and AAAA
# records of every candidate. A trailing dot makes a name absolute; `dnsConfig: options: [{name: ndots, value: "1"}]`
# lowers the threshold for one pod. Each case runs in a pod of its own; the queries are counted by the DNS server
# (`coredns_dns_requests_total`) and by the datagrams the pod's kernel sent.

# %%
dns = networking.dns_lookups(cluster, repeat=dns_repeat)
dns.show(table=True)
print(dns.data["resolv_conf"])

# %% [markdown]
# ### Exercise 2 — queries per lookup
# The pod's `resolv.conf` is printed above. How many DNS queries does **one** lookup of the Service name
# `kubernetes.default.svc.cluster.local` — complete, but four dots and no trailing dot — cost with it? (It exists only as
# it is, not under any search domain.) The check compares your answer with what the DNS server counted (or, where its
# counters cannot be read, with what the pod's kernel sent).

# %%
measured_queries, unavailable = networking.queries_per_lookup(dns)
answer_queries = None  # a number

# %% jupyter={"source_hidden": true} tags=["solution"]
if solutions:
    answer_queries = 2 * (len(networking.search_list(dns)) + 1)  # (search domains + the name as it is) × (A + AAAA)

# %%
exercises.check(answer_queries, measured_queries, unit="queries per lookup", strict=solutions, unavailable=unavailable,
                why="Fewer than ndots dots: every search domain first, then the name as it is; A and AAAA each time.")

# %% [markdown]
# ## Recap
#
# - kube-proxy's mode is best read from the running proxy (`/proxyMode`, its mode-specific metrics); the ConfigMap says
#   what it will do at its next start.
# - In iptables mode the first packet of every new connection walks `KUBE-SERVICES`, one rule per Service port, and every
#   sync rewrites that chain: both grow with the number of Services. Upstream's nftables mode (GA in 1.33) does one map
#   lookup and programs only what changed: compare with what was measured above. IPVS is deprecated since 1.35.
# - Kept-alive connections pay for the rules once; conntrack carries the rest.
# - `ndots:5` turns one lookup of a name with fewer than five dots that exists only as written into (search domains + 1)
#   × 2 queries. Use a trailing dot, a lower `ndots` in `dnsConfig`, or NodeLocal DNSCache.
#
# Read more: [Virtual IPs and Service proxies](https://kubernetes.io/docs/reference/networking/virtual-ips/) ·
# [Services](https://kubernetes.io/docs/concepts/services-networking/service/) ·
# [NFTables mode for kube-proxy](https://kubernetes.io/blog/2025/02/28/nftables-kube-proxy/) ·
# [kube-proxy](https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/) ·
# [DNS for Services and Pods](https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/) ·
# [Debugging DNS resolution](https://kubernetes.io/docs/tasks/administer-cluster/dns-debugging-resolution/) ·
# [NodeLocal DNSCache](https://kubernetes.io/docs/tasks/administer-cluster/nodelocaldns/) ·
# [kube-router](https://www.kube-router.io/docs/)
