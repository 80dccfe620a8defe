"""The link layer (docs/design.md `link`): frames, LCRC-32, ACK/NAK and flow-control DLLPs, and a
golden model of a link port (transmitter + receiver of one device), a faulty-wire model
and a delivery scoreboard.

The transaction layer hands the link *messages* (32-bit words, the last one flagged) on one
stream per traffic class. A link port cuts each message into *packets* of at most
``max_payload_words`` words and sends every packet as a *frame* on its TX wire:

    word 0        link header (``LINK_HEADER_FIELDS``): kind, tc, eom, seq, length
    words 1..L    the packet's payload (L = length words of the message)
    word L+1      LCRC: ``model.protocol.crc32`` of words 0..L

packed ``link_width // 32`` words per flit, word i in lane ``i % W`` of flit ``i // W``
(lane j = flit bits [32j, 32j+32)), lanes after the LCRC zero. The first flit of a frame has
``sop`` set on the wire: the wire is ``valid``, ``sop`` and ``flit``. DLLPs are frames of
length 0 (header + LCRC): ACK and NAK (seq = the last packet received in order) and FC
(seq field = the receive buffer's credit limit of traffic class ``tc``, in buffer rows).

Reliability is go-back-N as in PCIe: the receiver accepts only the next expected sequence
number with a good LCRC, drops duplicates (and ACKs them again), NAKs a bad frame or a
sequence gap once, and the transmitter replays every unacknowledged packet on a NAK or when
its replay timer expires. Flow control is credit based, per traffic class, so a stalled
consumer of one class never blocks the other: a transmitter starts a packet only while the
receiver's advertised credit limit covers a maximum-size packet.

Everything here is plain Python: the HDL (hdl/link/) takes its field positions and
parameter checks from this module, and the benches use the models to check it.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from .common import check_int, pack_fields, unpack_fields
from .protocol import DEFAULT_CHUNK_WORDS, HEADER_WORDS, MASK32, crc32

WORD_BITS = 32
LINK_WIDTHS = (32, 64, 128, 256)

# (lsb, width) of each field of the link header word.
LINK_HEADER_FIELDS = {"kind": (0, 2), "tc": (2, 1), "eom": (3, 1), "seq": (4, 12),
                      "length": (16, 16)}
SEQ_BITS = LINK_HEADER_FIELDS["seq"][1]
SEQ_MOD = 1 << SEQ_BITS
SEQ_MASK = SEQ_MOD - 1

# One STATE_DATA message of the default chunk (2 header words + payload + CRC word) fits one
# packet, so migration data pays one header and one LCRC per chunk.
DEFAULT_MAX_PAYLOAD = DEFAULT_CHUNK_WORDS + HEADER_WORDS + 1
MAX_PAYLOAD_LIMIT = 1023
MAX_RX_BUFFER_FLITS = 1024      # credit limits are compared modulo 2**SEQ_BITS
MAX_REPLAY_SLOTS = 256
MAX_MIG_SHARE = 255
MAX_REPLAY_TIMEOUT = 65535


class FrameKind(IntEnum):
    DATA = 0   # a packet of a message
    ACK = 1    # DLLP: every packet up to and including seq was received
    NAK = 2    # DLLP: as ACK, and replay everything after seq
    FC = 3     # DLLP: credit limit (seq field) of the receive buffer of class tc


class TrafficClass(IntEnum):
    IO = 0     # VF requests, responses and interrupts of VFs placed on the offload device
    MIG = 1    # the VF Migration protocol


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True)
class LinkParams:
    """Elaboration parameters of a link port, validated once here (hdl/link/ raises these
    messages). Both ports of a link must be built with the same parameters."""

    link_width: int = 64
    replay_slots: int = 8
    replay_timeout: int | None = None     # default: 4 max frames + 64 cycles
    mig_share: int = 4
    max_payload_words: int = DEFAULT_MAX_PAYLOAD
    rx_buffer_flits: int | None = None    # default: the power of two >= 3 max packets

    def __post_init__(self):
        for name in ("link_width", "replay_slots", "mig_share", "max_payload_words"):
            check_int("LinkPort", name, getattr(self, name), None)
        if self.link_width not in LINK_WIDTHS:
            raise ValueError(f"LinkPort link_width must be one of "
                             f"{', '.join(map(str, LINK_WIDTHS))} bits, not {self.link_width}")
        if not 1 <= self.max_payload_words <= MAX_PAYLOAD_LIMIT:
            raise ValueError(f"LinkPort max_payload_words must be in [1, {MAX_PAYLOAD_LIMIT}], "
                             f"not {self.max_payload_words}")
        if not (_pow2(self.replay_slots) and 2 <= self.replay_slots <= MAX_REPLAY_SLOTS):
            raise ValueError(f"LinkPort replay_slots must be a power of two in "
                             f"[2, {MAX_REPLAY_SLOTS}], not {self.replay_slots}")
        if not 1 <= self.mig_share <= MAX_MIG_SHARE:
            raise ValueError(f"LinkPort mig_share must be in [1, {MAX_MIG_SHARE}] (TC_MIG "
                             f"packets per TC_IO packet when both wait), not {self.mig_share}")
        if self.rx_buffer_flits is None:
            default = 1 << (3 * self.slot_rows - 1).bit_length()
            object.__setattr__(self, "rx_buffer_flits", max(default, 2 * self.slot_rows))
        rx = check_int("LinkPort", "rx_buffer_flits", self.rx_buffer_flits, None)
        if not (_pow2(rx) and 2 * self.slot_rows <= rx <= MAX_RX_BUFFER_FLITS):
            raise ValueError(f"LinkPort rx_buffer_flits must be a power of two in "
                             f"[{2 * self.slot_rows}, {MAX_RX_BUFFER_FLITS}] (at least two "
                             f"maximum packets of {self.slot_rows} rows), not {rx}")
        if self.replay_timeout is None:
            object.__setattr__(self, "replay_timeout", 4 * self.max_frame_flits + 64)
        timeout = check_int("LinkPort", "replay_timeout", self.replay_timeout, None)
        if not self.min_replay_timeout <= timeout <= MAX_REPLAY_TIMEOUT:
            raise ValueError(f"LinkPort replay_timeout must be in [{self.min_replay_timeout}, "
                             f"{MAX_REPLAY_TIMEOUT}] cycles (at least two maximum frames "
                             f"and 16 cycles), not {timeout}")

    @property
    def words_per_flit(self) -> int:
        return self.link_width // WORD_BITS

    def store_rows(self, length: int) -> int:
        """Flits of a packet of ``length`` words that hold header or payload (the rows a
        receive buffer stores; a final flit with only the LCRC is not stored)."""
        return _ceil_div(length + 1, self.words_per_flit)

    def frame_flits(self, length: int) -> int:
        """Flits on the wire for a frame of ``length`` payload words (0: a DLLP)."""
        return _ceil_div(length + 2, self.words_per_flit)

    @property
    def slot_rows(self) -> int:
        """Rows of one replay-buffer slot = stored rows of a maximum packet (also the credit
        a transmitter must see before it starts a packet)."""
        return self.store_rows(self.max_payload_words)

    @property
    def max_frame_flits(self) -> int:
        return self.frame_flits(self.max_payload_words)

    @property
    def min_replay_timeout(self) -> int:
        return 2 * self.max_frame_flits + 16

    @property
    def fc_refresh(self) -> int:
        """Cycles between repeats of both FC DLLPs (credit limits are absolute, so a
        repeat repairs a lost one); long, because each repeat costs wire flits."""
        return 8 * self.replay_timeout

    @property
    def fc_threshold(self) -> int:
        """Freed rows that make a receiver send an FC DLLP before its refresh timer."""
        return max(1, self.slot_rows // 2)

    def segments(self, n_words: int) -> list[int]:
        """Payload lengths of the packets a message of ``n_words`` words becomes."""
        if n_words < 1:
            raise ValueError("a message has at least one word")
        full, rest = divmod(n_words, self.max_payload_words)
        return [self.max_payload_words] * full + ([rest] if rest else [])

    def message_flits(self, n_words: int) -> int:
        return sum(self.frame_flits(n) for n in self.segments(n_words))

    def ideal_goodput(self, payload_words: int, message_words: int) -> float:
        """``payload_words`` per flit capacity for one message of ``message_words`` words
        with no errors and no DLLPs on its wire: the framing bound."""
        return payload_words / (self.message_flits(message_words) * self.words_per_flit)


# ---------------------------------------------------------------- header and frames
def pack_link_header(kind: int, tc: int = 0, eom: int = 0, seq: int = 0,
                     length: int = 0) -> int:
    return pack_fields("link header", LINK_HEADER_FIELDS, kind=kind, tc=tc, eom=eom, seq=seq,
                       length=length)


def unpack_link_header(word: int) -> dict[str, int]:
    return unpack_fields(LINK_HEADER_FIELDS, word)


def frame_words(kind: int, tc: int = 0, eom: int = 0, seq: int = 0,
                payload: Sequence[int] = ()) -> list[int]:
    """Header, payload and LCRC of one frame."""
    words = [pack_link_header(kind, tc, eom, seq, len(payload)), *(w & MASK32 for w in payload)]
    return words + [crc32(words)]


def words_to_flits(words: Sequence[int], words_per_flit: int) -> list[int]:
    flits = []
    for start in range(0, len(words), words_per_flit):
        flits.append(sum((w & MASK32) << (WORD_BITS * j)
                         for j, w in enumerate(words[start:start + words_per_flit])))
    return flits


def flit_lanes(flit: int, words_per_flit: int) -> list[int]:
    return [(flit >> (WORD_BITS * j)) & MASK32 for j in range(words_per_flit)]


@dataclass(frozen=True)
class Flit:
    """One valid flit on a wire (an idle cycle is ``None``)."""
    sop: int
    data: int


def frame_to_flits(words: Sequence[int], words_per_flit: int) -> list[Flit]:
    return [Flit(int(i == 0), f) for i, f in enumerate(words_to_flits(words, words_per_flit))]


@dataclass(frozen=True)
class Frame:
    """A frame as a receiver framed it: ``ok`` when the header made sense and the LCRC
    matched; a frame cut short by the next ``sop`` is not ok (``truncated``)."""
    ok: bool
    kind: int
    tc: int
    eom: int
    seq: int
    length: int
    payload: tuple[int, ...]
    truncated: bool = False
    malformed: bool = False


def header_malformed(head: dict[str, int], max_payload_words: int) -> bool:
    if head["kind"] == FrameKind.DATA:
        return not 1 <= head["length"] <= max_payload_words
    return head["length"] != 0


class FrameParser:
    """Frames the flits of one wire exactly as a receiver does: a flit with ``sop`` starts a
    frame (cutting short an unfinished one), the header's length gives the frame's flit
    count, flits outside a frame are ignored. ``push`` returns the frames it finished."""

    def __init__(self, params: LinkParams):
        self.params = params
        self._words: list[int] = []
        self._head: dict[str, int] | None = None
        self._flits_left = 0
        self.ignored_flits = 0

    def _cut(self) -> Frame | None:
        if self._head is None:
            return None
        head = self._head
        self._head = None
        return Frame(False, head["kind"], head["tc"], head["eom"], head["seq"], head["length"],
                     (), truncated=True)

    def push(self, flit: Flit) -> list[Frame]:
        W = self.params.words_per_flit
        done: list[Frame] = []
        lanes = flit_lanes(flit.data, W)
        if flit.sop:
            cut = self._cut()
            if cut:
                done.append(cut)
            head = unpack_link_header(lanes[0])
            if header_malformed(head, self.params.max_payload_words):
                done.append(Frame(False, head["kind"], head["tc"], head["eom"], head["seq"],
                                  head["length"], (), malformed=True))
                return done
            self._head, self._words = head, []
            self._flits_left = self.params.frame_flits(head["length"])
        elif self._head is None:
            self.ignored_flits += 1
            return done
        self._words += lanes
        self._flits_left -= 1
        if self._flits_left == 0:
            head, n = self._head, self._head["length"]
            self._head = None
            words = self._words[:n + 2]
            ok = words[n + 1] == crc32(words[:n + 1])
            done.append(Frame(ok, head["kind"], head["tc"], head["eom"], head["seq"], n,
                              tuple(words[1:n + 1])))
        return done


def seq_distance(a: int, b: int) -> int:
    """(b - a) modulo the sequence space."""
    return (b - a) & SEQ_MASK


# ---------------------------------------------------------------- golden port model
class LinkPortModel:
    """Transmitter and receiver of one device, one flit per ``step`` (one cycle).

    Same rules as hdl/link/ (store-and-forward fill at one word per cycle, a shared
    sequence space for both classes, go-back-N replay, per-class credits, DLLPs before
    packets at frame boundaries); cycle timing is close to but not exactly the HDL's.
    ``send(tc, words)`` queues a message, ``delivered[tc]`` collects received messages.
    """

    def __init__(self, params: LinkParams | None = None):
        self.p = params or LinkParams()
        p = self.p
        self.inputs: list[deque[int | None]] = [deque(), deque()]   # None marks a message end
        self.delivered: list[list[list[int]]] = [[], []]
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        # transmitter
        self.slots: dict[int, list[int]] = {}        # seq -> frame words
        self.fill: list[int] | None = None
        self.fill_tc = 0
        self.fill_seq = self.send_seq = self.ack_seq = self.tx_hi = 0
        self.mig_streak = 0
        self.limit = [0, 0]
        self.consumed = [0, 0]
        self.timer = 0
        self.sending: list[Flit] = []
        self.sending_seq: int | None = None
        # receiver
        self.parser = FrameParser(p)
        self.expected = 0
        self.ack_pending = False
        self.nak_pending = False
        self.nak_scheduled = False
        self.rx_rows = [0, 0]            # stored rows per class not yet read
        self.rx_packets: list[deque[tuple[list[int], int, int]]] = [deque(), deque()]
        self.freed = [0, 0]              # rows read out, cumulative (mod SEQ_MOD)
        self.fc_sent = [0, 0]
        self.fc_due = [True, True]
        self.fc_timer = 0
        self.partial: list[list[int]] = [[], []]
        self.reading: list[list[int] | None] = [None, None]

    # -- transaction-layer side
    def send(self, tc: int, words: Sequence[int]) -> None:
        if not words:
            raise ValueError("a message has at least one word")
        self.inputs[tc].extend(w & MASK32 for w in words)
        self.inputs[tc].append(None)

    def idle(self) -> bool:
        """Nothing queued, filling, unacknowledged or waiting to be read."""
        return (not any(self.inputs) and self.fill is None and self.ack_seq == self.fill_seq
                and not any(self.rx_packets) and self.reading == [None, None])

    # -- one cycle
    def step(self, rx: Flit | None, ready: Sequence[bool] = (True, True)) -> Flit | None:
        if rx is not None:
            for frame in self.parser.push(rx):
                self._receive(frame)
        self._read(ready)
        self._fill_step()
        self._timer_step()
        return self._send_step()

    # -- receiver
    def _request_nak(self) -> None:
        if not self.nak_scheduled:
            self.nak_pending = self.nak_scheduled = True

    def _receive(self, f: Frame) -> None:
        p = self.p
        if not f.ok:
            self.stats["rx_crc_errors"] += 1
            if f.kind == FrameKind.DATA:
                self._request_nak()
            return
        if f.kind == FrameKind.DATA:
            d = seq_distance(self.expected, f.seq)
            rows = p.store_rows(f.length)
            if d == 0:
                if self.rx_rows[f.tc] + rows > p.rx_buffer_flits:
                    self.stats["rx_overflows"] += 1
                    return
                self.rx_rows[f.tc] += rows
                self.rx_packets[f.tc].append((list(f.payload), f.eom, rows))
                self.expected = (self.expected + 1) & SEQ_MASK
                self.ack_pending, self.nak_scheduled = True, False
                self.stats["rx_packets"] += 1
            elif d >= SEQ_MOD // 2:
                self.ack_pending = True
                self.stats["rx_duplicates"] += 1
            else:
                self.stats["rx_seq_errors"] += 1
                self._request_nak()
        elif f.kind in (FrameKind.ACK, FrameKind.NAK):
            self._ack(f.seq, f.kind == FrameKind.NAK)
        else:
            if seq_distance(self.consumed[f.tc], f.seq) <= p.rx_buffer_flits:
                self.limit[f.tc] = f.seq

    def _read(self, ready: Sequence[bool]) -> None:
        """One word per class and cycle to the consumer (when it is ready)."""
        for tc in (0, 1):
            if self.reading[tc] is None and self.rx_packets[tc]:
                payload, eom, rows = self.rx_packets[tc].popleft()
                self.rx_rows[tc] -= rows
                self.freed[tc] = (self.freed[tc] + rows) & SEQ_MASK
                self.reading[tc] = payload + ([None] if eom else [])
            if self.reading[tc] is not None and ready[tc]:
                self.partial[tc].append(self.reading[tc].pop(0))
                if self.reading[tc] and self.reading[tc][0] is None:
                    self.delivered[tc].append(self.partial[tc])
                    self.partial[tc] = []
                    self.reading[tc].pop(0)
                if not self.reading[tc]:
                    self.reading[tc] = None

    # -- transmitter
    def _ack(self, seq: int, nak: bool) -> None:
        through = (seq + 1) & SEQ_MASK
        dist = seq_distance(self.ack_seq, through)
        if dist > seq_distance(self.ack_seq, self.tx_hi):
            return
        if nak:
            self.stats["naks_received"] += 1
        for s in range(dist):
            self.slots.pop((self.ack_seq + s) & SEQ_MASK, None)
        if dist:
            self.timer = 0
        self.ack_seq = through
        if seq_distance(self.ack_seq, self.send_seq) > self.p.replay_slots:
            self.send_seq = self.ack_seq
        if nak:
            self._replay()

    def _replay(self) -> None:
        self.send_seq = self.ack_seq
        self.timer = 0

    def _credit_ok(self, tc: int) -> bool:
        return seq_distance(self.consumed[tc], self.limit[tc]) >= self.p.slot_rows

    def _fill_step(self) -> None:
        p = self.p
        if self.fill is None:
            if seq_distance(self.ack_seq, self.fill_seq) >= p.replay_slots:
                return
            want = [bool(self.inputs[tc]) and self._credit_ok(tc) for tc in (0, 1)]
            if not any(want):
                return
            tc = int(want[1] and (not want[0] or self.mig_streak < p.mig_share))
            self.mig_streak = min(self.mig_streak + 1, p.mig_share) if tc else 0
            self.fill, self.fill_tc = [], tc
            return
        queue = self.inputs[self.fill_tc]
        self.fill.append(queue.popleft())
        eom = queue[0] is None
        if eom or len(self.fill) == p.max_payload_words:
            if eom:
                queue.popleft()
            seq = self.fill_seq
            self.slots[seq] = frame_words(FrameKind.DATA, self.fill_tc, int(eom), seq, self.fill)
            self.consumed[self.fill_tc] = (self.consumed[self.fill_tc]
                                           + p.store_rows(len(self.fill))) & SEQ_MASK
            self.fill_seq = (seq + 1) & SEQ_MASK
            self.fill = None

    def _timer_step(self) -> None:
        self.fc_timer += 1
        if self.fc_timer >= self.p.fc_refresh:
            self.fc_timer = 0
            self.fc_due = [True, True]
        if self.ack_seq == self.tx_hi:
            self.timer = 0
        elif self.sending_seq is None:    # held while a packet is on the wire
            self.timer += 1
            if self.timer >= self.p.replay_timeout:
                self.stats["tx_timeouts"] += 1
                self._replay()

    def _next_frame(self) -> list[Flit] | None:
        p = self.p
        last_good = (self.expected - 1) & SEQ_MASK
        if self.nak_pending:
            self.nak_pending = self.ack_pending = False
            self.stats["naks_sent"] += 1
            return frame_to_flits(frame_words(FrameKind.NAK, seq=last_good), p.words_per_flit)
        if self.ack_pending:
            self.ack_pending = False
            return frame_to_flits(frame_words(FrameKind.ACK, seq=last_good), p.words_per_flit)
        for tc in (0, 1):
            advertised = (self.freed[tc] + p.rx_buffer_flits) & SEQ_MASK
            if self.fc_due[tc] or seq_distance(self.fc_sent[tc], advertised) >= p.fc_threshold:
                self.fc_due[tc] = False
                self.fc_sent[tc] = advertised
                return frame_to_flits(frame_words(FrameKind.FC, tc=tc, seq=advertised),
                                      p.words_per_flit)
        if self.send_seq != self.fill_seq:
            seq = self.send_seq
            if seq == self.tx_hi:
                self.tx_hi = (seq + 1) & SEQ_MASK
                self.stats["tx_packets"] += 1
            else:
                self.stats["tx_replays"] += 1
            self.send_seq = (seq + 1) & SEQ_MASK
            self.sending_seq = seq
            return frame_to_flits(self.slots[seq], p.words_per_flit)
        return None

    def _send_step(self) -> Flit | None:
        if not self.sending:
            self.sending_seq = None
            frame = self._next_frame()
            if frame is None:
                return None
            self.sending = frame
        flit = self.sending.pop(0)
        self.stats["tx_flits"] += 1
        if not self.sending:
            self.sending_seq = None
        return flit


STAT_NAMES = ("tx_flits", "tx_packets", "tx_replays", "tx_timeouts", "naks_received",
              "rx_packets", "rx_crc_errors", "rx_seq_errors", "rx_duplicates", "naks_sent",
              "rx_overflows")


# ---------------------------------------------------------------- the wire and its faults
@dataclass(frozen=True)
class FaultConfig:
    """Faults of one wire. Rates are per valid flit except ``ber`` (per bit, over the flit
    and its ``sop`` bit); ``down`` lists (first cycle, cycles) windows in which every flit
    is lost; a delay holds the wire (and every flit behind it) for 1..``delay_max`` cycles."""

    ber: float = 0.0
    burst_rate: float = 0.0
    burst_bits: int = 8
    drop_rate: float = 0.0
    dup_rate: float = 0.0
    delay_rate: float = 0.0
    delay_max: int = 8
    down: tuple[tuple[int, int], ...] = ()

    def __post_init__(self):
        for name in ("ber", "burst_rate", "drop_rate", "dup_rate", "delay_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FaultConfig.{name} must be a probability in [0, 1], "
                                 f"not {value!r}")
        if self.burst_bits < 1 or self.delay_max < 1:
            raise ValueError("FaultConfig.burst_bits and delay_max must be >= 1")
        object.__setattr__(self, "down", tuple(tuple(w) for w in self.down))


@dataclass
class FaultCounts:
    flits: int = 0
    bit_flips: int = 0
    flipped_flits: int = 0
    bursts: int = 0
    dropped: int = 0
    duplicated: int = 0
    delays: int = 0
    down_lost: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class FaultyWire:
    """One direction of the wire with seeded faults; ``step(cycle, flit)`` takes what the
    transmitter drives in a cycle and returns what the receiver sees (order is kept: a
    duplicate or a delay pushes the later flits back)."""

    def __init__(self, link_width: int, faults: FaultConfig | None = None,
                 rng: random.Random | None = None):
        self.bits = link_width + 1            # the flit and its sop bit
        self.link_width = link_width
        self.faults = faults or FaultConfig()
        self.rng = rng or random.Random(0)
        self.queue: deque[Flit] = deque()
        self.stall = 0
        self.counts = FaultCounts()
        self._to_next_error = self._draw_gap()

    def _draw_gap(self) -> int:
        ber = self.faults.ber
        if ber <= 0.0:
            return 1 << 62
        if ber >= 1.0:
            return 0
        return int(math.log(1.0 - self.rng.random()) / math.log(1.0 - ber))

    def is_down(self, cycle: int) -> bool:
        return any(start <= cycle < start + length for start, length in self.faults.down)

    def corrupt(self, flit: Flit) -> Flit:
        value = flit.data | flit.sop << self.link_width
        mask = 0
        remaining = self.bits
        while self._to_next_error < remaining:
            mask ^= 1 << (self.bits - remaining + self._to_next_error)
            remaining -= self._to_next_error + 1
            self._to_next_error = self._draw_gap()
        self._to_next_error -= remaining
        f = self.faults
        if f.burst_rate and self.rng.random() < f.burst_rate:
            start = self.rng.randrange(self.bits)
            for bit in range(start, min(self.bits, start + f.burst_bits)):
                mask ^= 1 << bit
            self.counts.bursts += 1
        if mask:
            self.counts.bit_flips += bin(mask).count("1")
            self.counts.flipped_flits += 1
            value ^= mask
        return Flit(value >> self.link_width & 1, value & ((1 << self.link_width) - 1))

    def step(self, cycle: int, flit: Flit | None) -> Flit | None:
        f, rng = self.faults, self.rng
        if flit is not None:
            self.counts.flits += 1
            if self.is_down(cycle):
                self.counts.down_lost += 1
            elif f.drop_rate and rng.random() < f.drop_rate:
                self.counts.dropped += 1
            else:
                flit = self.corrupt(flit)
                self.queue.append(flit)
                if f.dup_rate and rng.random() < f.dup_rate:
                    self.queue.append(flit)
                    self.counts.duplicated += 1
                if f.delay_rate and rng.random() < f.delay_rate:
                    self.stall += rng.randint(1, f.delay_max)
                    self.counts.delays += 1
        if self.stall:
            self.stall -= 1
            return None
        return self.queue.popleft() if self.queue else None


# ---------------------------------------------------------------- scoreboard
@dataclass
class DeliveryScoreboard:
    """Every message sent on (direction, tc) is delivered once, in order and intact."""

    expected: dict[tuple, deque] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    sent_count: int = 0
    delivered_count: int = 0

    def sent(self, key: tuple, words: Iterable[int]) -> None:
        self.expected.setdefault(key, deque()).append([w & MASK32 for w in words])
        self.sent_count += 1

    def delivered(self, key: tuple, words: Iterable[int]) -> None:
        words = [w & MASK32 for w in words]
        queue = self.expected.setdefault(key, deque())
        index = self.delivered_count
        self.delivered_count += 1
        if not queue:
            self.errors.append(f"{key}: message #{index} of {len(words)} words delivered but "
                               f"nothing outstanding (duplicate or spurious)")
            return
        want = queue.popleft()
        if words != want:
            first = next((i for i, (a, b) in enumerate(zip(words, want, strict=False)) if a != b),
                         min(len(words), len(want)))
            self.errors.append(f"{key}: delivered message differs from the next one sent "
                               f"({len(words)} vs {len(want)} words, first difference at "
                               f"word {first}): lost, reordered or corrupted")

    def outstanding(self) -> int:
        return sum(len(q) for q in self.expected.values())

    def problems(self) -> list[str]:
        missing = [f"{key}: {len(q)} messages never delivered"
                   for key, q in self.expected.items() if q]
        return self.errors + missing


def run_model_pair(params: LinkParams, messages: Sequence[tuple[int, int, Sequence[int]]],
                   faults: FaultConfig | None = None, seed: int = 0,
                   max_cycles: int = 200_000,
                   ready: Callable[[int, int, int], bool] | None = None
                   ) -> tuple[DeliveryScoreboard, int, list[LinkPortModel], list[FaultyWire]]:
    """Two ``LinkPortModel``s joined by two ``FaultyWire``s; ``messages`` are
    (sending port 0/1, tc, words). ``ready(port, tc, cycle)`` is the consumers'
    backpressure. Returns the scoreboard, the cycles it took, the ports and the wires."""
    rng = random.Random(seed)
    ports = [LinkPortModel(params), LinkPortModel(params)]
    wires = [FaultyWire(params.link_width, faults, random.Random(rng.getrandbits(32)))
             for _ in range(2)]
    board = DeliveryScoreboard()
    for src, tc, words in messages:
        ports[src].send(tc, words)
        board.sent((src, tc), words)
    seen = [[0, 0], [0, 0]]
    out: list[Flit | None] = [None, None]
    cycle = 0
    while cycle < max_cycles:
        arriving = [wires[0].step(cycle, out[0]), wires[1].step(cycle, out[1])]
        for dst in (0, 1):
            r = [ready(dst, tc, cycle) if ready else True for tc in (0, 1)]
            out[dst] = ports[dst].step(arriving[1 - dst], r)
            for tc in (0, 1):
                while seen[dst][tc] < len(ports[dst].delivered[tc]):
                    board.delivered((1 - dst, tc), ports[dst].delivered[tc][seen[dst][tc]])
                    seen[dst][tc] += 1
        cycle += 1
        if board.outstanding() == 0 and all(p.idle() for p in ports):
            break
    return board, cycle, ports, wires
