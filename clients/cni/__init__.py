"""linkbroker-cni: a CNI plugin whose links, zones and records belong to the broker.

A runtime execs the plugin once per call, so its import path is kept to the standard library:
`_varlink` is a small client of its own (no msgspec, no pyroute2, nothing of the daemon), and
the installed wrapper runs it with `python3 -IS` (no site packages to scan). See docs/cni.md.
"""
