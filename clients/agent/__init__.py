"""linkbroker-agent: turns labelled Docker containers into zones, as a client of the broker.

`main` runs it (command line, signals, retries, the event loop) and wires the rest:
`reconciler` makes every decision, against the two protocols of `protocols` (the broker, the
engine), so it is tested with fakes; `labels` parses the label scheme (pure); `engine` is all
it asks the Docker engine (the one module importing docker); `brokercalls` the broker calls,
each on a connection main's retries provide; `state` records, by broker link ID, what it made,
the only links it ever deletes.
"""
