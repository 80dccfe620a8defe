"""A link port: the data-link layer of one device, PCIe-style.

A link joins two devices with two wires, one per direction; each device has one
``LinkPort`` that drives its TX wire and listens to its RX wire, so one direction of the
link is the transmitter of one port, a wire, and the receiver of the other port. The ACK,
NAK and flow-control DLLPs of a direction travel interleaved with the packets on the
*opposite* wire, as in PCIe: they see the same faults as data (a lost ACK is what the replay
timer is for), and the wire pair is the whole interface between the devices, so a test (or
the system top) can corrupt, drop, duplicate or delay anything that crosses.

Frame format, sequence numbers, LCRC, DLLPs and parameter checks: ``model/link.py`` (the
single source; docs/protocol.md is generated from it).

Transmitter: store-and-forward. Arbitration picks a message stream (TC_IO or TC_MIG) when a
replay slot is free and the receiver's credits cover a maximum packet; the fill copies up
to ``max_payload_words`` beats (one per cycle) into the slot and writes the header word
last (it holds the length). The sender reads slots from the replay buffer, one flit per
cycle, computes the LCRC on the way out, and puts DLLPs first at frame boundaries. Packets
stay in the replay buffer until acknowledged; a NAK or the replay timer restarts sending at
the oldest unacknowledged packet (go-back-N).

Receiver: frames start at a flit with ``sop``; a DATA frame is written into its class's
receive buffer as it arrives and committed only when its LCRC is good and its sequence
number is the next expected one, so nothing unchecked is ever delivered. Committed packets
are read out as ChunkBeat streams; rows read out are returned to the transmitter as
credits (FC DLLPs), per class, so a stalled consumer of one class never blocks the other.
"""

# No ``from __future__ import annotations``: wiring.Component reads the member annotations.
import dataclasses

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from model.link import DEFAULT_MAX_PAYLOAD, STAT_NAMES, LinkParams, TrafficClass

from ..formats import ChunkBeat
from .common import LinkStats, wire_signature
from .flow_control import DllpScheduler, LinkCredits
from .receiver import LinkReceiver, RxBuffer
from .transmitter import LinkTransmitter


class LinkPort(wiring.Component):
    """Transmitter and receiver of one device's end of the link.

    Parameters (validated by ``model.link.LinkParams``; both ports of a link must match)
    ----------
    link_width : 32, 64, 128 or 256 bits per flit (default 64: two words per flit).
    replay_slots : packets kept until acknowledged (power of two, default 8).
    replay_timeout : cycles without ACK progress, while not sending a packet, before the
        transmitter replays (default 4 maximum frames + 64; at least 2 frames + 16).
    mig_share : TC_MIG packets allowed per TC_IO packet while both wait (default 4), so
        migration cannot starve I/O; an idle class leaves the whole link to the other.
    max_payload_words : words per packet (default 67: one STATE_DATA message of the
        default 64-word chunk); longer messages are cut into several packets.
    rx_buffer_flits : receive buffer rows per class (power of two, at least two maximum
        packets; default: the next power of two of three maximum packets).

    Members
    -------
    io_in, mig_in : In(stream of ChunkBeat)
        Messages to send on TC_IO / TC_MIG; ``last`` ends a message.
    io_out, mig_out : Out(stream of ChunkBeat)
        Messages received from the other port, in order, each exactly once.
    tx : Out(wire_signature(link_width))
        This port's wire (frames and DLLPs), registered.
    rx : In(wire_signature(link_width))
        The other port's wire, registered on entry.
    stats : Out(LinkStats)
        Free-running 32-bit counters: tx_flits, tx_packets (first transmissions),
        tx_replays (packets sent again), tx_timeouts, naks_received, rx_packets (accepted
        in order), rx_crc_errors (bad LCRC, malformed header or cut-short frame),
        rx_seq_errors (sequence gaps), rx_duplicates, naks_sent, rx_overflows (an in-order
        packet without room: a credit violation, never expected).

    Latency (idle link, credits available): the first beat of a message leaves the other
    port's ``*_out`` ``L + F + 6`` cycles after this port accepted its first beat (``+ 7`` at
    ``link_width=32``), plus the wire's own latency; L = words of the message's first
    packet, F = its frame flits (``LinkParams.frame_flits``): the packet is stored, sent,
    checked, then read out at one word per cycle.

    Backpressure: on ``*_out`` it fills that class's receive buffer, whose credits stop the
    other port's transmitter for that class only; ``*_in`` is stalled while no replay slot
    or no credit for a maximum packet is free, and while the other class's packet fills.
    """

    def __init__(self, link_width: int = 64, replay_slots: int = 8,
                 replay_timeout: int | None = None, mig_share: int = 4,
                 max_payload_words: int = DEFAULT_MAX_PAYLOAD,
                 rx_buffer_flits: int | None = None):
        self.params = LinkParams(link_width=link_width, replay_slots=replay_slots,
                                 replay_timeout=replay_timeout, mig_share=mig_share,
                                 max_payload_words=max_payload_words,
                                 rx_buffer_flits=rx_buffer_flits)
        super().__init__({
            "io_in": In(stream.Signature(ChunkBeat)),
            "mig_in": In(stream.Signature(ChunkBeat)),
            "io_out": Out(stream.Signature(ChunkBeat)),
            "mig_out": Out(stream.Signature(ChunkBeat)),
            "tx": Out(wire_signature(link_width)),
            "rx": In(wire_signature(link_width)),
            "stats": Out(LinkStats),
        })

    @classmethod
    def for_system(cls, config) -> "LinkPort":
        """A port of the link of a ``model.config.SystemConfig`` system (``config.link``)."""
        return cls(**dataclasses.asdict(config.link))

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.transmitter = tx = LinkTransmitter(p)
        m.submodules.receiver = rx = LinkReceiver(p)
        m.submodules.dllp_scheduler = dllps = DllpScheduler(p)
        m.submodules.credits = credits = LinkCredits(p)
        buffers = [RxBuffer(p) for _ in TrafficClass]
        outputs = (self.io_out, self.mig_out)
        for tc in TrafficClass:
            buf = m.submodules[f"rx_buffer_{tc.name.lower()}"] = buffers[tc]
            m.d.comb += [buf.wr_en.eq(rx.wr_en[tc]), buf.wr_row.eq(rx.wr_row),
                         buf.wr_data.eq(rx.wr_data),
                         buf.commit.eq(rx.commit & (rx.commit_tc == tc)),
                         buf.commit_rows.eq(rx.commit_rows),
                         rx.used[tc].eq(buf.used), dllps.advertised[tc].eq(buf.advertised)]
            connect(m, buf.out, wiring.flipped(outputs[tc]))
        connect(m, wiring.flipped(self.io_in), tx.io_in)
        connect(m, wiring.flipped(self.mig_in), tx.mig_in)
        connect(m, tx.tx, wiring.flipped(self.tx))
        connect(m, wiring.flipped(self.rx), rx.rx)
        connect(m, dllps.dllp, tx.dllp)
        m.d.comb += [
            tx.ack.eq(rx.ack), tx.avail.eq(credits.avail),
            credits.fc.eq(rx.fc), credits.spend.eq(tx.spend), credits.spend_tc.eq(tx.spend_tc),
            credits.spend_rows.eq(tx.spend_rows),
            dllps.expected.eq(rx.expected), dllps.ack_request.eq(rx.ack_request),
            dllps.nak_request.eq(rx.nak_request), dllps.commit.eq(rx.commit),
        ]
        # Free-running counters: each part reports its increments as ``events``.
        bumps = {**{name: getattr(tx.events, name) for name in tx.events.shape().members},
                 **{name: getattr(rx.events, name) for name in rx.events.shape().members},
                 "naks_sent": dllps.naks_sent}
        for name in STAT_NAMES:
            counter = Signal(32, name=f"stat_{name}")
            m.d.sync += counter.eq(counter + bumps[name])
            m.d.comb += getattr(self.stats, name).eq(counter)
        return m


__all__ = ["LinkPort"]
