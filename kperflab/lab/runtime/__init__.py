"""Container runtimes behind the kubelet: `process` (a container is a process tree in a cgroup) and, where there is root
and an OCI runtime, `oci` (crun on an unpacked image)."""
