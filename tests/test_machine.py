"""The machine: named random streams, determinism, configuration errors."""

import numpy as np
import pytest

from pmsim.errors import ConfigError
from pmsim.machine import Machine
from pmsim.rng import RandomStreams


def test_streams_are_stable_by_name():
    a = RandomStreams(7)
    b = RandomStreams(7)
    b.get("something.else").random(1000)  # using another stream first changes nothing
    assert np.array_equal(a.get("io.disk.read").random(5), b.get("io.disk.read").random(5))


def test_streams_differ_by_name_and_seed():
    s = RandomStreams(7)
    x = s.get("a").random(4)
    assert not np.array_equal(x, s.get("b").random(4))
    assert not np.array_equal(x, RandomStreams(8).get("a").random(4))


def test_machine_rng_is_the_same_generator_for_one_name():
    m = Machine(cores=2, seed=3)
    assert m.rng("x") is m.rng("x")


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"cores": 0}, "machine.cores"),
        ({"cores": 2, "sockets": 3}, "machine.sockets"),
        ({"cores": 2, "spinlock_kind": "bakery"}, "bakery"),
        ({"cores": 2, "qlock_wake": "teleport"}, "teleport"),
    ],
)
def test_bad_machine_settings(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        Machine(**kwargs)


def test_sockets_split_cores_evenly():
    m = Machine(cores=8, sockets=2)
    assert [c.socket for c in m.cores] == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize(
    "work, until, useful",
    [
        (800.0, 3000.0, 0.0),  # busy only during warm-up: the measured window is idle
        (1500.0, 2000.0, 0.5),  # work straddling the end of warm-up is split there
    ],
)
def test_warmup_is_excluded_from_cpu_fractions(work, until, useful):
    m = Machine(cores=1, warmup=1000.0)
    th = m.thread("t", 0)

    def proc():
        th.pending += work
        yield from th.sync()

    m.env.process(proc())
    m.run(until=until)
    cpu = m.recorder.cpu()
    assert cpu["useful"] == pytest.approx(useful)
    assert cpu["idle"] == pytest.approx(1 - useful) and cpu["spin"] == cpu["ipi"] == 0.0
