"""kperflab.lab: the embedded one-node Kubernetes (API server over HTTPS, pods as real processes in cgroups).

Nothing in the client library imports this package: the lab is reached only through its kubeconfig.
"""
