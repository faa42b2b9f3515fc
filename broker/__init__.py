"""linkbroker: a datalink broker for Linux network namespaces, after illumos dlmgmtd.

The public API is the client (`broker.client`) and the program `linkbrokerd`; modules
starting with `_` are the daemon's insides. linkadm and the other clients live in `clients/`.
"""
