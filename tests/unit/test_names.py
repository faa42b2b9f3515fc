"""broker._names: the name rules checked before anything touches the kernel.

The contract says link names "follow Linux" and anything else is `InvalidName`. Two oracles are
used: the contract's rule as written (1..15 bytes of UTF-8, not `.`/`..`, no `/`, `:`,
whitespace or NUL) and the kernel's own rule (net/core/dev.c dev_valid_name, whose isspace() is
the kernel's lib/ctype.c, plus the `%` template expansion of dev_get_valid_name). The broker may
be stricter than the kernel (it refuses Unicode whitespace, as the contract says "whitespace"),
never looser: a name the kernel would refuse or rewrite must be refused up front, or the caller
gets KernelError instead of InvalidName, or a link under a name the table does not know.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from broker._errors import InvalidName
from broker._names import GLOBAL_ZONE, validate_link_name, validate_zone_name

# Bytes the kernel's isspace() is true for (lib/ctype.c marks 0xA0, NBSP in Latin-1, as _S).
KERNEL_SPACE = frozenset(b"\t\n\v\f\r \xa0")


def contract_accepts(name: str) -> bool:
    """The contract's link-name rule, with whitespace in the Unicode sense and the kernel's
    (0xA0), and no '%' (which rtnetlink expands as a template)."""
    raw = name.encode("utf-8")
    return (
        1 <= len(raw) <= 15
        and name not in (".", "..")
        and not any(ch in "/:%\0" or ch.isspace() for ch in name)
        and 0xA0 not in raw
    )


def kernel_accepts(name: str) -> bool:
    """dev_valid_name() on the UTF-8 bytes the broker hands to the kernel, and no '%' (which
    dev_get_valid_name expands or refuses)."""
    raw = name.encode("utf-8")
    return (
        0 < len(raw) < 16
        and raw not in (b".", b"..")
        and not any(b in b"/:" or b in KERNEL_SPACE for b in raw)
        and 0 not in raw
        and b"%" not in raw
    )


# Characters that sit on the rule's edges, mixed into generated names so hypothesis hits them.
_EDGE = "/:. \t\n\r\x0b\x0c\x00\x1c\x85\xa0\u2000\u3000%aZ0-_@é日"
names = st.text(
    alphabet=st.one_of(st.sampled_from(_EDGE), st.characters(codec="utf-8")), max_size=18
)


# --- link names: tables -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "eth0",
        "br-lan.100",
        "veth_1@x",
        "x" * 15,
        "é" * 7,  # 14 bytes
        "日本語日本",  # 5 characters, exactly 15 bytes
        "...",  # only "." and ".." are reserved
        ".hidden",
        "a.",
        "-",
    ],
)
def test_valid_link_names_are_returned_unchanged(name: str) -> None:
    assert validate_link_name(name) == name


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("", "empty"),
        ("x" * 16, "15 bytes"),
        ("é" * 8, "15 bytes"),  # 8 characters but 16 bytes: the limit is bytes, not characters
        ("日本語日本語", "15 bytes"),
        (".", "'.'"),
        ("..", "'..'"),
        ("a/b", "'/'"),
        ("/", "'/'"),
        ("a:b", "':'"),
        ("eth0:1", "':'"),  # an old-style alias is not a link
        ("a b", "' '"),
        (" a", "' '"),
        ("a\t", "'\\t'"),
        ("a\nb", "'\\n'"),
        ("a\rb", "'\\r'"),
        ("a\x0bb", "'\\x0b'"),
        ("a\0b", "'\\x00'"),
        ("a\u00a0b", "'\\xa0'"),
        ("\u3000", "'\\u3000'"),
    ],
)
def test_invalid_link_names_name_the_reason(name: str, hint: str) -> None:
    """InvalidName carries the rejected name verbatim and a reason that says what was wrong."""
    with pytest.raises(InvalidName) as exc:
        validate_link_name(name)
    assert exc.value.name == name
    assert hint in exc.value.reason


def test_length_limit_counts_utf8_bytes_at_the_boundary() -> None:
    assert validate_link_name("a" * 13 + "é") == "a" * 13 + "é"  # 15 bytes
    with pytest.raises(InvalidName):
        validate_link_name("a" * 14 + "é")  # 16 bytes, 15 characters


# --- link names: properties ---------------------------------------------------------------------


@given(names)
@example("")
@example(".")
@example("..")
@example("x" * 15)
@example("x" * 16)
def test_link_name_accepted_iff_contract_rule(name: str) -> None:
    """Accepted exactly when the contract's rule holds; refused otherwise, with that name."""
    if contract_accepts(name):
        assert validate_link_name(name) == name
    else:
        with pytest.raises(InvalidName) as exc:
            validate_link_name(name)
        assert exc.value.name == name


@given(names)
def test_link_names_never_looser_than_the_kernel(name: str) -> None:
    """Whatever the broker accepts, the kernel creates under exactly that name."""
    try:
        validate_link_name(name)
    except InvalidName:
        return
    assert kernel_accepts(name)


@given(names)
def test_stricter_than_the_kernel_only_on_unicode_whitespace(name: str) -> None:
    """The only names refused that the kernel takes hold a Unicode (non-kernel) space."""
    try:
        validate_link_name(name)
    except InvalidName:
        assert not kernel_accepts(name) or any(ch.isspace() for ch in name)


# --- link names: where the kernel differs from the obvious rule --------------------------------


@pytest.mark.parametrize("name", ["à", "vethà", "Š0", "\u0420h"])  # C3 A0, C5 A0, D0 A0
def test_names_the_kernel_calls_whitespace_are_refused(name: str) -> None:
    """The kernel's isspace() is true for byte 0xA0 (lib/ctype.c marks it _S), so dev_valid_name
    refuses every name whose UTF-8 holds 0xA0: `ip link add à type veth peer name p` gives
    EINVAL. Refusing them up front keeps the contract's InvalidName instead of a KernelError.
    """
    assert not kernel_accepts(name)
    with pytest.raises(InvalidName) as exc:
        validate_link_name(name)
    assert exc.value.name == name


@pytest.mark.parametrize("name", ["v%d", "eth%d", "a%b", "%", "%d%d"])
def test_template_names_are_refused(name: str) -> None:
    """rtnetlink treats a name holding '%' as a template (dev_get_valid_name -> dev_alloc_name):
    `ip link add v%d type veth peer name p%d` makes v0 and p0; any other '%' gives EINVAL.
    Accepted, CreateLink(name='v%d') would make v0, fail to read 'v%d' back and miss v0 when
    undoing by name, leaving a kernel link the table lacks; RenameLink would leave table and
    kernel with different names.
    """
    with pytest.raises(InvalidName) as exc:
        validate_link_name(name)
    assert exc.value.name == name
    assert "'%'" in exc.value.reason


# --- zone names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "0", "red", "Red-1", "zone_1.2", "a-", "a.", "x" * 64, "globalx", "global2"]
)
def test_valid_zone_names(name: str) -> None:
    assert validate_zone_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 65,
        "-a",
        ".a",
        "_a",
        "a b",
        "a/b",
        "a:b",
        "a%b",
        "é",
        "\uff41",  # FULLWIDTH LATIN SMALL LETTER A: alphanumeric to Python, not to the contract
        "red\n",  # a trailing newline must not slip past a `$` anchor
        "\nred",
        "red\0",
    ],
)
def test_invalid_zone_names(name: str) -> None:
    with pytest.raises(InvalidName) as exc:
        validate_zone_name(name)
    assert exc.value.name == name
    assert exc.value.reason


def test_global_is_reserved_unless_allowed() -> None:
    with pytest.raises(InvalidName) as exc:
        validate_zone_name(GLOBAL_ZONE)
    assert exc.value.name == "global"
    assert "reserved" in exc.value.reason
    assert validate_zone_name(GLOBAL_ZONE, allow_global=True) == "global"


_ZONE_FIRST = "abcxyzABCXYZ0189"
_ZONE_REST = _ZONE_FIRST + "_.-"


@given(st.text(alphabet=st.sampled_from(_ZONE_REST + " /:%é\n\0"), max_size=70))
def test_zone_name_accepted_iff_contract_syntax(name: str) -> None:
    ok = (
        1 <= len(name) <= 64
        and name[0] in _ZONE_FIRST
        and all(ch in _ZONE_REST for ch in name)
        and name != GLOBAL_ZONE
    )
    if ok:
        assert validate_zone_name(name) == name
    else:
        with pytest.raises(InvalidName):
            validate_zone_name(name)
