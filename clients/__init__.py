"""Programs that talk to linkbroker from outside the daemon, through its socket only.

Nothing here imports the daemon's modules: a client is a Varlink caller like any other.
"""
