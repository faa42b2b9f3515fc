"""JSON for the plugin through CPython's `_json` accelerator directly.

`import json` costs ~9 ms here (json.decoder imports `re`, and `re` imports `enum`), a third of
the plugin's whole start-up, on every ADD and DEL. The scanner and encoder that `json` itself
uses are C functions in `_json` that need neither; they are wired up here the way json.decoder
and json.encoder wire them. Errors are ValueError, as with json (a malformed document makes
`json` itself be imported for its error class: the slow path only).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dumps", "loads"]

try:
    from _json import encode_basestring_ascii, make_encoder, make_scanner
except ImportError:  # not CPython: the ordinary module
    import json as _std

    def loads(text: str | bytes) -> Any:
        return _std.loads(text)

    def dumps(obj: Any) -> str:
        return _std.dumps(obj)
else:
    class _Context:
        """The attributes json.scanner's C scanner reads from a JSONDecoder."""

        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = float  # NaN, Infinity, -Infinity, as json.loads takes them

    _scan = make_scanner(_Context())  # type: ignore[arg-type]  # duck-typed as json does

    def _no_default(obj: Any) -> Any:
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    _encode = make_encoder(None, _no_default, encode_basestring_ascii, None, ": ", ", ",
                           False, False, True)
    _SPACE = " \t\n\r"

    def loads(text: str | bytes) -> Any:
        """One JSON document (surrounding whitespace allowed); ValueError otherwise."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        start = len(text) - len(text.lstrip(_SPACE))
        try:
            obj, end = _scan(text, start)
        except StopIteration as exc:
            raise ValueError(f"Expecting value: char {exc.value}") from None
        except Exception:
            # A malformed document: the C scanner wants json.decoder's error class from
            # sys.modules (it does not import it; without it, SystemError). The ordinary
            # module raises the ordinary JSONDecodeError, a ValueError saying where.
            import json as _std

            return _std.loads(text)
        if text[end:].strip(_SPACE):
            raise ValueError(f"Extra data: char {end}")
        return obj

    def dumps(obj: Any) -> str:
        return "".join(_encode(obj, 0))
