"""A link fault placed in a migration's protocol phase by the phase itself.

``PhaseFault`` names one fault: the plan step whose migration it hits, the protocol phase,
and the kind.  ``PhaseFaultInjector`` watches what each transmitter of the system's link
drives (before any fault: ``WireLane.tap``), reads the VF Migration messages from it
(``MessageTap``), and fires when the message that opens the phase appears for the moving
VF — so the fault stays in its phase whatever the timing of the rest of the run.

Phases and their trigger message (the wire it travels on):

=========== ================================================ =================
phase       trigger                                          wire
=========== ================================================ =================
BEGIN       MIG_BEGIN                                        source -> target
PRECOPY     the first STATE_DATA of the move                 source -> target
RESIDUAL    the first STATE_DATA (or SWITCHOVER, when there   source -> target
            is no residual) after the VMM's STOP_COPY
SWITCHOVER  SWITCHOVER (the digest the target checks)        source -> target
COMMIT      COMMIT                                           source -> target
COMMIT_ACK  COMMIT_ACK                                       target -> source
=========== ================================================ =================

Kinds, from the trigger message's first flit on: ``burst`` (an 8-bit error burst in each of
the next ``FLITS_HIT`` flits), ``drop``, ``duplicate`` and ``delay`` (those flits lost,
delivered twice, or each holding the wire 1-8 cycles), ``down_short`` / ``down_long`` (both
wires down for a quarter of, or longer than, the handshake timeout), ``corrupt`` (one bit
of the state data — a STATE_DATA word, or SWITCHOVER's digest — flipped with the link CRC
recomputed: only the migration protocol's own chunk CRC or image digest can catch it; no
such cell for BEGIN, COMMIT, COMMIT_ACK, which carry no state).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from model.common import ParameterError
from model.link import (
    SEQ_MASK,
    FaultConfig,
    Flit,
    FrameKind,
    TrafficClass,
    crc32,
    flit_lanes,
    seq_distance,
    unpack_link_header,
    words_to_flits,
)
from model.protocol import MsgType, unpack_header

__all__ = ["KINDS", "PHASES", "TRIGGERS", "PhaseFault", "PhaseFaultInjector", "applicable",
           "parse_faults"]

FLITS_HIT = 3        # burst / drop / duplicate: this many flits from the trigger's first


# phase -> (the message that opens it, its wire: "out" source -> target, "back" the other)
TRIGGERS = {"BEGIN": (MsgType.BEGIN, "out"), "PRECOPY": (MsgType.STATE_DATA, "out"),
            "RESIDUAL": (MsgType.STATE_DATA, "out"), "SWITCHOVER": (MsgType.SWITCHOVER, "out"),
            "COMMIT": (MsgType.COMMIT, "out"), "COMMIT_ACK": (MsgType.COMMIT_ACK, "back")}
PHASES = tuple(TRIGGERS)
KINDS = ("burst", "drop", "duplicate", "delay", "down_short", "down_long", "corrupt")
STATE_PHASES = ("PRECOPY", "RESIDUAL", "SWITCHOVER")   # the phases that carry state data


def applicable(kind: str, phase: str) -> bool:
    """Whether the cell exists: ``corrupt`` needs state data in the phase."""
    return kind != "corrupt" or phase in STATE_PHASES


@dataclass(frozen=True)
class PhaseFault:
    step: int      # the plan step whose migration is hit
    phase: str     # one of PHASES
    kind: str      # one of KINDS

    def __post_init__(self):
        if self.step < 0:
            raise ParameterError(f"phase fault step must be >= 0, not {self.step}")
        if self.phase not in PHASES:
            raise ParameterError(f"unknown phase {self.phase!r}: phases are {', '.join(PHASES)}")
        if self.kind not in KINDS:
            raise ParameterError(f"unknown fault kind {self.kind!r}: kinds are "
                                 f"{', '.join(KINDS)}")
        if not applicable(self.kind, self.phase):
            raise ParameterError(f"fault kind corrupt needs state data: phase {self.phase} "
                                 f"carries none (use one of {', '.join(STATE_PHASES)})")

    def __str__(self) -> str:
        return f"{self.step}:{self.phase}:{self.kind}"


def parse_faults(text: str) -> tuple[PhaseFault, ...]:
    """``"0:BEGIN:drop,2:COMMIT:down_long"`` -> PhaseFaults; ParameterError names the item."""
    faults = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        parts = item.split(":")
        if len(parts) != 3 or not parts[0].isdigit():
            raise ParameterError(f"phase fault {item!r} is not STEP:PHASE:KIND")
        faults.append(PhaseFault(int(parts[0]), parts[1].upper(), parts[2].lower()))
    return tuple(faults)


class MessageTap:
    """Reads the VF Migration messages a transmitter starts, one flit at a time.

    A new DATA frame (the next sequence number: replays are skipped) of the migration class
    whose previous frame ended a message starts a message; its first flit carries the link
    header and the message header (type, VF)."""

    def __init__(self, words_per_flit: int):
        self.words_per_flit = words_per_flit
        self.next_seq: int | None = None
        self.at_start = {tc: True for tc in TrafficClass}

    def start_of(self, flit: Flit | None) -> tuple[dict, dict] | None:
        """(link header, message header) when ``flit`` starts a migration message."""
        if flit is None or not flit.sop:
            return None
        lanes = flit_lanes(flit.data, self.words_per_flit)
        head = unpack_link_header(lanes[0])
        if head["kind"] != FrameKind.DATA:
            return None
        if self.next_seq is not None and seq_distance(self.next_seq, head["seq"]) != 0:
            return None                                   # a replay of an older packet
        self.next_seq = (head["seq"] + 1) & SEQ_MASK
        starts, self.at_start[head["tc"]] = self.at_start[head["tc"]], bool(head["eom"])
        if not starts or head["tc"] != TrafficClass.MIG:
            return None
        return head, unpack_header(lanes[1])


class CorruptFrame:
    """Flips one bit of word ``word`` (0 = link header) of the frame starting now and
    rewrites its LCRC to match, flit by flit as the frame goes by."""

    def __init__(self, words_per_flit: int, length: int, word: int):
        self.W, self.length, self.word = words_per_flit, length, word
        self.words: list[int] = []

    def edit(self, flit: Flit) -> tuple[Flit, bool]:
        """The flit as sent; True once the frame's last flit went by."""
        lanes = flit_lanes(flit.data, self.W)
        first = len(self.words)
        for i, _ in enumerate(lanes):
            at = first + i
            if at == self.word:
                lanes[i] ^= 1
            if at == self.length + 1:                     # the LCRC
                lanes[i] = crc32(self.words[:self.length + 1])
            self.words.append(lanes[i])
        done = len(self.words) >= self.length + 2
        return Flit(flit.sop, words_to_flits(lanes, self.W)[0]), done


class PhaseFaultInjector:
    """Fires each ``PhaseFault`` once, when its phase starts for the VF its step moves.

    ``arm(step, vf, source)`` as the plan step starts (``source``: "h2o" when the VF moves
    from the host); ``stop_copy(step)`` as the VMM requests STOP_COPY (RESIDUAL waits for
    it).  ``fired`` records, per step, the message it fired on and the cycle; each of
    ``on_fire`` is called with the fault as it fires (what the scenario does in the same
    phase, such as VMs that stop taking interrupts)."""

    def __init__(self, link, faults: tuple[PhaseFault, ...], timeout_cycles: int):
        self.link, self.timeout = link, timeout_cycles
        self.faults = {f.step: f for f in faults}
        self.armed: dict[str, tuple[PhaseFault, int]] = {}     # wire -> (fault, vf)
        self.waiting_stop_copy: dict[int, tuple[str, int]] = {}
        self.fired: dict[int, dict] = {}
        self.on_fire: list = []
        self.forced: dict[str, tuple[FaultConfig, int]] = {}   # wire -> (saved, flits left)
        self.corrupting: dict[str, CorruptFrame] = {}
        self.taps = {}
        for name, lane in link.lanes.items():
            self.taps[name] = MessageTap(lane.channel.link_width // 32)
            lane.tap = self._tap_of(name)

    def arm(self, step: int, vf: int, source: str) -> None:
        fault = self.faults.get(step)
        if fault is None:
            return
        out = source
        wire = out if TRIGGERS[fault.phase][1] == "out" else _other(out)
        if fault.phase == "RESIDUAL":
            self.waiting_stop_copy[step] = (wire, vf)
        else:
            self.armed[wire] = (fault, vf)

    def stop_copy(self, step: int) -> None:
        if step in self.waiting_stop_copy:
            wire, vf = self.waiting_stop_copy.pop(step)
            self.armed[wire] = (self.faults[step], vf)

    def report(self) -> list[dict]:
        """Per fault: the fault, and where and when it fired (None: it never did)."""
        return [{"fault": str(f), "fired": self.fired.get(f.step)}
                for f in self.faults.values()]

    def problems(self) -> list[str]:
        """A fault that never fired tested nothing: a problem of the run."""
        return [f"phase fault {f} never fired (its phase never started for the VF of step "
                f"{f.step})" for f in self.faults.values() if f.step not in self.fired]

    def _tap_of(self, wire: str):
        return lambda flit: self._pass(wire, flit)

    def _pass(self, wire: str, flit: Flit | None) -> Flit | None:
        """What the transmitter of ``wire`` drove, as the faulty channel is to get it."""
        self._release(wire, flit)
        message = self.taps[wire].start_of(flit)
        armed = self.armed.get(wire)
        if message and armed and self._opens(armed[0], armed[1], message[1]):
            del self.armed[wire]
            self._fire(wire, armed[0], message)
        frame = self.corrupting.get(wire)
        if frame is not None and flit is not None:
            flit, done = frame.edit(flit)
            if done:
                del self.corrupting[wire]
        return flit

    @staticmethod
    def _opens(fault: PhaseFault, vf: int, msg: dict) -> bool:
        if msg["vf"] != vf:
            return False
        if fault.phase == "RESIDUAL":
            return msg["type"] in (MsgType.STATE_DATA, MsgType.SWITCHOVER)
        return msg["type"] == TRIGGERS[fault.phase][0]

    def _fire(self, wire: str, fault: PhaseFault, message: tuple[dict, dict]) -> None:
        head, msg = message
        channel = self.link.lanes[wire].channel
        self.fired[fault.step] = {"fault": str(fault), "wire": wire, "cycle": channel.cycle,
                                  "message": MsgType(msg["type"]).name}
        self.link.log.info("phase fault %s fires on %s at wire cycle %d (%s)", fault,
                           MsgType(msg["type"]).name, channel.cycle, wire)
        for hook in self.on_fire:
            hook(fault)
        if fault.kind in ("down_short", "down_long"):
            self.link.link_down(self.timeout // 4 if fault.kind == "down_short"
                                else self.timeout + self.timeout // 4)
        elif fault.kind == "corrupt":
            # SWITCHOVER: its digest (message word 1); STATE_DATA: its first state word
            word = 2 if msg["type"] == MsgType.SWITCHOVER else 3
            self.corrupting[wire] = CorruptFrame(self.taps[wire].words_per_flit,
                                                 head["length"], word)
        else:
            rate = {"burst": "burst_rate", "drop": "drop_rate", "duplicate": "dup_rate",
                    "delay": "delay_rate"}
            saved = channel.faults
            channel.configure(replace(saved, **{rate[fault.kind]: 1.0}))
            self.forced[wire] = (saved, FLITS_HIT - 1)   # the trigger's flit is the first

    def _release(self, wire: str, flit: Flit | None) -> None:
        """Count the flits a forced fault still hits; restore the faults after the last."""
        if wire not in self.forced or flit is None:
            return
        saved, left = self.forced[wire]
        if left == 0:
            self.link.lanes[wire].channel.configure(saved)
            del self.forced[wire]
        else:
            self.forced[wire] = (saved, left - 1)


def _other(wire: str) -> str:
    return {"h2o": "o2h", "o2h": "h2o"}[wire]
