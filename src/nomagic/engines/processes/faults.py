"""Test hooks: make a sensor, neuron, actuator or the cortex crash (or a neuron hang) on purpose."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import InvalidInputError

ROLES = ("sensor", "neuron", "actuator", "cortex")
PHASES = {"sensor": ("forward",), "neuron": ("forward", "backward", "commit"),
          "actuator": ("forward", "backward"), "cortex": ("forward", "backward", "commit")}


class InjectedCrash(RuntimeError):
    """Raised inside a process by a ``Fault`` (a test hook)."""


class Hang(Exception):
    """Raised inside a neuron by a ``Fault(kind="hang")``: it swallows every message from then on."""


@dataclass
class Fault:
    """A test hook: make ``target`` crash (or hang) in ``phase`` of batch ``batch``.

    ``target``: a neuron's name as in ``net.neurons()`` ("dense_0[2]"), a sensor's (the input
    population's, "inputs[0]", or "sensor inputs[0]"), "actuator K" (K: the output segment), or
    "cortex". ``phase``: "forward", "backward" or "commit" (a sensor works only forward, an
    actuator forward and backward). ``times``: how many times it fires (more often than the
    supervisor's restart limit ends the run). ``kind``: "crash" raises ``InjectedCrash``; "hang"
    (neurons only) makes the neuron swallow every message from then on.
    """

    target: str
    phase: str = "forward"
    batch: int = 0
    times: int = 1
    kind: str = "crash"

    def __post_init__(self) -> None:
        if not isinstance(self.target, str):
            raise InvalidInputError(f"Fault: target must be a process's name; got {self.target!r}")
        if self.phase not in ("forward", "backward", "commit"):
            raise InvalidInputError(f"Fault: phase must be 'forward', 'backward' or 'commit'; got {self.phase!r}")
        if self.kind not in ("crash", "hang"):
            raise InvalidInputError(f"Fault: kind must be 'crash' or 'hang'; got {self.kind!r}")
        for what in ("batch", "times"):
            v = getattr(self, what)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidInputError(f"Fault: {what} must be an int >= 0; got {v!r}")
        self.role = ""  # set by check_faults, from the network
        self.name = self.target

    @property
    def neuron(self) -> str:
        """The target's name (the field was called ``neuron`` when only neurons could fail)."""
        return self.target

    def fire(self, role: str, name: str, phase: str, batch: int) -> bool:
        if self.times > 0 and phase == self.phase and batch == self.batch and name == self.name and \
                role == self.role:
            self.times -= 1
            return True
        return False


def trip(faults: list[Fault], role: str, name: str, phase: str, batch: int) -> None:
    """Raise if a fault is due here (a no-op loop when there are none)."""
    for f in faults:
        if f.fire(role, name, phase, batch):
            if f.kind == "hang":
                raise Hang
            raise InjectedCrash(f"injected crash in {role} {name} ({phase}, batch {batch})")


def check_faults(faults, wiring) -> list[Fault]:
    """The faults as a list, each naming a process of the network (a typo would never fire)."""
    if faults is None:
        return []
    if isinstance(faults, Fault):
        faults = [faults]
    if isinstance(faults, (str, bytes)) or not hasattr(faults, "__iter__"):
        raise InvalidInputError(f"faults must be a list of Fault(...); got {faults!r}")
    faults = list(faults)
    for f in faults:
        if not isinstance(f, Fault):
            raise InvalidInputError(f"faults must be a list of Fault(...); got {f!r} in it")
    if not faults:
        return faults
    sensors = {wiring.name(g) for g in range(wiring.n_sensors)}
    neurons = {wiring.name(g) for g in range(wiring.n_sensors, wiring.size)}
    actuators = {f"actuator {k}" for k in range(len(wiring.actuators))}
    for f in faults:
        role, _, bare = f.target.partition(" ")
        if f.target == "cortex":
            f.role, f.name = "cortex", "cortex"
        elif f.target in actuators:
            f.role, f.name = "actuator", f.target
        elif f.target in neurons or (role == "neuron" and bare in neurons):
            f.role, f.name = "neuron", bare if role == "neuron" else f.target
        elif f.target in sensors or (role == "sensor" and bare in sensors):
            f.role, f.name = "sensor", bare if role == "sensor" else f.target
        else:
            raise InvalidInputError(
                f"Fault: the network has no process named {f.target!r}: give a neuron's name as in "
                f"net.neurons() (e.g. {wiring.name(wiring.n_sensors)!r}), a sensor's (e.g. {wiring.name(0)!r}), "
                f"'actuator 0' .. 'actuator {len(wiring.actuators) - 1}', or 'cortex'")
        if f.phase not in PHASES[f.role]:
            raise InvalidInputError(f"Fault: a {f.role} works only in the phases {PHASES[f.role]}; "
                                    f"{f.target!r} cannot fail in {f.phase!r}")
        if f.kind == "hang" and f.role != "neuron":
            raise InvalidInputError(f"Fault: only a neuron can hang; {f.target!r} is a {f.role}")
    return faults
