"""The uniform VF state image and the golden VF model (model/state.py, docs/design.md)."""

from __future__ import annotations

import random

import pytest

from model.state import (
    DIGEST_STEPS,
    MASK32,
    MSIX_ADDR_HI,
    MSIX_ADDR_LO,
    MSIX_CTRL,
    MSIX_CTRL_MASK,
    MSIX_DATA,
    GoldenVF,
    ImageLayout,
    Interrupt,
    Op,
    digest_step,
    image_digest,
    rotl32,
    spread_offset,
    word_hash,
    zero_image_digest,
)

SEED = 20240611


# ---------------------------------------------------------------- layout
def test_default_layout_arithmetic():
    lay = ImageLayout()  # 8 CSR words, 4 vectors, 256 memory words, blocks of 16
    assert (lay.msix_base, lay.pba_base, lay.pba_words, lay.mem_base) == (8, 24, 1, 25)
    assert lay.meta_words == 25
    assert lay.image_words == 281
    assert lay.n_blocks == 18            # ceil(281 / 16)
    assert lay.meta_blocks == 2          # ceil(25 / 16)
    assert lay.stride == 512
    assert lay.addr_bits == 9
    assert lay.dirty_words == 1
    assert lay.msix_word(3, MSIX_CTRL) == 8 + 4 * 3 + 3
    assert lay.block_of(15) == 0 and lay.block_of(16) == 1 and lay.block_of(280) == 17
    assert lay.block_range(0) == (0, 16)
    assert lay.block_range(17) == (272, 9)  # the last block is clipped to the image


@pytest.mark.parametrize(("csr", "vectors", "mem", "block", "expected"), [
    # (pba_words, image_words, n_blocks, stride, addr_bits, dirty_words)
    (1, 1, 1, 1, (1, 7, 7, 8, 3, 1)),
    (4, 32, 1, 4, (1, 4 + 128 + 1 + 1, 34, 256, 8, 2)),
    (4, 33, 16, 8, (2, 4 + 132 + 2 + 16, 20, 256, 8, 1)),
    (16, 64, 16384, 16, (2, 16 + 256 + 2 + 16384, 1042, 32768, 15, 33)),
    (8, 4, 4, 256, (1, 8 + 16 + 1 + 4, 1, 32, 5, 1)),
])
def test_layout_arithmetic(csr, vectors, mem, block, expected):
    lay = ImageLayout(csr_words=csr, msix_vectors=vectors, mem_words=mem, block_words=block)
    got = (lay.pba_words, lay.image_words, lay.n_blocks, lay.stride, lay.addr_bits,
           lay.dirty_words)
    assert got == expected
    # invariants that every consumer relies on
    assert lay.stride >= lay.image_words and lay.stride & (lay.stride - 1) == 0
    assert 1 << lay.addr_bits >= lay.stride
    assert (lay.n_blocks - 1) * block < lay.image_words <= lay.n_blocks * block
    assert 32 * lay.dirty_words >= lay.n_blocks
    assert sum(lay.block_range(b)[1] for b in range(lay.n_blocks)) == lay.image_words


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"csr_words": 0}, "ImageLayout csr_words must be at least 1, not 0"),
    ({"msix_vectors": -1}, "ImageLayout msix_vectors must be at least 1, not -1"),
    ({"mem_words": 2.5}, "ImageLayout mem_words must be an integer, not 2.5"),
    ({"block_words": "16"}, "ImageLayout block_words must be an integer, not '16'"),
    ({"block_words": 12}, "ImageLayout.block_words must be a power of two, not 12"),
    ({"msix_vectors": 2049}, "ImageLayout.msix_vectors is at most 2048 (PCIe MSI-X), not 2049"),
])
def test_layout_validation(kwargs, message):
    with pytest.raises(ValueError) as info:
        ImageLayout(**kwargs)
    assert str(info.value) == message


# ---------------------------------------------------------------- digest
def test_zero_digest_matches_a_zero_image():
    lay = ImageLayout(csr_words=4, msix_vectors=2, mem_words=64)
    assert zero_image_digest(lay) == image_digest([0] * lay.image_words)
    assert GoldenVF(lay).digest() == zero_image_digest(lay)


def test_digest_is_order_independent_and_incremental():
    rng = random.Random(SEED)
    words = [rng.getrandbits(32) for _ in range(200)]
    pairs = list(enumerate(words))
    rng.shuffle(pairs)
    shuffled = 0
    for offset, value in pairs:
        shuffled ^= word_hash(offset, value)
    assert shuffled == image_digest(words)
    # the running update both VF units do on every write
    digest = image_digest(words)
    for _ in range(100):
        addr, new = rng.randrange(len(words)), rng.getrandbits(32)
        digest ^= word_hash(addr, words[addr]) ^ word_hash(addr, new)
        words[addr] = new
        assert digest == image_digest(words)


def test_digest_detects_every_single_word_change():
    rng = random.Random(SEED)
    lay = ImageLayout()
    words = [rng.getrandbits(32) for _ in range(lay.image_words)]
    # word_hash is a bijection of the value for a fixed offset, so no single-word change
    # (here: every single-bit flip of every word) can cancel out
    for offset, value in enumerate(words):
        h = word_hash(offset, value)
        for bit in range(32):
            assert word_hash(offset, value ^ 1 << bit) != h
    base = image_digest(words)
    for _ in range(50):
        changed = list(words)
        addr = rng.randrange(len(words))
        changed[addr] = (changed[addr] + rng.randrange(1, 1 << 32)) & MASK32
        assert image_digest(changed) != base


def test_digest_depends_on_position():
    words = [0x1111_1111, 0x2222_2222, 0, 0]
    assert image_digest(words) != image_digest([0x2222_2222, 0x1111_1111, 0, 0])
    assert word_hash(0, 5) != word_hash(1, 5)


def undo_digest_step(step: tuple, y: int) -> int:
    """The inverse of ``digest_step``: its existence is what makes word_hash a bijection."""
    kind, *params = step
    if kind == "add":
        return (y - params[0]) & MASK32
    if kind == "shladd":   # x * (2**k + 1) mod 2**32, an odd multiplier: invertible
        return y * pow((1 << params[0]) + 1, -1, 1 << 32) & MASK32
    if kind == "xorshr":   # triangular: the top k bits are unchanged, then k more each round
        x = y
        for _ in range(32 // params[0] + 1):
            x = y ^ (x >> params[0])
        return x
    assert kind == "rotxor"
    return solve_gf2(lambda x: digest_step(step, x), y)


def gf2_columns(linear) -> list[int]:
    return [linear(1 << bit) for bit in range(32)]


def solve_gf2(linear, y: int) -> int:
    """The x with linear(x) == y, by Gaussian elimination (fails if the map is singular)."""
    rows = [(column, 1 << bit) for bit, column in enumerate(gf2_columns(linear))]
    x = 0
    for bit in range(32):
        pivot = next(i for i, (column, _) in enumerate(rows) if column >> bit & 1)
        column, source = rows.pop(pivot)
        rows = [(c ^ column, s ^ source) if c >> bit & 1 else (c, s) for c, s in rows]
        if y >> bit & 1:
            y ^= column
            x ^= source
    assert y == 0
    return x


def gf2_rank(columns: list[int]) -> int:
    basis: list[int] = []
    for column in columns:
        for b in basis:
            column = min(column, column ^ b)
        if column:
            basis.append(column)
    return len(basis)


def test_every_digest_step_is_invertible():
    """word_hash(a, v) = P(v ^ spread(a)), P the composition of DIGEST_STEPS: each step is
    undone exactly, so P is a bijection of the 32-bit value."""
    rng = random.Random(SEED)
    for step in DIGEST_STEPS:
        if step[0] == "shladd":
            assert (1 << step[1]) + 1 & 1
        if step[0] in ("rotxor", "xorshr"):   # GF(2)-linear: full rank is the proof
            assert gf2_rank(gf2_columns(lambda x, step=step: digest_step(step, x))) == 32
        for x in [0, 1, MASK32, 1 << 31] + [rng.getrandbits(32) for _ in range(300)]:
            assert undo_digest_step(step, digest_step(step, x)) == x, (step, x)


def test_rotxor_is_invertible_for_any_rotations():
    # 1 + t^a + t^b has three terms, so it is not divisible by t + 1: coprime to (t+1)^32
    for a in range(1, 32):
        for b in range(a + 1, 32):
            assert gf2_rank(gf2_columns(lambda x, a=a, b=b: x ^ rotl32(x, a) ^ rotl32(x, b))) == 32


def test_word_hash_inverts_back_to_the_value():
    rng = random.Random(SEED)
    for _ in range(300):
        offset, value = rng.getrandbits(12), rng.getrandbits(32)
        x = word_hash(offset, value)
        for step in reversed(DIGEST_STEPS):
            x = undo_digest_step(step, x)
        assert x ^ spread_offset(offset) == value


def test_offsets_spread_injectively():
    """spread(a) = a ^ (a << 16) is injective, so P(v ^ spread(a)) != P(v ^ spread(b))."""
    assert len({spread_offset(a) for a in range(1 << 16)}) == 1 << 16
    assert gf2_rank(gf2_columns(spread_offset)) == 32


def test_random_multi_word_corruptions_change_the_digest():
    """5,000 images with 2..8 words replaced by random values: no digest collision (a
    bijective per-word hash makes this about 2**-32 per image)."""
    rng = random.Random(SEED)
    for _ in range(5_000):
        delta = 0
        for offset in rng.sample(range(281), rng.randint(2, 8)):
            old, new = rng.getrandbits(32), rng.getrandbits(32)
            delta ^= word_hash(offset, old) ^ word_hash(offset, new) if old != new else 0
        assert delta != 0


@pytest.mark.parametrize("words", [2, 4])
def test_equal_bit_flips_in_several_words_rarely_cancel(words):
    """The fault a linear hash misses: the same bit flipped in an even number of words (a
    stuck data line). Truncated to 10 bits the digest change is zero at the rate of a random
    function, 2**-10 (the multiplying hash this replaced missed every pair of top-bit flips)."""
    rng = random.Random(SEED + words)
    trials, low_zero, high_zero = 1 << 14, 0, 0
    for _ in range(trials):
        bit = 1 << rng.randrange(32)
        delta = 0
        for offset in rng.sample(range(4096), words):
            value = rng.getrandbits(32)
            delta ^= word_hash(offset, value) ^ word_hash(offset, value ^ bit)
        low_zero += delta & 0x3FF == 0
        high_zero += delta >> 22 == 0
    expected = trials >> 10   # 16
    assert expected // 4 <= low_zero <= 3 * expected
    assert expected // 4 <= high_zero <= 3 * expected


# ---------------------------------------------------------------- golden VF
SMALL = ImageLayout(csr_words=4, msix_vectors=3, mem_words=40, block_words=8)


def _vf_with_vectors(lay: ImageLayout = SMALL, masked: tuple[int, ...] = ()) -> GoldenVF:
    vf = GoldenVF(lay)
    for v in range(lay.msix_vectors):
        vf.request(Op.WRITE, lay.msix_word(v, MSIX_ADDR_LO), 0xFEE0_0000 + 0x10 * v)
        vf.request(Op.WRITE, lay.msix_word(v, MSIX_ADDR_HI), 0)
        vf.request(Op.WRITE, lay.msix_word(v, MSIX_DATA), 0x40 + v)
        vf.request(Op.WRITE, lay.msix_word(v, MSIX_CTRL), MSIX_CTRL_MASK if v in masked else 0)
    vf.read_and_clear_dirty()
    return vf


def _irq(v: int) -> Interrupt:
    return Interrupt(v, 0xFEE0_0000 + 0x10 * v, 0x40 + v)


def test_new_vf_is_zero():
    vf = GoldenVF(SMALL)
    assert vf.image == [0] * SMALL.image_words
    assert vf.dirty == set() and vf.interrupts == [] and not vf.irq_hold


def test_read_write_add():
    vf = GoldenVF(SMALL)
    mem = SMALL.mem_base
    assert vf.request(Op.WRITE, mem + 3, 0x1_2345_6789) == (0, False)  # truncated to 32 bits
    assert vf.request(Op.READ, mem + 3) == (0x2345_6789, False)
    assert vf.request(Op.ADD, mem + 3, 0xDCBA_9877) == (0, False)  # wraps mod 2^32
    assert vf.request(Op.ADD, mem + 3, 5) == (5, False)
    assert vf.request(Op.READ, mem + 3) == (5, False)
    assert vf.request(Op.READ, 0) == (0, False)
    assert vf.image[mem + 3] == 5


@pytest.mark.parametrize("op", [Op.READ, Op.WRITE, Op.ADD])
@pytest.mark.parametrize("addr", [-1, SMALL.image_words, SMALL.stride - 1, 1 << 20])
def test_out_of_image_access_is_an_error_and_changes_nothing(op, addr):
    vf = GoldenVF(SMALL)
    assert vf.request(op, addr, 7) == (0, True)
    assert vf.image == [0] * SMALL.image_words
    assert vf.dirty == set()


def test_dirty_blocks_read_and_clear():
    vf = GoldenVF(SMALL)
    vf.request(Op.READ, 17)
    assert vf.dirty == set()                       # reads never dirty
    vf.request(Op.WRITE, 0, 0)                     # a write dirties even with the same value
    vf.request(Op.ADD, 17, 1)
    vf.request(Op.WRITE, 23, 9)
    vf.request(Op.WRITE, SMALL.image_words - 1, 1)
    assert vf.read_and_clear_dirty() == {0, 2, SMALL.n_blocks - 1}
    assert vf.read_and_clear_dirty() == set()
    vf.request(Op.ADD, 8, 1)
    assert vf.read_and_clear_dirty() == {1}


def test_notify_sends_the_table_entry():
    vf = _vf_with_vectors()
    assert vf.request(Op.NOTIFY, 0, 2) == (0, False)
    assert vf.request(Op.NOTIFY, 0, 0) == (0, False)
    assert vf.interrupts == [_irq(2), _irq(0)]
    assert vf.dirty == set()  # an unmasked interrupt changes no image word


@pytest.mark.parametrize("vector", [-1, SMALL.msix_vectors, 255])
def test_notify_of_a_missing_vector_is_an_error(vector):
    vf = _vf_with_vectors()
    assert vf.request(Op.NOTIFY, 0, vector) == (0, True)
    assert vf.interrupts == [] and vf.dirty == set()


def test_masked_vector_goes_pending_and_replays_once_on_unmask():
    lay = SMALL
    vf = _vf_with_vectors(masked=(1,))
    pba_word, pba_block = lay.pba_base, lay.block_of(lay.pba_base)
    vf.request(Op.NOTIFY, 0, 1)
    vf.request(Op.NOTIFY, 0, 1)  # still one pending bit
    assert vf.interrupts == []
    assert vf.image[pba_word] == 0b010
    assert vf.read_and_clear_dirty() == {pba_block}  # the PBA is part of the image
    # rewriting the mask with the vector still masked replays nothing
    vf.request(Op.WRITE, lay.msix_word(1, MSIX_CTRL), MSIX_CTRL_MASK)
    assert vf.interrupts == [] and vf.image[pba_word] == 0b010
    vf.request(Op.WRITE, lay.msix_word(1, MSIX_CTRL), 0)
    assert vf.interrupts == [_irq(1)]
    assert vf.image[pba_word] == 0
    assert pba_block in vf.read_and_clear_dirty()
    # unmasking again replays nothing more
    vf.request(Op.WRITE, lay.msix_word(1, MSIX_CTRL), 0)
    assert vf.interrupts == [_irq(1)]


def test_unmask_by_add_also_replays():
    lay = SMALL
    vf = _vf_with_vectors(masked=(0,))
    vf.request(Op.NOTIFY, 0, 0)
    assert vf.request(Op.ADD, lay.msix_word(0, MSIX_CTRL), MASK32) == (0, False)  # 1 + ~0 = 0
    assert vf.interrupts == [_irq(0)] and vf.image[lay.pba_base] == 0


def test_writes_to_other_table_words_do_not_replay():
    lay = SMALL
    vf = _vf_with_vectors(masked=(2,))
    vf.request(Op.NOTIFY, 0, 2)
    for which in (MSIX_ADDR_LO, MSIX_ADDR_HI, MSIX_DATA):
        vf.request(Op.WRITE, lay.msix_word(2, which), vf.image[lay.msix_word(2, which)])
    assert vf.interrupts == [] and vf.image[lay.pba_base] == 0b100


def test_hold_collects_and_release_replays_each_pending_vector_once():
    lay = SMALL
    vf = _vf_with_vectors(masked=(1,))
    vf.set_irq_hold(True)
    for vector in (2, 0, 2, 1, 0):
        assert vf.request(Op.NOTIFY, 0, vector) == (0, False)
    assert vf.interrupts == []
    assert vf.image[lay.pba_base] == 0b111
    vf.set_irq_hold(False)
    # unmasked pending vectors go out once each, in vector order; the masked one stays
    assert vf.interrupts == [_irq(0), _irq(2)]
    assert vf.image[lay.pba_base] == 0b010
    vf.set_irq_hold(False)
    assert vf.interrupts == [_irq(0), _irq(2)]
    vf.request(Op.NOTIFY, 0, 0)  # no longer held
    assert vf.interrupts == [_irq(0), _irq(2), _irq(0)]


def test_unmask_during_hold_waits_for_release():
    lay = SMALL
    vf = _vf_with_vectors(masked=(0,))
    vf.request(Op.NOTIFY, 0, 0)
    vf.set_irq_hold(True)
    vf.request(Op.WRITE, lay.msix_word(0, MSIX_CTRL), 0)
    assert vf.interrupts == [] and vf.image[lay.pba_base] == 0b001
    vf.set_irq_hold(False)
    assert vf.interrupts == [_irq(0)] and vf.image[lay.pba_base] == 0


def test_pba_spans_several_words():
    lay = ImageLayout(csr_words=2, msix_vectors=40, mem_words=8)
    vf = GoldenVF(lay)
    vf.request(Op.WRITE, lay.msix_word(35, MSIX_CTRL), MSIX_CTRL_MASK)
    vf.request(Op.NOTIFY, 0, 35)
    assert vf.image[lay.pba_base] == 0 and vf.image[lay.pba_base + 1] == 1 << 3


def test_golden_vf_digest_tracks_its_image():
    rng = random.Random(SEED)
    vf = _vf_with_vectors()
    for _ in range(200):
        op = rng.choice([Op.READ, Op.WRITE, Op.ADD, Op.NOTIFY])
        vf.request(op, rng.randrange(SMALL.image_words), rng.getrandbits(32) if op != Op.NOTIFY
                   else rng.randrange(SMALL.msix_vectors))
        assert vf.digest() == image_digest(vf.image)
