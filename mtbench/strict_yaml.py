"""Strict YAML for suite files: ``yaml.safe_load`` semantics without the ways a file can mean
something other than what it says, or cost more than its size.

- at most :data:`MAX_BYTES` (1 MiB) of UTF-8 text; other bytes are an error naming the line;
- a key written twice in one mapping is an error naming both lines (``safe_load`` silently
  keeps the last);
- aliases (``*name``) are refused, so a few hundred bytes cannot expand into gigabytes (the
  "billion laughs"); anchors alone are harmless and allowed; merge keys (``<<: *name``) need an
  alias and are refused with it;
- nesting deeper than :data:`MAX_DEPTH` is refused (PyYAML composes recursively);
- one document per file.

YAML 1.1 reads unquoted ``on``/``off``/``yes``/``no`` as booleans; that is left to the schema
(:class:`mtbench.suite.Checks` maps them back where it expects ``on``/``off``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError

from mtbench.errors import SuiteError, fail

MAX_BYTES = 1 << 20
MAX_DEPTH = 64


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` whose composer refuses aliases and deep nesting."""

    depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise ComposerError(None, None, f"alias '*{event.anchor}' refused: suites are plain YAML "
                                            f"(write the value out instead of referring to an anchor)",
                                event.start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _text(path: Path, max_bytes: int) -> str:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SuiteError(f"{path}: {size:,} bytes, more than the {max_bytes:,} a suite may have")
        raw = path.read_bytes()
    except IsADirectoryError:
        raise SuiteError(f"{path}: is a folder, not a suite file") from None
    except OSError as exc:
        raise SuiteError(f"cannot read suite {path}: {exc.strerror}") from None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise SuiteError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                         f"save the suite as UTF-8") from None


def _index(node: yaml.Node, path: tuple, lines: dict[tuple, int], dups: list[str], file: Path) -> None:
    """Fill ``lines`` (key path -> 1-based line) and ``dups`` (one message per repeated key)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple, int] = {}
        for k, v in node.value:
            line = k.start_mark.line + 1
            if isinstance(k, yaml.ScalarNode):
                ident = (k.tag, k.value)
                if ident in seen:
                    where = ".".join(map(str, path + (k.value,)))
                    dups.append(f"{file}:{line}: {where}: key {k.value!r} written twice "
                                f"(first at line {seen[ident]}); YAML would keep only the last")
                seen.setdefault(ident, line)
            p = path + ((k.value if isinstance(k, yaml.ScalarNode) else str(line)),)
            lines[p] = line
            _index(v, p, lines, dups, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _index(v, path + (i,), lines, dups, file)


def load_yaml(path: str | Path, max_bytes: int = MAX_BYTES) -> tuple[Any, dict[tuple, int]]:
    """Read one YAML document strictly (module docstring).

    :return: ``(data, lines)``: the document as ``yaml.safe_load`` builds it, and every key
        path's (``("matrix", "level", 0)``) 1-based line.
    :raises SuiteError: too large, not UTF-8, invalid YAML, an alias, too deep, or repeated
        keys; each message names the file and line (repeated keys: at most
        :data:`mtbench.errors.MAX_ERROR_LINES` lines).
    """
    path = Path(path)
    text = _text(path, max_bytes)
    try:
        loader = _StrictLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character
        line = text.count("\n", 0, exc.position) + 1
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        raise SuiteError(f"{path}:{line}: invalid YAML: control character {char!r} is not allowed") from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise SuiteError(f"{path}: empty file; a suite is a YAML mapping")
        lines: dict[tuple, int] = {}
        dups: list[str] = []
        _index(node, (), lines, dups, path)
        fail(f"invalid suite {path}:", dups, SuiteError)
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = "; ".join(filter(None, (exc.context, exc.problem)))
        raise SuiteError(f"{where}: invalid YAML: {what}") from None
    finally:
        loader.dispose()
