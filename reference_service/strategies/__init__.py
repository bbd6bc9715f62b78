"""The lock strategies, by name (docs/contracts.md, lock strategies).

Adding one: write a module here whose LockStrategy subclass is its `STRATEGY`, and add the
module's name to MODULES below (the order is the order of every listing).
"""

from __future__ import annotations

from importlib import import_module

from racebench.reference_service.strategies.base import Capture, LockStrategy, PaymentRow, Safety

MODULES = (
    "none",
    "for_update",
    "conditional_update",
    "optimistic",
    "advisory",
    "serializable",
    "app_lock",
)


def _strategy_of(module: str) -> type[LockStrategy]:
    cls = import_module(f"{__name__}.{module}").STRATEGY
    if not (isinstance(cls, type) and issubclass(cls, LockStrategy)):
        raise TypeError(f"{__name__}.{module}.STRATEGY is not a LockStrategy subclass")
    return cls


STRATEGIES: dict[str, type[LockStrategy]] = {
    cls.name: cls for cls in (_strategy_of(module) for module in MODULES)
}
STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGIES)


class UnknownStrategy(ValueError):
    def __init__(self, name: str, why: str = "") -> None:
        super().__init__(
            f"unknown lock strategy {name!r}"
            + (f" ({why})" if why else "")
            + f"; choose one of: {', '.join(STRATEGY_NAMES)}, or package.module:Class"
        )


def holds(strategy: str, processes: int = 1) -> bool:
    """Is `strategy` expected to capture exactly once when `processes` service processes serve
    the requests? The one answer to that question: scenarios, the bench and the gate ask it.
    A strategy the registry does not know (a user's own) is expected to hold."""
    cls = STRATEGIES.get(strategy)
    safety = Safety.SAFE if cls is None else cls.safety
    return safety is Safety.SAFE or (safety is Safety.SINGLE_PROCESS and processes == 1)


def get_strategy(name: str) -> LockStrategy:
    """A fresh instance of the strategy called `name`: a registered name, or a class of one's
    own as `package.module:Class` (a LockStrategy subclass, importable by the service)."""
    if name in STRATEGIES:
        return STRATEGIES[name]()
    return import_strategy(name)()


def is_custom(name: str) -> bool:
    """`package.module:Class`: a strategy class outside the registry."""
    module, _, cls = name.partition(":")
    return bool(module and cls)


def import_strategy(name: str) -> type[LockStrategy]:
    """The LockStrategy subclass that `package.module:Class` names; UnknownStrategy if `name`
    is neither registered nor such a class."""
    if not is_custom(name):
        raise UnknownStrategy(name)
    module, _, attribute = name.partition(":")
    try:
        cls = getattr(import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise UnknownStrategy(name, f"cannot import it: {error}") from None
    if not (isinstance(cls, type) and issubclass(cls, LockStrategy)):
        raise UnknownStrategy(name, "it is not a LockStrategy subclass")
    return cls


__all__ = [
    "STRATEGIES",
    "STRATEGY_NAMES",
    "Capture",
    "LockStrategy",
    "PaymentRow",
    "Safety",
    "UnknownStrategy",
    "get_strategy",
    "holds",
    "import_strategy",
    "is_custom",
]
