"""A VMI's identity in the exposition: its label fragment, and label-value escaping.

Contract (pure, the bottom layer that the cache and the renderer share):
- `escape_label_value(value)` escapes backslash, double quote and newline as the Prometheus text
  format requires (prometheus/docs: content/docs/instrumenting/exposition_formats.md).
- `vmi_ident(namespace, name)` is the label fragment `namespace="..",name=".."` that identifies a
  VMI in every per-VMI series; `name_in_ident(namespace, ident)` reads the name back. The cache
  keys VMIs by it and the render store writes it, so a VMI's identity is one bytes object.
"""

from __future__ import annotations

import re


def escape_label_value(value: str) -> str:
    """Escape a label value for the text format: backslash, double quote and newline."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def vmi_ident(namespace: str, name: str) -> bytes:
    """The identity label fragment of a VMI's series: `namespace="..",name=".."`."""
    return f'namespace="{escape_label_value(namespace)}",name="{escape_label_value(name)}"'.encode()


def name_in_ident(namespace: str, ident: bytes) -> str:
    """The name a `vmi_ident(namespace, name)` was made of."""
    escaped = ident[len(escape_label_value(namespace).encode()) + 19 : -1].decode()
    if "\\" not in escaped:
        return escaped
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), escaped)
