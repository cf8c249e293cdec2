"""The lab's node network: what CNI, kube-proxy and CoreDNS do on a real node.

| module | role |
|---|---|
| `podnet` | the pod network, CNI-style: a named node network namespace per lab with a bridge; ADD/DEL give a sandbox's network namespace `eth0` (a veth into the bridge) and an IP from the lab's pod CIDR (host-local IPAM in files) |
| `kubeproxy`, `proxy_iptables`, `proxy_nftables` | the lab's kube-proxy: Services as kernel rules in the node namespace, in kube-proxy's own layouts |
| `dns`, `resolvconf` | cluster DNS (CoreDNS's kubernetes plugin) and the kubelet's pod `/etc/resolv.conf` |

Nothing here imports the kubelet; the kubelet and the lab's server import this room.
"""
