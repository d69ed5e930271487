"""Deciding whether a write is needed: the desired object is compared with what the apiserver holds, ignoring what
the apiserver adds (defaults, status, metadata it owns). Pure."""

from __future__ import annotations

import base64
import copy
from typing import Any

# Metadata the apiserver or other controllers own; desired objects never carry them, and they never force a write.
_SERVER_METADATA = {"resourceVersion", "uid", "generation", "creationTimestamp", "managedFields", "selfLink"}


def _secret_as_stored(secret: dict) -> dict:
    """The apiserver merges a Secret's stringData into data (base64) and never returns stringData."""
    data = {**(secret.get("data") or {}),
            **{k: base64.b64encode(v.encode()).decode() for k, v in secret["stringData"].items()}}
    return {**{k: v for k, v in secret.items() if k != "stringData"}, "data": data}


def is_subset(desired: Any, actual: Any) -> bool:
    """True when every field of `desired` is present in `actual` with the same value. Dicts may have extra keys in
    `actual` (server defaults); lists must match element-wise and in length (order matters for containers, ports)."""
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return False
        if desired.get("kind") == "Secret" and isinstance(desired.get("stringData"), dict):
            desired = _secret_as_stored(desired)
        return all(k in actual and is_subset(v, actual[k]) for k, v in desired.items()
                   if k not in _SERVER_METADATA and v is not None)
    if isinstance(desired, list):
        return isinstance(actual, list) and len(desired) == len(actual) and all(
            is_subset(d, a) for d, a in zip(desired, actual))
    if isinstance(desired, bool) or isinstance(actual, bool):
        return desired is actual
    if isinstance(desired, (int, float)) and isinstance(actual, (int, float)):
        return desired == actual
    return desired == actual or (desired is not None and str(desired) == str(actual))


def merge_patched(obj: Any, patch: Any) -> Any:
    """What `obj` becomes under the JSON merge patch `patch` (RFC 7386), as the apiserver applies it: a null removes
    a key, a dict merges into a dict, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(obj) if isinstance(obj, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patched(out.get(key), value)
    return out
