"""Tables for broker._policy: defaults, rules, lookups, every error with its line, the loader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from broker import _policy_file
from broker._errors import InvalidName
from broker._policy import (
    AUTHORIZATIONS,
    DEFAULT_POLICY,
    Policy,
    Principal,
    Rule,
)
from broker._policy_file import PolicyError, load_policy, parse_policy

ALL = frozenset(AUTHORIZATIONS)
READ = frozenset({"link.read", "event.read"})
ZROOT = frozenset({"link.read", "link.write", "addr.write", "event.read"})
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "policy.example.toml"


def who(zone: str, uid: int = 1000, gids: tuple[int, ...] = (), root: bool = False,
        admin: bool = False) -> Principal:
    return Principal(zone=zone, uid=uid, gids=frozenset(gids), zone_root=root,
                     host_admin=admin)


# --- defaults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        (who("global", 0, (0,), root=True, admin=True), ALL),
        # Finding 3: uid 0 without CAP_NET_ADMIN in the initial user namespace administers
        # nothing on the host (setpriv --bounding-set=-all, a capless --network host root).
        (who("global", 0, (0,), root=True), READ),
        (who("global", 1000, (1000,), admin=True), ALL),  # the capability counts, not uid
        (who("global", 1000, (1000,)), READ),
        (who("global", 0, root=False), READ),
        (who("red", 0, root=True, admin=True), ZROOT),  # a zone's root is a zone's root
        (who("red", 0, root=True), ZROOT),
        (who("red", 101000, root=True), ZROOT),
        (who("red", 101000), READ),
        (who("red", 65534, (65534,)), READ),
    ],
)
def test_defaults(caller: Principal, expected: frozenset[str]) -> None:
    assert DEFAULT_POLICY.authorizations(caller) == expected
    assert parse_policy("").authorizations(caller) == expected


def test_empty_file_is_default_policy() -> None:
    assert parse_policy("") == DEFAULT_POLICY == Policy()
    assert parse_policy("# nothing\n\n[limits]\n[assign]\n[bridges]\n") == DEFAULT_POLICY


def test_default_lookups() -> None:
    assert DEFAULT_POLICY.link_limit("red") is None
    assert DEFAULT_POLICY.link_limit("global") is None
    assert not DEFAULT_POLICY.phys_assignable("eth0")
    assert not DEFAULT_POLICY.bridge_attachable("br0", "red")
    assert DEFAULT_POLICY.bridge_attachable("br0", "global")


# --- rules ---------------------------------------------------------------------------------------

RULES = """
[[rule]]                       # 1: operators (gid 50) on the host administer zones
zone = "global"
group = 50
grant = ["zone.admin", "link.assign"]

[[rule]]                       # 2: red loses events, root or not
zone = "red"
revoke = ["event.read"]

[[rule]]                       # 3: ...but uid 101000 in red gets them back (later rule wins)
zone = "red"
uid = 101000
grant = ["event.read"]

[[rule]]                       # 4: non-roots of blue see nothing
zone = "blue"
root = false
revoke = ["link.read", "event.read"]

[[rule]]                       # 5: roots of any zone lose link.write...
zone = "*"
root = true
revoke = ["link.write"]

[[rule]]                       # 6: ...except the global zone's root, by a later rule
zone = "global"
root = true
grant = ["link.write"]

[[rule]]                       # 7: gid 7 anywhere: grant, and revoke in the same rule
group = 7
grant = ["link.write"]
revoke = ["link.read"]
"""


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        # rule 1: group matching uses any of the gids, primary or supplementary
        (who("global", 1000, (1000, 50)), READ | {"zone.admin", "link.assign"}),
        (who("global", 1000, (50,)), READ | {"zone.admin", "link.assign"}),
        (who("global", 1000, (1000, 51)), READ),
        (who("red", 1000, (50,)), READ - {"event.read"}),  # rule 1 is for global only
        # rules 2 and 3: order
        (who("red", 1000), frozenset({"link.read"})),
        (who("red", 101000), READ),
        # 2 and 5 (addr.write is its own authorization: revoking link.write keeps it)
        (who("red", 0, root=True), frozenset({"link.read", "addr.write"})),
        # rule 4: root matcher
        (who("blue", 1000), frozenset()),
        (who("blue", 0, root=True), READ | {"addr.write"}),  # 5 only
        # rules 5 and 6
        (who("green", 0, root=True), READ | {"addr.write"}),
        (who("global", 0, root=True, admin=True), ALL),
        (who("global", 0, root=True), READ | {"link.write"}),  # no capability: no defaults
        # rule 7: revoke then grant within one rule, any zone
        (who("green", 1000, (7,)), frozenset({"event.read", "link.write"})),
        (who("global", 0, (7,), root=True, admin=True), ALL - {"link.read"}),
    ],
)
def test_rules(caller: Principal, expected: frozenset[str]) -> None:
    assert parse_policy(RULES).authorizations(caller) == expected


def test_rules_kept_in_order() -> None:
    rules = parse_policy(RULES).rules
    assert rules[0] == Rule(grant=frozenset({"zone.admin", "link.assign"}), zone="global", gid=50)
    assert rules[4] == Rule(revoke=frozenset({"link.write"}), root=True)  # "*" is None
    assert [r.zone for r in rules] == ["global", "red", "red", "blue", None, "global", None]


def test_later_rule_wins_over_earlier() -> None:
    grant_then_revoke = parse_policy(
        '[[rule]]\nzone = "red"\ngrant = ["link.assign"]\n'
        '[[rule]]\nzone = "red"\nrevoke = ["link.assign"]\n'
    )
    revoke_then_grant = parse_policy(
        '[[rule]]\nzone = "red"\nrevoke = ["link.assign"]\n'
        '[[rule]]\nzone = "red"\ngrant = ["link.assign"]\n'
    )
    caller = who("red", 0, root=True)
    assert "link.assign" not in grant_then_revoke.authorizations(caller)
    assert "link.assign" in revoke_then_grant.authorizations(caller)


def test_risky_grant_to_non_global_zone_is_allowed() -> None:
    policy = parse_policy('[[rule]]\nzone = "mgmt"\nroot = true\ngrant = ["zone.admin"]\n')
    assert "zone.admin" in policy.authorizations(who("mgmt", 0, root=True))
    assert "zone.admin" not in policy.authorizations(who("mgmt", 1000))


# --- limits, phys, bridges -----------------------------------------------------------------------

LOOKUPS = """
[limits]
links_per_zone = 64
[limits.zones]
red = 16
"lab.1" = 0
global = 4000
[assign]
phys = [
    "eth1",   # second uplink
    "eth2",
]
[bridges]
attachable = { br0 = ["red", "blue"], lab0 = ["*"], empty = [] }
"""


@pytest.mark.parametrize(
    ("zone", "limit"), [("red", 16), ("lab.1", 0), ("blue", 64), ("global", 4000)]
)
def test_link_limits(zone: str, limit: int | None) -> None:
    assert parse_policy(LOOKUPS).link_limit(zone) == limit


@pytest.mark.parametrize(
    ("text", "zone", "limit"),
    [
        ("[limits]\nlinks_per_zone = 8\n", "global", None),  # the default spares global
        ("[limits]\nlinks_per_zone = 8\n", "red", 8),
        ("[limits.zones]\nred = 3\n", "blue", None),
        ("limits.links_per_zone = 5\n", "red", 5),  # dotted keys are TOML too
    ],
)
def test_link_limit_defaults(text: str, zone: str, limit: int | None) -> None:
    assert parse_policy(text).link_limit(zone) == limit


@pytest.mark.parametrize(
    ("link", "expected"), [("eth1", True), ("eth2", True), ("eth0", False), ("eth10", False)]
)
def test_phys_assignable(link: str, expected: bool) -> None:
    assert parse_policy(LOOKUPS).phys_assignable(link) is expected


@pytest.mark.parametrize(
    ("bridge", "zone", "expected"),
    [
        ("br0", "red", True),
        ("br0", "blue", True),
        ("br0", "green", False),
        ("lab0", "green", True),
        ("lab0", "red", True),
        ("empty", "red", False),
        ("br1", "red", False),
        ("br1", "global", True),  # the global zone owns its bridges
    ],
)
def test_bridge_attachable(bridge: str, zone: str, expected: bool) -> None:
    assert parse_policy(LOOKUPS).bridge_attachable(bridge, zone) is expected


def test_bridges_as_a_table() -> None:
    as_table = parse_policy('[bridges.attachable]\nbr0 = ["red", "blue"]\nlab0 = ["*"]\n')
    inline = parse_policy('[bridges]\nattachable = { br0 = ["blue", "red"], lab0 = ["*"] }\n')
    assert as_table == inline


def test_example_file_parses() -> None:
    policy = parse_policy(EXAMPLE.read_text(), str(EXAMPLE))
    assert policy.link_limit("red") == 16
    assert policy.link_limit("green") == 64
    assert policy.phys_assignable("eth1")
    assert policy.bridge_attachable("lab0", "green")
    assert "zone.admin" in policy.authorizations(who("global", 1000, (50,)))
    assert "event.read" not in policy.authorizations(who("red", 0, root=True))
    assert "event.read" in policy.authorizations(who("red", 101000))
    assert policy.authorizations(who("blue", 1000)) == frozenset()


# --- errors, each with its line ----------------------------------------------------------------

ERRORS = [
    # TOML syntax: tomllib's own message, with its line
    ("syntax", "[limits]\nlinks_per_zone = = 3\n", 2, "Invalid value"),
    ("duplicate table", "[limits]\n[assign]\n[limits]\n", 3, "Cannot declare"),
    ("unterminated", '[assign]\nphys = ["eth1"\n', 2, "at end of document"),
    # unknown keys
    ("top key", "# c\nlimit = 3\n", 2, "unknown key 'limit' in the top level"),
    ("top table", "[limits]\n[bridge]\nx = 1\n", 2, "unknown key 'bridge'"),
    ("limits key", "[limits]\nlinks = 3\n", 2, "unknown key 'links' in [limits]"),
    ("assign key", "[assign]\nphys = []\nbridge = []\n", 3, "unknown key 'bridge' in [assign]"),
    ("bridges key", "[bridges]\n\nattach = {}\n", 3, "unknown key 'attach' in [bridges]"),
    (
        "rule key",
        '[[rule]]\ngrant = ["link.read"]\n\n[[rule]]\nzone = "red"\nuser = 3\n',
        6,
        "unknown key 'user' in [[rule]] #2",
    ),
    # unknown authorizations: the line of the name itself in a multi-line array
    ("grant name", '[[rule]]\ngrant = ["link.reed"]\n', 2, "unknown authorization 'link.reed'"),
    (
        "grant name, multi-line",
        '[[rule]]\ngrant = [\n  "link.read",\n  "zone.adm",\n]\n',
        4,
        "unknown authorization 'zone.adm'",
    ),
    ("revoke name", '[[rule]]\nzone = "x"\nrevoke = ["all"]\n', 3, "unknown authorization 'all'"),
    # wrong types
    ("limit type", '[limits]\nlinks_per_zone = "64"\n', 2, "must be an integer, got a string"),
    ("limit bool", "[limits]\nlinks_per_zone = true\n", 2, "must be an integer, got a boolean"),
    ("limit float", "[limits]\nlinks_per_zone = 6.4\n", 2, "must be an integer, got a float"),
    ("zone limit type", "[limits.zones]\nred = [1]\n", 2, "must be an integer, got an array"),
    ("limits type", "limits = 3\n", 1, "[limits] must be a table, got an integer"),
    ("zones type", "[limits]\nzones = 3\n", 2, "[limits.zones] must be a table"),
    ("phys type", '[assign]\nphys = "eth1"\n', 2, "must be an array of strings, got a string"),
    ("phys items", "[assign]\nphys = [1]\n", 2, "must hold only strings, got an integer"),
    ("attachable type", "[bridges]\nattachable = []\n", 2, "[bridges.attachable] must be a table"),
    ("bridge zones type", '[bridges.attachable]\nbr0 = "red"\n', 2, "must be an array"),
    ("rule type", "rule = 3\n", 1, "must be an array of tables"),
    ("rule item type", "rule = [3]\n", 1, "[[rule]] #1 must be a table"),
    ("rule zone type", "[[rule]]\nzone = 1\ngrant = []\n", 2, "'zone' must be a string"),
    ("rule uid type", '[[rule]]\nuid = "0"\n', 2, "'uid' must be an integer"),
    ("rule group type", '[[rule]]\ngroup = "wheel"\n', 2, "'group' must be an integer"),
    ("rule root type", '[[rule]]\nroot = "yes"\n', 2, "'root' must be true or false"),
    ("rule grant type", '[[rule]]\ngrant = "link.read"\n', 2, "must be an array of strings"),
    # bad values
    ("negative limit", "[limits]\nlinks_per_zone = -1\n", 2, "must not be negative, got -1"),
    ("negative zone limit", "[limits.zones]\nred = 1\nblue = -5\n", 3, "must not be negative"),
    ("negative uid", '[[rule]]\nuid = -1\ngrant = ["link.read"]\n', 2, "uid -1 is out of range"),
    ("huge gid", '[[rule]]\ngroup = 4294967295\ngrant = ["link.read"]\n', 2, "group 4294967295"),
    (
        "empty rule",
        '[[rule]]\nroot = true\ngrant = ["link.read"]\n[[rule]]\nuid = 3\n',
        4,
        "must grant or revoke",
    ),
    (
        "grant and revoke",
        '[[rule]]\ngrant = ["link.write"]\nrevoke = ["link.read", "link.write"]\n',
        3,
        "'link.write' both granted and revoked",
    ),
    # bad names
    ("zone limit name", '[limits.zones]\n"-red" = 3\n', 2, "bad zone name '-red'"),
    ("rule zone name", '[[rule]]\nzone = "a b"\ngrant = []\n', 2, "bad zone name 'a b'"),
    ("rule zone *x", '[[rule]]\nzone = "re*"\nrevoke = ["link.read"]\n', 2, "bad zone name"),
    ("phys name", '[assign]\nphys = [\n "eth1",\n "eth/2",\n]\n', 4, "bad link name 'eth/2'"),
    (
        "phys name long",
        '[assign]\nphys = ["averyveryverylongname"]\n',
        2,
        "bad link name 'averyveryverylongname'",
    ),
    (
        "bridge name",
        '[bridges]\n# the bridges\nattachable = { br0 = ["red"], "br:1" = ["red"] }\n',
        3,
        "bad link name 'br:1'",
    ),
    (
        "bridge zone name",
        '[bridges.attachable]\nbr0 = ["red"]\nbr1 = [\n "blue",\n "bl ue",\n]\n',
        5,
        "bad zone name 'bl ue'",
    ),
    ("bridge global", '[bridges.attachable]\nbr0 = ["global"]\n', 2, "global zone owns"),
]


@pytest.mark.parametrize(
    ("text", "line", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "test.toml")
    err = caught.value
    assert message in err.message
    assert err.line == line
    assert err.source == "test.toml"
    assert str(err).startswith(f"test.toml:{line}: ")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        # the offending key among others, after comments and blank lines
        ("# [limits]\n\n[limits]\n# links_per_zone = 3\nlinks_per_zone = -3\n", 5),
        # the third [[rule]], not the first one with the same key
        (
            '[[rule]]\nuid = 1\ngrant = ["link.read"]\n[[rule]]\nuid = 2\ngrant = ["link.read"]\n'
            "[[rule]]\nuid = -3\n",
            8,
        ),
        # dotted and quoted keys
        ("limits.links_per_zone = -1\n", 1),
        ('[ "limits" . zones ]\nred = 1\n"blue" = -1\n', 3),
        ("[limits]\nzones.red = 1\nzones.blue = -1\n", 3),
        # a rule written as an inline array of tables: the array's line, best effort
        ('# rules\nrule = [{ grant = ["link.read"] }, { uid = -1, grant = ["link.read"] }]\n', 2),
        # brackets and "=" inside strings and comments do not confuse the scan
        ('[assign] # [limits]\nphys = ["a=b"] # x = [\n[limits]\nlinks_per_zone = -2\n', 4),
    ],
)
def test_error_lines_in_harder_layouts(text: str, line: int) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert caught.value.line == line


def test_policy_error_without_line() -> None:
    assert str(PolicyError("gone", source="/etc/x.toml")) == "/etc/x.toml: gone"
    assert str(PolicyError("bad", line=3)) == "<policy>:3: bad"


# --- the dataclasses check themselves ------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: Rule(grant=frozenset({"link.reed"})),
        lambda: Rule(grant=frozenset({"link.read"}), revoke=frozenset({"link.read"})),
        lambda: Rule(uid=-1),
        lambda: Policy(links_per_zone=-1),
        lambda: Policy(zone_link_limits=frozenset({("red", 1), ("red", 2)})),
        lambda: Principal(zone="red", uid=-1),
    ],
)
def test_construction_refuses_bad_values(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Rule(zone="a b"),
        lambda: Policy(assignable_phys=frozenset({"eth/0"})),
        lambda: Policy(attachable_bridges=frozenset({("br0", "global")})),
        lambda: Principal(zone="", uid=0),
    ],
)
def test_construction_refuses_bad_names(make: object) -> None:
    with pytest.raises(InvalidName):
        make()  # type: ignore[operator]


# --- load_policy ---------------------------------------------------------------------------------


def write(path: Path, text: str | bytes, mode: int = 0o644) -> Path:
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    path.chmod(mode)
    return path


def test_load_default_missing_is_default_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_policy_file, "DEFAULT_POLICY_PATH", str(tmp_path / "absent.toml"))
    assert load_policy(None) is DEFAULT_POLICY


def test_load_default_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "policy.toml", "[limits]\nlinks_per_zone = 9\n")
    monkeypatch.setattr(_policy_file, "DEFAULT_POLICY_PATH", str(path))
    assert load_policy(None).link_limit("red") == 9


def test_load_default_broken_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "policy.toml", "[limits]\nlinks_per_zone = -9\n")
    monkeypatch.setattr(_policy_file, "DEFAULT_POLICY_PATH", str(path))
    with pytest.raises(PolicyError) as caught:
        load_policy(None)
    assert str(caught.value).startswith(f"{path}:2: ")


def test_load_explicit_missing_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.source == str(path)
    assert caught.value.line is None
    assert "No such file" in str(caught.value)


@pytest.mark.parametrize("as_str", [True, False])
def test_load_explicit(tmp_path: Path, as_str: bool) -> None:
    path = write(tmp_path / "p.toml", '[assign]\nphys = ["eth1"]\n', 0o600)
    policy = load_policy(str(path) if as_str else path)
    assert policy.phys_assignable("eth1")


def test_load_example_file() -> None:
    assert load_policy(EXAMPLE) == parse_policy(EXAMPLE.read_text())


def test_load_reports_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "p.toml", '[[rule]]\n\ngrant = ["link.reed"]\n')
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}:3: unknown authorization 'link.reed'")


def test_load_syntax_error_keeps_tomllib_message(tmp_path: Path) -> None:
    path = write(tmp_path / "p.toml", "[limits]\nlinks_per_zone = 3\nlinks_per_zone = 4\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.source == str(path)
    assert caught.value.line == 3
    assert "Cannot overwrite a value" in caught.value.message


def test_load_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path / "p.toml", b"# ok\n# caf\xe9\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.line == 2
    assert "UTF-8" in caught.value.message


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_load_refuses_writable_by_others(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "p.toml", "", mode)
    with pytest.raises(PolicyError, match="lets group or others write it"):
        load_policy(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_load_refuses_directory(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not a regular file"):
        load_policy(tmp_path)
