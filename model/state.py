"""The uniform VF state image and the golden VF model (docs/design.md).

Every VF, on either device, is one linear image of 32-bit words:
CSR block · MSI-X table (4 words per vector) · PBA · VF memory.
The HDL takes its address map, widths and the image digest from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from .common import check_int

MASK32 = 0xFFFF_FFFF

# MSI-X table entry words, in order (PCIe MSI-X table layout).
MSIX_ADDR_LO, MSIX_ADDR_HI, MSIX_DATA, MSIX_CTRL = range(4)
MSIX_CTRL_MASK = 1  # vector control bit 0: masked


class Op(IntEnum):
    """VF request operations."""
    READ = 0    # response data = image[addr]
    WRITE = 1   # image[addr] = data; response data = 0
    ADD = 2     # image[addr] += data (mod 2^32); response data = the new value
    NOTIFY = 3  # raise MSI-X vector `data`; response data = 0


OP_BITS = 2


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class ImageLayout:
    """Address map of one VF's state image, in 32-bit words."""
    csr_words: int = 8
    msix_vectors: int = 4
    mem_words: int = 256
    block_words: int = 16  # dirty-tracking granularity

    def __post_init__(self):
        for name in ("csr_words", "msix_vectors", "mem_words", "block_words"):
            check_int("ImageLayout", name, getattr(self, name), 1)
        if not _is_pow2(self.block_words):
            raise ValueError(f"ImageLayout.block_words must be a power of two, "
                             f"not {self.block_words}")
        if self.msix_vectors > 2048:
            raise ValueError(f"ImageLayout.msix_vectors is at most 2048 (PCIe MSI-X), "
                             f"not {self.msix_vectors}")

    @property
    def msix_base(self) -> int:
        return self.csr_words

    @property
    def pba_base(self) -> int:
        return self.msix_base + 4 * self.msix_vectors

    @property
    def pba_words(self) -> int:
        return (self.msix_vectors + 31) // 32

    @property
    def mem_base(self) -> int:
        return self.pba_base + self.pba_words

    @property
    def meta_words(self) -> int:
        """CSR + MSI-X + PBA: always re-sent during stop-copy."""
        return self.mem_base

    @property
    def image_words(self) -> int:
        return self.mem_base + self.mem_words

    @property
    def n_blocks(self) -> int:
        return -(-self.image_words // self.block_words)

    @property
    def meta_blocks(self) -> int:
        return -(-self.meta_words // self.block_words)

    @property
    def stride(self) -> int:
        """Words between slot bases in a VF unit's memory (a power of two)."""
        return 1 << (self.image_words - 1).bit_length()

    @property
    def addr_bits(self) -> int:
        """Bits of a word offset inside one image."""
        return max(1, (self.stride - 1).bit_length())

    @property
    def dirty_words(self) -> int:
        """32-bit words of one slot's dirty bitmap."""
        return -(-self.n_blocks // 32)

    def msix_word(self, vector: int, which: int) -> int:
        return self.msix_base + 4 * vector + which

    def block_of(self, addr: int) -> int:
        return addr // self.block_words

    def block_range(self, block: int) -> tuple[int, int]:
        """(offset, length) of a dirty block, clipped to the image."""
        start = block * self.block_words
        return start, min(self.block_words, self.image_words - start)


# ---------------------------------------------------------------- image digest
# An order-independent digest: XOR over words of a non-linear hash of (offset, value).
# Because XOR composes, both VF units keep it up to date on every write
# (digest ^= h(a, old) ^ h(a, new)), so it costs no downtime to compare at switchover.
#
# word_hash(a, v) = P(v ^ spread(a)): ``spread`` is injective, and P is a chain of invertible
# 32-bit steps, so for a fixed offset the hash is a bijection of the value (no single-word
# change cancels) and two offsets never give one value the same hash. P has no multiplier:
# three adders (carries make it non-linear, so equal bit flips in different words do not
# cancel), two XOR-of-rotations layers and a closing xorshift (docs/architecture.md).
DIGEST_OFFSET_SHIFT = 16      # spread(a) = a ^ (a << 16): low offset bits reach the top half
DIGEST_STEPS = (              # (kind, parameters), applied in order
    ("add", 0x9E37_79B9),     # x + c
    ("rotxor", 22, 6),        # x ^ rotl(x, r1) ^ rotl(x, r2)
    ("shladd", 7),            # x + (x << k): x * (2**k + 1), an odd multiplier
    ("rotxor", 18, 29),
    ("shladd", 6),
    ("xorshr", 16),           # x ^ (x >> k)
)


def rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & MASK32


def digest_step(step: tuple, x: int) -> int:
    """One step of ``DIGEST_STEPS`` on the 32-bit value ``x``."""
    kind, *params = step
    if kind == "add":
        return (x + params[0]) & MASK32
    if kind == "rotxor":
        return x ^ rotl32(x, params[0]) ^ rotl32(x, params[1])
    if kind == "shladd":
        return (x + (x << params[0])) & MASK32
    if kind == "xorshr":
        return x ^ (x >> params[0])
    raise ValueError(f"unknown digest step {kind!r}")


def spread_offset(offset: int) -> int:
    return (offset ^ (offset << DIGEST_OFFSET_SHIFT)) & MASK32


def word_hash(offset: int, value: int) -> int:
    x = value ^ spread_offset(offset)
    for step in DIGEST_STEPS:
        x = digest_step(step, x)
    return x


def image_digest(words) -> int:
    digest = 0
    for offset, value in enumerate(words):
        digest ^= word_hash(offset, value)
    return digest


def zero_image_digest(layout: ImageLayout) -> int:
    """Digest of an all-zero image (the reset value of every slot's digest)."""
    digest = 0
    for offset in range(layout.image_words):
        digest ^= word_hash(offset, 0)
    return digest


# ---------------------------------------------------------------- golden VF
@dataclass
class Interrupt:
    vector: int
    addr: int   # MSI-X message address (low word)
    data: int   # MSI-X message data


@dataclass
class GoldenVF:
    """Reference behaviour of one VF: request semantics, MSI-X, dirty tracking."""
    layout: ImageLayout
    image: list[int] = field(default_factory=list)
    dirty: set[int] = field(default_factory=set)
    irq_hold: bool = False
    interrupts: list[Interrupt] = field(default_factory=list)

    def __post_init__(self):
        if not self.image:
            self.image = [0] * self.layout.image_words

    def request(self, op: Op, addr: int, data: int = 0) -> tuple[int, bool]:
        """Apply one request; returns (response data, error)."""
        lay = self.layout
        if op == Op.NOTIFY:
            if not 0 <= data < lay.msix_vectors:
                return 0, True
            self._raise(data)
            return 0, False
        if not 0 <= addr < lay.image_words:
            return 0, True
        if op == Op.READ:
            return self.image[addr], False
        new = data & MASK32 if op == Op.WRITE else (self.image[addr] + data) & MASK32
        self._write(addr, new)
        if op == Op.WRITE:
            self._after_ctrl_write(addr)
            return 0, False
        self._after_ctrl_write(addr)
        return new, False

    def set_irq_hold(self, hold: bool) -> None:
        self.irq_hold = hold
        if not hold:
            for vector in range(self.layout.msix_vectors):
                self._replay(vector)

    def digest(self) -> int:
        return image_digest(self.image)

    def read_and_clear_dirty(self) -> set[int]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    # -- internals
    def _write(self, addr: int, value: int) -> None:
        self.image[addr] = value
        self.dirty.add(self.layout.block_of(addr))

    def _pba(self, vector: int) -> tuple[int, int]:
        return self.layout.pba_base + vector // 32, 1 << (vector % 32)

    def _masked(self, vector: int) -> bool:
        return bool(self.image[self.layout.msix_word(vector, MSIX_CTRL)] & MSIX_CTRL_MASK)

    def _raise(self, vector: int) -> None:
        if self._masked(vector) or self.irq_hold:
            word, bit = self._pba(vector)
            if not self.image[word] & bit:
                self._write(word, self.image[word] | bit)
        else:
            self._send(vector)

    def _send(self, vector: int) -> None:
        lay = self.layout
        self.interrupts.append(Interrupt(vector, self.image[lay.msix_word(vector, MSIX_ADDR_LO)],
                                         self.image[lay.msix_word(vector, MSIX_DATA)]))

    def _replay(self, vector: int) -> None:
        """Send a pending vector once if it is now deliverable, clearing its PBA bit."""
        word, bit = self._pba(vector)
        if self.image[word] & bit and not self._masked(vector) and not self.irq_hold:
            self._write(word, self.image[word] & ~bit)
            self._send(vector)

    def _after_ctrl_write(self, addr: int) -> None:
        lay = self.layout
        if lay.msix_base <= addr < lay.pba_base and (addr - lay.msix_base) % 4 == MSIX_CTRL:
            self._replay((addr - lay.msix_base) // 4)
