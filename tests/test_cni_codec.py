"""linkbroker-cni's JSON (clients/cni/_codec: CPython's `_json` wired up without `json`'s
imports) reads and writes exactly what `json` does."""

from __future__ import annotations

import json
import math
import subprocess
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clients.cni import _codec
from tests.conftest import ROOT
from tests.podman.plugin import PYTHON

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(values)
def test_same_text_as_json_and_back(value: Any) -> None:
    text = _codec.dumps(value)
    assert text == json.dumps(value)
    assert _codec.loads(text) == json.loads(text)
    assert _codec.loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize("doc", ["", "   ", "{", '{"a":1} x', "[1,]", "{'a': 1}", "nul",
                                 b"\xff\xfe"])
def test_malformed_documents_are_value_errors(doc: str | bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(doc)
    with pytest.raises(ValueError):
        _codec.loads(doc)


def test_malformed_documents_in_a_fresh_interpreter() -> None:
    """As the plugin runs: json.decoder not imported yet when the C scanner fails (it looks
    for its error class in sys.modules only). Every failure is a ValueError, never a
    SystemError."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from clients.cni import _codec\n"
            "for doc in sys.argv[2:]:\n"
            "    try:\n        _codec.loads(doc)\n"
            "    except ValueError as e:\n        print(isinstance(e, ValueError))\n")
    docs = ['{"a": tru', "{bad", '["x', "[1,]", '"\\q"']
    out = subprocess.run([PYTHON, "-IS", "-c", code, str(ROOT), *docs], capture_output=True,
                         text=True, check=False, timeout=60)
    assert out.stdout.split() == ["True"] * len(docs), out.stderr


def test_whitespace_and_constants() -> None:
    assert _codec.loads(' \n{"a": [1, 2.5, "\\u00e9"]}\t') == {"a": [1, 2.5, "\u00e9"]}
    assert math.isinf(_codec.loads("Infinity"))
    with pytest.raises(TypeError):
        _codec.dumps({"a": object()})
