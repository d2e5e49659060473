"""The sandbox code jobs run in: bubblewrap's namespaces and the kernel's cgroups (box.py,
cgroups.py), and the probe a worker runs at start to say whether it can make one."""
