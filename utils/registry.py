"""Building a component by name from an options dict, the one way models, losses and datasets are built."""
import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any


def build_by_type(kind: str, registry: Mapping[str, Callable[..., Any]], opt: Mapping[str, Any] | None,
                  default: str | None = None, error: type[Exception] = ValueError) -> Any:
    """`registry[opt['type']](**other keys)`.

    An unknown type or key raises `error`, naming it as `kind.key` (so `kind` is best the options
    section, e.g. 'network') with the known keys; the constructor's own checks raise as they do.
    """
    opt = dict(opt or {})
    name = opt.pop("type", default)
    if name not in registry:
        raise error(f"{kind}.type = {name!r} must be one of {', '.join(sorted(registry))}")
    known = [p for p in inspect.signature(registry[name]).parameters if p not in ("args", "kwargs")]
    for key in opt:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise error(f"unknown option '{kind}.{key}' for type {name}.{hint} "
                        f"Known keys in '{kind}': {', '.join(['type', *known])}")
    return registry[name](**opt)
