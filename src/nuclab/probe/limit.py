"""How many echo answers a probe sends to one source address: a token bucket per address.

An answer is never larger than its request (``wire.reply_to``), so a probe amplifies nothing;
this bounds the rate too. A source that forges a victim's address (the node probe answers on
the host network) gets at most ``rate`` answers a second sent to that victim, however fast it
sends. At most ``sources`` addresses are remembered: a new one takes the place of the one heard
from longest ago only once that one's bucket would be full again; until then it is not answered,
so a flood from many forged addresses is bounded as well.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_RATE = 200  # answers a second to one address: a prober every 5 ms is measured in full
SOURCES = 4096


class ReplyLimiter:
    def __init__(
        self, rate: float, sources: int = SOURCES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)  # one second's worth
        self.sources = sources
        self.refused = 0
        self._clock = clock
        # address -> [tokens, time of the last request]; the least recently heard first
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def allow(self, address: str) -> bool:
        """Whether to answer a request from ``address`` now (and count it)."""
        now = self._clock()
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.sources:
                oldest, (_, heard) = next(iter(self._buckets.items()))
                if (now - heard) * self.rate < self.burst:
                    self.refused += 1
                    return False
                del self._buckets[oldest]
            bucket = self._buckets[address] = [self.burst, now]
        else:
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            self._buckets.move_to_end(address)
        if bucket[0] < 1:
            self.refused += 1
            return False
        bucket[0] -= 1
        return True
