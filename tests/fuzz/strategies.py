"""Hypothesis strategies for the fuzz suite: JSON values, edits of a JSON document, layer specs."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from cnnlab.models import layers

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
DEEP = "\u0000DEEP\u0000"  # stands for a nested value spliced into the text, deeper than json.dumps could write


def paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a JSON document (into objects and lists), itself included."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document[:3]):
            found += paths(value, (*prefix, index))
    return found


def _set(document: Any, path: tuple, value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    document = json.loads(json.dumps(document))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


@st.composite
def edited_json(draw, document: dict[str, Any]) -> tuple[str, bytes]:
    """``(case, file bytes)``: ``document`` with one thing broken, or changed in a way that may be
    fine: a field deleted or given any JSON value, nested deeply, given a number far out of range,
    the file cut short, or bytes that are not JSON at all."""
    every = [p for p in paths(document) if p]
    how = draw(st.sampled_from(["deleted", "any value", "deep", "digits", "number", "truncated", "not json",
                                "same type"]))
    path = draw(st.sampled_from(every))
    if how == "deleted":
        return "a field deleted", json.dumps(_set(document, path, None, delete=True)).encode()
    if how == "deep":
        depth = draw(st.sampled_from([33, 100, 1_000, 20_000]))
        text = json.dumps(_set(document, path, DEEP)).replace(json.dumps(DEEP), "[" * depth + "]" * depth)
        return f"nested {depth} deep", text.encode()
    if how == "digits":  # more digits than Python turns into an int (4,300)
        text = json.dumps(_set(document, path, DEEP)).replace(json.dumps(DEEP), "9" * 5_000)
        return "a number of 5,000 digits", text.encode()
    if how == "number":
        value = draw(st.sampled_from([0, -1, 2, 10**6, 2**31, 2**63, 10**30, 1e308, -1e308]) | st.floats())
        return "a number far out of range", json.dumps(_set(document, path, value)).encode()
    if how == "truncated":
        text = json.dumps(document).encode()
        return "the file cut short", text[: draw(st.integers(0, len(text) - 1))]
    if how == "not json":
        return "bytes that are not JSON", draw(st.binary(max_size=200))
    if how == "same type":
        old = _get(document, path)
        value = draw(_like(old))
        return "a field given another value of its type", json.dumps(_set(document, path, value)).encode()
    return "a field given any JSON value", json.dumps(_set(document, path, draw(JSON_VALUES))).encode()


def _get(document: Any, path: tuple) -> Any:
    for key in path:
        document = document[key]
    return document


def _like(value: Any):
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-5, 5000)
    if isinstance(value, float):
        return st.floats(-10, 10)
    if isinstance(value, str):
        return st.text(max_size=30)
    if isinstance(value, list):
        return st.lists(SCALARS, max_size=20)
    return JSON_VALUES


WORDS = [*layers.KINDS, *layers.ALIASES, "softmax", "init=glorot", "init=x", "conv2d", "Dense", "-same"]


@st.composite
def layer_specs(draw) -> tuple[str, str]:
    """``(case, spec)``: a spec from the layer language's words with sizes, options and flags of
    any value (huge ones among them), or any text at all."""
    if draw(st.integers(0, 9)) == 0:
        return "any text", draw(st.text(max_size=60))
    tokens = []
    for _ in range(draw(st.integers(1, 6))):
        word = draw(st.sampled_from(WORDS))
        size = draw(st.sampled_from(["", "", "1", "3", "16", "0.5", "64", "100000", "9" * 12, "9" * 400, "9" * 5000])
                    | st.integers(0, 5000).map(str))
        options = "".join(draw(st.lists(st.tuples(st.sampled_from("kspx"), st.sampled_from(["0", "1", "3", "7",
                          "99999", "9" * 5000])).map("".join), max_size=2)))
        flags = "".join(draw(st.lists(st.sampled_from(["-same", "-valid", "-relu", "-nobias", "-linear", "-odd"]),
                                      max_size=2)))
        tokens.append(word + size + options + flags)
    spec = " ".join(tokens)
    largest = max((float(t) for t in "".join(c if c.isdigit() else " " for c in spec).split()), default=0)
    return ("huge sizes" if largest > 4096 else "layer words"), spec
