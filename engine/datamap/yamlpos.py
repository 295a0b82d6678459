"""Line numbers for paths inside a YAML document, for error messages."""

from __future__ import annotations

import yaml


def line_index(text: str) -> dict[str, int]:
    """Map every dotted path of a YAML document (``a.b.0.c``) to its 1-based line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    index: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        index[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = f"{path}.{key.value}" if path else str(key.value)
                index[child] = key.start_mark.line + 1
                walk(value, child)
                index[child] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}.{i}" if path else str(i))

    if root is not None:
        walk(root, "")
    return index


def nearest_line(index: dict[str, int], path: str) -> int | None:
    """The line of ``path`` or of its closest ancestor that has one."""
    while True:
        if path in index:
            return index[path]
        if "." not in path:
            return index.get(path)
        path = path.rsplit(".", 1)[0]
