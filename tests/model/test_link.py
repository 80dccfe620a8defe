"""model/link.py: link header and frame encoding, flit packing, the receiver's framing rules,
the faulty-wire model, the scoreboard, and the golden port model under every fault type."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from model.link import (
    LINK_HEADER_FIELDS,
    SEQ_MOD,
    DeliveryScoreboard,
    FaultConfig,
    FaultyWire,
    Flit,
    FrameKind,
    FrameParser,
    LinkParams,
    flit_lanes,
    frame_to_flits,
    frame_words,
    pack_link_header,
    run_model_pair,
    seq_distance,
    unpack_link_header,
    words_to_flits,
)

SEED = 11


def _zlib(words):
    return zlib.crc32(struct.pack(f"<{len(words)}I", *words))


# ---------------------------------------------------------------- encoding
def test_header_fields_tile_one_word():
    bits = sorted((lsb, lsb + width) for lsb, width in LINK_HEADER_FIELDS.values())
    assert bits[0][0] == 0 and bits[-1][1] == 32
    assert all(a[1] == b[0] for a, b in zip(bits, bits[1:], strict=False))


def test_header_round_trip_and_known_value():
    word = pack_link_header(FrameKind.DATA, tc=1, eom=1, seq=0xABC, length=67)
    assert word == (0 | 1 << 2 | 1 << 3 | 0xABC << 4 | 67 << 16)
    assert unpack_link_header(word) == {"kind": 0, "tc": 1, "eom": 1, "seq": 0xABC,
                                        "length": 67}
    rng = random.Random(SEED)
    for _ in range(200):
        fields = {name: rng.randrange(1 << width)
                  for name, (_, width) in LINK_HEADER_FIELDS.items()}
        assert unpack_link_header(pack_link_header(**fields)) == fields


def test_header_field_overflow_is_refused():
    with pytest.raises(ValueError, match="link header field seq=4096 does not fit in 12 bits"):
        pack_link_header(FrameKind.ACK, seq=SEQ_MOD)


def test_frame_is_header_payload_and_zlib_lcrc():
    payload = [0x0102_0304, 0xDEAD_BEEF, 7]
    words = frame_words(FrameKind.DATA, 1, 1, 5, payload)
    assert words[0] == pack_link_header(FrameKind.DATA, 1, 1, 5, 3)
    assert words[1:4] == payload
    assert words[4] == _zlib(words[:4])
    dllp = frame_words(FrameKind.NAK, seq=9)
    assert dllp == [pack_link_header(FrameKind.NAK, seq=9), _zlib(dllp[:1])]


def test_flit_packing_puts_word_i_in_lane_i_mod_w():
    words = [0x11111111, 0x22222222, 0x33333333]
    assert words_to_flits(words, 2) == [0x22222222_11111111, 0x33333333]
    assert words_to_flits(words, 4) == [0x33333333_22222222_11111111]
    assert flit_lanes(0x22222222_11111111, 2) == words[:2]
    flits = frame_to_flits(list(range(5)), 2)
    assert [f.sop for f in flits] == [1, 0, 0]


# ---------------------------------------------------------------- parameters
def test_default_parameters_and_goodput_budget():
    p = LinkParams()
    assert p.max_payload_words == 67           # 2 header + 64 chunk words + CRC
    assert p.frame_flits(67) == 35             # 69 words in 64-bit flits
    assert p.slot_rows == 34 and p.rx_buffer_flits == 128 and p.replay_timeout == 204
    assert p.ideal_goodput(64, 67) == pytest.approx(64 / 70)
    assert p.ideal_goodput(64, 67) >= 0.90
    assert LinkParams(link_width=32).ideal_goodput(64, 67) == pytest.approx(64 / 69)
    assert p.segments(67) == [67] and p.segments(135) == [67, 67, 1]
    with pytest.raises(ValueError, match="at least one word"):
        p.segments(0)


@pytest.mark.parametrize("width, length, flits, rows", [
    (32, 0, 2, 1), (32, 3, 5, 4), (64, 0, 1, 1), (64, 1, 2, 1), (64, 2, 2, 2),
    (128, 2, 1, 1), (128, 3, 2, 1), (256, 6, 1, 1), (256, 7, 2, 1)])
def test_frame_and_stored_row_counts(width, length, flits, rows):
    p = LinkParams(link_width=width)
    assert p.frame_flits(length) == flits
    assert p.store_rows(length) == rows


# ---------------------------------------------------------------- framing
def _parse(params, flits):
    parser = FrameParser(params)
    frames = []
    for flit in flits:
        frames += parser.push(flit)
    return parser, frames


def test_parser_accepts_frames_and_ignores_stray_flits():
    p = LinkParams()
    data = frame_to_flits(frame_words(FrameKind.DATA, 0, 1, 3, [1, 2, 3, 4]), 2)
    ack = frame_to_flits(frame_words(FrameKind.ACK, seq=3), 2)
    parser, frames = _parse(p, [Flit(0, 99)] + data + ack)
    assert parser.ignored_flits == 1
    assert [(f.ok, f.kind, f.seq, f.payload) for f in frames] == [
        (True, FrameKind.DATA, 3, (1, 2, 3, 4)), (True, FrameKind.ACK, 3, ())]


def test_parser_flags_corruption_truncation_and_malformed_headers():
    p = LinkParams()
    data = frame_to_flits(frame_words(FrameKind.DATA, 0, 1, 3, list(range(8))), 2)
    corrupted = data[:2] + [Flit(0, data[2].data ^ 1 << 40)] + data[3:]
    _, frames = _parse(p, corrupted)
    assert [f.ok for f in frames] == [False]
    _, frames = _parse(p, data[:3] + data)              # a sop cuts the first copy short
    assert [(f.ok, f.truncated) for f in frames] == [(False, True), (True, False)]
    too_long = pack_link_header(FrameKind.DATA, length=p.max_payload_words + 1)
    ack_with_length = pack_link_header(FrameKind.ACK, length=1)
    _, frames = _parse(p, [Flit(1, too_long), Flit(1, ack_with_length)])
    assert [(f.ok, f.malformed) for f in frames] == [(False, True), (False, True)]


def test_sequence_distance_wraps():
    assert seq_distance(4090, 3) == 9
    assert seq_distance(3, 4090) == SEQ_MOD - 9


# ---------------------------------------------------------------- the wire model
def test_wire_ber_matches_the_rate():
    wire = FaultyWire(64, FaultConfig(ber=1e-3), random.Random(SEED))
    for cycle in range(20_000):
        wire.step(cycle, Flit(1, 0))
    expected = 20_000 * 65 * 1e-3
    assert abs(wire.counts.bit_flips - expected) < 5 * expected ** 0.5


def test_wire_keeps_order_and_counts_each_fault():
    faults = FaultConfig(drop_rate=0.05, dup_rate=0.05, delay_rate=0.05, down=((100, 50),))
    wire = FaultyWire(64, faults, random.Random(SEED))
    out = []
    for cycle in range(2000):
        flit = wire.step(cycle, Flit(0, cycle) if cycle < 1000 else None)
        if flit is not None:
            out.append(flit.data)
    c = wire.counts
    assert c.dropped > 0 and c.duplicated > 0 and c.delays > 0 and c.down_lost == 50
    assert out == sorted(out)                                   # order kept
    assert len(out) == 1000 - c.dropped - c.down_lost + c.duplicated
    assert not any(100 <= v < 150 for v in out)


def test_wire_burst_flips_consecutive_bits():
    wire = FaultyWire(64, FaultConfig(burst_rate=1.0, burst_bits=5), random.Random(SEED))
    flit = wire.step(0, Flit(0, 0))
    value = flit.data | flit.sop << 64
    assert value and bin(value).count("1") <= 5
    low = (value & -value).bit_length() - 1
    assert value >> low == (1 << bin(value).count("1")) - 1


def test_fault_config_is_validated():
    with pytest.raises(ValueError, match=r"FaultConfig.ber must be a probability in \[0, 1\]"):
        FaultConfig(ber=2.0)


# ---------------------------------------------------------------- scoreboard
def test_scoreboard_catches_loss_duplicates_corruption_and_reordering():
    board = DeliveryScoreboard()
    for words in ([1], [2, 3], [4]):
        board.sent((0, 1), words)
    board.delivered((0, 1), [1])
    board.delivered((0, 1), [2, 4])          # corrupted
    board.delivered((1, 0), [9])             # spurious
    problems = board.problems()
    assert len(problems) == 3
    assert "differs" in problems[0] and "spurious" in problems[1]
    assert "never delivered" in problems[2]


# ---------------------------------------------------------------- golden port model
def _messages(rng, count, max_words):
    return [(rng.randrange(2), rng.randrange(2),
             [rng.getrandbits(32) for _ in range(rng.randint(1, max_words))])
            for _ in range(count)]


@pytest.mark.parametrize("faults", [
    FaultConfig(), FaultConfig(ber=2e-4), FaultConfig(burst_rate=0.01),
    FaultConfig(drop_rate=0.01), FaultConfig(dup_rate=0.01),
    FaultConfig(delay_rate=0.05), FaultConfig(down=((400, 300),)),
    FaultConfig(ber=1e-4, drop_rate=0.005, dup_rate=0.005, delay_rate=0.01)],
    ids=["clean", "ber", "bursts", "drops", "duplicates", "delays", "down", "mixed"])
def test_model_pair_delivers_everything_once_in_order(faults):
    rng = random.Random(SEED)
    messages = _messages(rng, 60, 150)
    board, cycles, ports, wires = run_model_pair(
        LinkParams(), messages, faults, seed=SEED,
        ready=lambda port, tc, cycle: rng.random() < 0.7)
    assert board.problems() == []
    assert board.delivered_count == len(messages)
    assert all(p.stats["rx_overflows"] == 0 for p in ports)
    injected = sum(sum(w.counts.as_dict().values()) - w.counts.flits for w in wires)
    assert (injected > 0) == (faults != FaultConfig())


def test_model_narrow_link_with_cut_messages():
    params = LinkParams(link_width=32, replay_slots=4, max_payload_words=12,
                        rx_buffer_flits=32, mig_share=2)
    rng = random.Random(SEED + 1)
    board, _, ports, _ = run_model_pair(params, _messages(rng, 40, 50),
                                        FaultConfig(ber=1e-4, drop_rate=0.005), seed=SEED)
    assert board.problems() == []
    assert sum(p.stats["tx_replays"] for p in ports) > 0


def test_model_goodput_at_ber0_meets_the_framing_bound():
    """One-way STATE_DATA-sized messages: the data wire carries exactly the frames plus at
    most the periodic FC DLLPs of the idle reverse direction."""
    p = LinkParams()
    rng = random.Random(SEED)
    messages = [(0, 1, [rng.getrandbits(32) for _ in range(67)]) for _ in range(60)]
    board, cycles, ports, _ = run_model_pair(p, messages, seed=SEED)
    assert board.problems() == []
    flits = ports[0].stats["tx_flits"]
    goodput = 60 * 64 / (flits * p.words_per_flit)
    assert 0.90 <= goodput <= p.ideal_goodput(64, 67)
