"""What cAdvisor, the kubelet's stats endpoints and metrics-server do: sample the kernel's counters, serve them in
the upstream formats."""
