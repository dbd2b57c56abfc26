"""Load untrusted YAML configs (MSST configs use `!!python/tuple`).

`yaml.safe_load` rejects `!!python/tuple`, so real MSST configs fail with it; the
full loader would build arbitrary objects. This loader knows that one tag (as a
plain tuple) and nothing else unsafe: `!!python/object...` still raises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stemsplit.errors import ModelError, UnsafeCheckpoint


class _TupleSafeLoader(yaml.SafeLoader):
    """SafeLoader plus `tag:yaml.org,2002:python/tuple`."""


def _construct_tuple(loader: yaml.SafeLoader, node: yaml.Node) -> tuple[Any, ...]:
    if not isinstance(node, yaml.SequenceNode):  # as construct_sequence itself refuses it
        raise yaml.constructor.ConstructorError(
            None, None, f"expected a sequence node, but found {node.tag}", node.start_mark
        )
    return tuple(loader.construct_sequence(node, deep=True))


_TupleSafeLoader.add_constructor("tag:yaml.org,2002:python/tuple", _construct_tuple)


def load_yaml_text(text: str, source: str = "<string>") -> Any:
    """Parse YAML text; python object tags other than tuple raise UnsafeCheckpoint."""
    try:
        return yaml.load(text, Loader=_TupleSafeLoader)  # restricted loader: only tuples beyond SafeLoader
    except yaml.constructor.ConstructorError as err:
        if "python/" in str(err):
            raise UnsafeCheckpoint(
                f"{source}: refuses a YAML tag that would build Python objects ({err.problem})"
            ) from err
        raise ModelError(f"{source}: invalid YAML config: {_one_line(err)}") from err
    except yaml.YAMLError as err:
        raise ModelError(f"{source}: invalid YAML config: {_one_line(err)}; fix the file or "
                         "use the config published with the checkpoint") from err


def _one_line(err: yaml.YAMLError) -> str:
    """PyYAML's messages span lines and quote the source; keep the problem and its place."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(problem or err).split())[:200]


def load_yaml(path: str | Path) -> Any:
    """Read and parse a YAML file with `load_yaml_text`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ModelError(f"config {path} is binary data, not YAML or JSON text: give the "
                         "model's .yaml (MSST) or .json (UVR, Demucs v2's args.json)") from err
    except OSError as err:
        reason = err.strerror or " ".join(str(err).split())[:200]
        raise ModelError(f"cannot read config {path}: {reason}") from err
    return load_yaml_text(text, str(path))
