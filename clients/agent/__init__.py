"""linkbroker-agent: turns labelled Docker containers into zones, as a client of the broker.

`main` runs it (the Docker event stream, reconciliation); `labels` parses the label scheme
(pure); `engine` is all it asks the Docker engine; `state` records, by broker link ID, what
it made, the only links it ever deletes.
"""
