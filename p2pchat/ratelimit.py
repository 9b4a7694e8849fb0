"""A token bucket: how much a neighbour may send us per second, with a burst allowance.

Part of the pure core: the caller passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TokenBucket"]


@dataclass(slots=True)
class TokenBucket:
    rate: float
    """Tokens added per second."""
    burst: float
    """The most tokens the bucket holds (and its content at the start)."""
    tokens: float = -1.0
    updated: float | None = None

    def take(self, amount: float, now: float) -> bool:
        """Spend ``amount`` tokens at time ``now``; False (and nothing spent) if too few."""
        if self.updated is None:
            self.tokens, self.updated = self.burst, now
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now
        if amount > self.tokens:
            return False
        self.tokens -= amount
        return True
