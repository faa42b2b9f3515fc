"""linkadm: dladm's verbs for linkbroker, a client of the broker like any other (issue 16).

It lived in the daemon's package (broker/linkadm.py, broker/_linkadm_*.py) until it moved here,
where it shows what it is: it imports the typed client and what that is made of, the
contract's name rules (broker._names) and the pure link property table it shares with the
broker (broker._linkprops), and no daemon module (tests/unit/test_layers.py).

`main` builds the parser and runs a verb; `output` prints dladm's tables, `-p -o` lines and
JSON; `addr` has ipadm's verbs and protection; `props` the link property verbs; `stats`
show-link -s; `topology` show-topology and watch --table, drawn by the pure `graph` (the
picture of the caller's view) and `render` (DOT text, a text tree); `exits` the exit codes.
"""
