"""Persistent volumes in the lab: loop-device filesystems (`loopfs`), the PV controller (`pvcontroller`), the storage
classes' backends (`local`, `remote`) and the scheduler's volume binding (`binding`). Imports nothing of the kubelet."""
