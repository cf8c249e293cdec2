"""The lab's node network: what CNI, kube-proxy and CoreDNS do on a real node.

| module | role |
|---|---|
| `podnet` | the pod network, CNI-style: a named node network namespace per lab with a bridge; ADD/DEL give a sandbox's network namespace `eth0` (a veth into the bridge) and an IP from the lab's pod CIDR (host-local IPAM in files) |
| `kubeproxy`, `proxy_iptables`, `proxy_nftables`, `proxy_common` | the lab's kube-proxy: Services as kernel rules in the node namespace, in kube-proxy's own layouts |
| `proxy_testbed` | throwaway node/pod/client namespaces for kube-proxy's kernel tests and benchmark (no lab needed) |
| `httpd` | small HTTP servers inside the node namespace, where a node's daemons listen (kube-proxy :10249/:10256, DNS metrics :9153) |
| `dns`, `_dnswire`, `resolvconf` | cluster DNS (CoreDNS's kubernetes plugin) and the kubelet's pod `/etc/resolv.conf` |

Nothing here imports the kubelet; the kubelet and the lab's server import this room.
"""
