"""The lock strategies, by name (DESIGN.md, CONTRACT: lock strategies).

Adding one: write a module with a LockStrategy subclass, and add it to STRATEGIES below.
"""

from __future__ import annotations

from racebench.reference_service.strategies.advisory import Advisory
from racebench.reference_service.strategies.app_lock import AppLock
from racebench.reference_service.strategies.base import Capture, LockStrategy, PaymentRow, Safety
from racebench.reference_service.strategies.conditional_update import ConditionalUpdate
from racebench.reference_service.strategies.for_update import ForUpdate
from racebench.reference_service.strategies.none import NoLock
from racebench.reference_service.strategies.optimistic import Optimistic
from racebench.reference_service.strategies.serializable import Serializable

STRATEGIES: dict[str, type[LockStrategy]] = {
    cls.name: cls
    for cls in (NoLock, ForUpdate, ConditionalUpdate, Optimistic, Advisory, Serializable, AppLock)
}
STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGIES)


class UnknownStrategy(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown lock strategy {name!r}; choose one of: {', '.join(STRATEGY_NAMES)}"
        )


def holds(strategy: str, processes: int = 1) -> bool:
    """Is `strategy` expected to capture exactly once when `processes` service processes serve
    the requests? The one answer to that question: scenarios, the bench and the gate ask it.
    A strategy the registry does not know (a user's own) is expected to hold."""
    cls = STRATEGIES.get(strategy)
    safety = Safety.SAFE if cls is None else cls.safety
    return safety is Safety.SAFE or (safety is Safety.SINGLE_PROCESS and processes == 1)


def get_strategy(name: str) -> LockStrategy:
    """A fresh instance of the strategy called `name`."""
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise UnknownStrategy(name) from None


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
]
