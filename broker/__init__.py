"""linkbroker: a datalink broker for Linux network namespaces, after illumos dlmgmtd.

The public API is the client (`broker.client`) and the programs `linkbrokerd` and `linkadm`;
modules starting with `_` are the daemon's insides.
"""
