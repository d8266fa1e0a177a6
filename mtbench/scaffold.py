"""``mtbench new-plugin NAME``: a plugin distribution to start from, whose tests pass as made.

The template (``mtbench/templates/plugin``) holds one model (a timm backbone with seg/cls
heads), one loss (Poly-1 cross-entropy) and one strategy (uniform random loss weighting), a
one-cell suite on generated data, and tests that call :mod:`mtbench.testing`'s contract
checks and run the suite. ``{{name}}``, ``{{dist}}`` and ``{{module}}`` are filled in; the
folder ``__module__`` becomes the package.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from mtbench.errors import UsageError

_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


def new_plugin(name: str, parent: Path) -> Path:
    """Write the distribution ``mtbench-NAME`` (package ``mtbench_NAME``) into ``parent/mtbench-NAME``.

    :param name: lower-case letters, digits and single hyphens, starting with a letter
        (the names it registers are ``NAME-net``, ``NAME-poly1``, ``NAME-rlw-uniform``).
    :return: the folder written.
    :raises UsageError: an invalid name, or the folder exists and is not empty.
    """
    if not _NAME.fullmatch(name):
        raise UsageError(f"new-plugin {name!r}: use lower-case letters, digits and single hyphens, starting "
                         f"with a letter (e.g. 'demo' or 'my-lab')")
    dist, module = f"mtbench-{name}", f"mtbench_{name.replace('-', '_')}"
    dest = Path(parent) / dist
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"{dest}: exists and is not empty; choose another name or folder (--dir)")
    values = {"{{name}}": name, "{{dist}}": dist, "{{module}}": module}
    template = resources.files("mtbench") / "templates" / "plugin"
    for src, rel in _walk(template, ""):
        text = src.read_text()
        for key, value in values.items():
            text = text.replace(key, value)
        out = dest / rel.replace("__module__", module).removesuffix(".tmpl")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return dest


def _walk(folder, prefix: str):
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        rel = f"{prefix}{item.name}"
        if item.is_dir():
            yield from _walk(item, rel + "/")
        elif item.name.endswith(".tmpl"):
            yield item, rel
