"""Building a component by name from an options dict, the one way models, losses and datasets are built."""
from collections.abc import Callable, Mapping
from typing import Any


def build_by_type(kind: str, registry: Mapping[str, Callable[..., Any]], opt: Mapping[str, Any] | None,
                  default: str | None = None, error: type[Exception] = ValueError) -> Any:
    """`registry[opt['type']](**other keys)`; unknown types and bad keys raise `error` naming `kind`."""
    opt = dict(opt or {})
    name = opt.pop("type", default)
    if name not in registry:
        raise error(f"unknown {kind} type {name!r}; choose one of {', '.join(sorted(registry))}")
    try:
        return registry[name](**opt)
    except TypeError as err:
        raise error(f"bad {kind} options {opt}: {err}") from None
