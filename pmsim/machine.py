"""The simulated machine: the engine's environment, the cores, the random streams, the
recorder, the costs, and factories for the sync primitives configured for it.

Threads and cores are in :mod:`pmsim.cpu`; the primitives in :mod:`pmsim.sync`, which import the
engine, never this module.
"""

from __future__ import annotations

from pmsim.costs import CostTable
from pmsim.cpu import Core, Thread
from pmsim.engine import Environment
from pmsim.errors import ConfigError
from pmsim.recorder import Recorder
from pmsim.rng import RandomStreams
from pmsim.sync.cacheline import CacheLine
from pmsim.sync.qlock import WAKE_POLICIES, QLock
from pmsim.sync.rcu import Rcu
from pmsim.sync.spinlock import SPINLOCK_KINDS, SpinLock, make_spinlock


class Machine:
    """Owns the SimPy environment, the cores, the random streams, the recorder and the costs."""

    def __init__(
        self,
        cores: int = 1,
        sockets: int = 1,
        costs: CostTable | None = None,
        seed: int = 0,
        warmup: float = 0.0,
        spinlock_kind: str = "ttas",
        qlock_wake: str = "waker_core",
    ):
        if cores < 1:
            raise ConfigError(f"machine.cores: must be >= 1, got {cores!r}")
        if sockets < 1 or sockets > cores:
            raise ConfigError(
                f"machine.sockets: must be between 1 and cores ({cores}), got {sockets!r}"
            )
        if spinlock_kind not in SPINLOCK_KINDS:
            raise ConfigError(
                f"machine.spinlock: unknown kind {spinlock_kind!r} (one of {', '.join(SPINLOCK_KINDS)})"
            )
        if qlock_wake not in WAKE_POLICIES:
            raise ConfigError(
                f"machine.qlock_wake: unknown policy {qlock_wake!r} (one of {', '.join(WAKE_POLICIES)})"
            )
        self.env = Environment()
        self.costs = costs if costs is not None else CostTable()
        self.cores = [Core(i, i * sockets // cores) for i in range(cores)]
        self.streams = RandomStreams(seed)
        self.recorder = Recorder(self, warmup)
        self.spinlock_kind = spinlock_kind
        self.qlock_wake = qlock_wake
        self.rcu: Rcu | None = None  # Akaros RCU, once something uses it (start_rcu)
        self.design = None  # the page-map design simulated (named in invariant violations)
        self.op_done = None  # callback(th, op, start): operations nested in others (faults, misses)
        self.nested: dict = {}  # (thread, op) -> start of a nested operation in progress

    def rng(self, name: str):
        """The numpy Generator of the named stream."""
        return self.streams.get(name)

    def nested_start(self, th, op: str) -> None:
        """A nested operation (a touch's fault, a read's miss) starts on ``th``: one still in
        progress at the end is reported unfinished, like the operation around it."""
        self.nested[th, op] = th.now

    def nested_done(self, th, op: str) -> None:
        t0 = self.nested.pop((th, op))
        if self.op_done is not None:
            self.op_done(th, op, t0)

    def thread(self, name: str, core: int, proc=None) -> Thread:
        if not 0 <= core < len(self.cores):
            raise ConfigError(f"thread {name}: core {core} out of range 0..{len(self.cores) - 1}")
        th = Thread(self, name, self.cores[core], proc)
        if th.core.thread is None:  # the first thread of a core runs there from the start
            th.core.thread = th
        return th

    def spinlock(self, name: str, kind: str | None = None) -> SpinLock:
        """A spinlock of the machine's kind (Akaros's TTAS unless the workload says otherwise)."""
        return make_spinlock(self, name, kind or self.spinlock_kind)

    def qlock(self, name: str, wake: str | None = None) -> QLock:
        """A qlock with the machine's wake policy."""
        return QLock(self, name, wake or self.qlock_wake)

    def cacheline(self, name: str) -> CacheLine:
        return CacheLine(self, name)

    def start_rcu(self) -> Rcu:
        """This machine's RCU, started (its grace-period kthread) on the first call. A design
        that never uses RCU never starts it, so its runs have no RCU events."""
        if self.rcu is None:
            self.rcu = Rcu(self)
        return self.rcu

    def run(self, until: float) -> None:
        self.recorder.start()
        self.env.run(until=until)
        self.recorder.stop()
