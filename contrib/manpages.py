"""Generate the man pages (section 8) and bash/zsh completions of linkbroker's programs from
their argparse parsers, so neither can drift from --help.

    python3 contrib/manpages.py OUTDIR

writes OUTDIR/man/man8/PROG.8, OUTDIR/bash-completion/completions/PROG and
OUTDIR/zsh/site-functions/_PROG for every console script the installed `linkbroker`
distribution declares (linkbrokerd, linkadm, linkbroker-agent, and linkbroker-cni once it
exists). scripts/install.sh runs it with OUTDIR=/usr/local/share, where man, bash-completion
and zsh look. The pages are made by argparse-manpage and the completions by shtab, both
maintained tools; this file only finds the parsers.

A program's parser comes from its module's `build_parser()` when there is one; otherwise its
`main` is called and stopped at its first `parse_args` (the parser is taken, nothing runs).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import shtab
from argparse_manpage.manpage import Manpage  # type: ignore[import-untyped]

DISTRIBUTION = "linkbroker"


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def parser_of(entry: metadata.EntryPoint) -> argparse.ArgumentParser:
    module = importlib.import_module(entry.module)
    build = getattr(module, "build_parser", None)
    if callable(build):
        parser = build()
        assert isinstance(parser, argparse.ArgumentParser)
        return parser
    original = argparse.ArgumentParser.parse_args

    def capture(self: argparse.ArgumentParser, *_: Any, **__: Any) -> NoReturn:
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign,assignment]
    try:
        entry.load()([])
    except TypeError as error:
        raise SystemExit(f"{entry.name}: give {entry.module} a build_parser() ({error})") from None
    except _Captured as got:
        return got.parser
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    raise SystemExit(f"{entry.name}: its main() parsed no arguments with argparse")


def programs() -> list[metadata.EntryPoint]:
    dist = metadata.distribution(DISTRIBUTION)
    return sorted((e for e in dist.entry_points if e.group == "console_scripts"),
                  key=lambda e: e.name)


def manpage(parser: argparse.ArgumentParser, version: str) -> str:
    summary = (parser.description or parser.prog).split(". ")[0].rstrip(".")
    page = Manpage(parser, _data={
        "project_name": DISTRIBUTION, "version": version, "manual_section": 8,
        "manual_title": "linkbroker manual", "description": summary,
    })
    return str(page)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    version = metadata.version(DISTRIBUTION)
    dirs = {"man": out / "man/man8", "bash": out / "bash-completion/completions",
            "zsh": out / "zsh/site-functions"}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for entry in programs():
        parser = parser_of(entry)
        parser.prog = entry.name
        (dirs["man"] / f"{entry.name}.8").write_text(manpage(parser, version))
        (dirs["bash"] / entry.name).write_text(shtab.complete(parser, shell="bash"))
        (dirs["zsh"] / f"_{entry.name}").write_text(shtab.complete(parser, shell="zsh"))
        print(f"{entry.name}: man page and completions written under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
