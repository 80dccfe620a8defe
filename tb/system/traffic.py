"""VM traffic and the full-system scoreboard (pure Python: no cocotb, no amaranth).

``TrafficGenerator`` makes the requests the VMs send: the MSI-X table programming at start,
random READ/WRITE/ADD/NOTIFY traffic (one or more write-heavy VFs dirty their whole memory so
pre-copy needs several rounds; the others write a small, block-aligned hot set so they
converge), and the final read-back of every image.

``Scoreboard`` predicts every response with one ``model.state.GoldenVF`` per VF, applying each
request when the DUT accepts it (per VF, acceptance order is execution order), and matches
responses per VF by tag. It counts mismatches, lost, duplicated and reordered responses, and
checks interrupts end to end, VM request to VM delivery: each delivered interrupt must name
a (VF, vector) that VF raised with its own remapping entry in the MSI-X address, reach the
VM and guest vector the VMM programmed, never more often than raised, and at least once by
the end. (MSI-X pending bits coalesce inside a device while a VF is held, and when the hold
starts is the hardware's business, so this level cannot demand exactly-once; the remapper
level, ``tb/system/irq_check.py``, proves exactly-once per message a device sent.) Raises
whose address names another VF's entry are spoofs: counted, and expected to be blocked.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field

from model.irq_remap import RemapEntry, RemapParams, ValidationMode, handle_of_address, msi_address
from model.protocol import MAX_VFS
from model.state import MASK32, MSIX_ADDR_LO, MSIX_CTRL, MSIX_DATA, GoldenVF, ImageLayout, Op

MAX_VF_ID = MAX_VFS - 1   # the largest VF id a VM can name (hdl.formats.VF_ID_BITS)


@dataclass(frozen=True)
class VmRequest:
    vf: int
    op: Op
    addr: int
    data: int
    tag: int
    phase: str = "traffic"  # "init", "traffic" or "readback": where a mismatch is reported


@dataclass(frozen=True)
class VmResponse:
    vf: int
    tag: int
    data: int
    error: int


@dataclass(frozen=True)
class VmInterrupt:
    """A delivered interrupt: the VM and guest vector, and the (VF, vector) entry behind it."""
    vm: int
    guest_vector: int
    vf: int
    vector: int


def msix_message(params: RemapParams, vf: int, vector: int) -> tuple[int, int]:
    """(addr_lo, data) programmed into MSI-X entry ``vector`` of ``vf``: the address names
    the VF's own remapping entry (VT-d remappable format), the data is unique per pair."""
    addr = msi_address(params.handle(vf, vector))
    data = 0x4000_0000 | (vf << 16) | vector
    return addr, data


def irte_destination(vf: int, vector: int) -> tuple[int, int]:
    """(VM, guest vector) the VMM programs for (vf, vector): VF v belongs to VM v + 1, and
    its vectors are guest vectors 32 + vector (distinct pairs, so a misdelivery shows)."""
    return (vf + 1) & 0xFF, (32 + vector) & 0xFF


def irte_entry(vf: int, vector: int, device: int, slot: int, *, present: bool = True,
               mask: bool = False) -> RemapEntry:
    """The entry the VMM programs for (vf, vector) of a VF served at (device, slot)."""
    vm, guest_vector = irte_destination(vf, vector)
    return RemapEntry(present=present, mask=mask, mode=ValidationMode.EXACT,
                      source_device=device, source_slot=slot, vm=vm, guest_vector=guest_vector)


@dataclass(frozen=True)
class VfProfile:
    """Operation mix of one VF's traffic and where its writes land."""
    weight: float            # share of the request stream
    op_weights: tuple[float, float, float, float]  # READ, WRITE, ADD, NOTIFY
    write_heavy: bool        # writes anywhere in memory (dirty every block) vs. a hot set


    mask_toggles: float = 0.0  # share of requests that mask or unmask an MSI-X vector


NORMAL = VfProfile(weight=1.0, op_weights=(0.5, 0.2, 0.2, 0.1), write_heavy=False)
HEAVY = VfProfile(weight=8.0, op_weights=(0.05, 0.5, 0.4, 0.05), write_heavy=True)
# An interrupt storm: nearly every request raises a vector, some (un)mask one.
STORM = VfProfile(weight=6.0, op_weights=(0.02, 0.02, 0.01, 0.95), write_heavy=False,
                  mask_toggles=0.08)


class TrafficGenerator:
    """Random VM requests for ``n_vfs`` VFs from one explicit ``rng``.

    ``error_prob`` is the share of requests that must fail (address past the image, or a
    NOTIFY of a vector the VF does not have): they check the error path of every VF."""

    def __init__(self, layout: ImageLayout, n_vfs: int, tag_bits: int, rng: random.Random,
                 heavy_vfs: tuple[int, ...] = (), error_prob: float = 0.01,
                 storm_vfs: tuple[int, ...] = (), unknown_vf_prob: float = 0.0):
        self.layout, self.n_vfs, self.rng = layout, n_vfs, rng
        self.remap = RemapParams(n_vfs, layout.msix_vectors)
        self.tag_mask = (1 << tag_bits) - 1
        self.error_prob = error_prob
        self.profiles = [STORM if vf in storm_vfs else HEAVY if vf in heavy_vfs else NORMAL
                         for vf in range(n_vfs)]
        self._vf_weights = [p.weight for p in self.profiles]
        self.unknown_vf_prob = unknown_vf_prob if n_vfs < MAX_VF_ID else 0.0
        self._next_tag = [0] * (MAX_VF_ID + 1)
        lay = layout
        self._csr = list(range(lay.csr_words))
        self._mem = list(range(lay.mem_base, lay.image_words))
        self._readable = self._csr + self._mem
        # Hot set of a normal VF: the CSR block and one block-aligned memory block, so its
        # dirty set after a round is at most two blocks and pre-copy converges.
        hot_base = -(-lay.mem_base // lay.block_words) * lay.block_words
        hot_mem = [a for a in range(hot_base, hot_base + lay.block_words)
                   if lay.mem_base <= a < lay.image_words]
        self._hot = self._csr + (hot_mem or self._mem[:lay.block_words])
        self._stride_words = 1 << lay.addr_bits

    def tag(self, vf: int) -> int:
        tag = self._next_tag[vf]
        self._next_tag[vf] = (tag + 1) & self.tag_mask
        return tag

    def request(self, vf: int, op: Op, addr: int, data: int = 0,
                phase: str = "traffic") -> VmRequest:
        return VmRequest(vf, Op(op), addr, data & MASK32, self.tag(vf), phase)

    def msix_init(self, vfs=None) -> list[VmRequest]:
        """WRITEs programming every vector's addr_lo and data (addr_hi 0, unmasked)."""
        out = []
        for vf in range(self.n_vfs) if vfs is None else vfs:
            for vector in range(self.layout.msix_vectors):
                addr, data = msix_message(self.remap, vf, vector)
                out.append(self.request(vf, Op.WRITE, self.layout.msix_word(vector, MSIX_ADDR_LO),
                                        addr, "init"))
                out.append(self.request(vf, Op.WRITE, self.layout.msix_word(vector, MSIX_DATA),
                                        data, "init"))
        return out

    def spoof(self, vf: int, vector: int, victim: int, times: int = 2) -> list[VmRequest]:
        """``vf`` points its MSI-X ``vector`` at ``victim``'s entry for the same vector,
        raises it ``times`` times (each must be blocked: wrong source id), and restores it."""
        word = self.layout.msix_word(vector, MSIX_ADDR_LO)
        own, _ = msix_message(self.remap, vf, vector)
        forged, _ = msix_message(self.remap, victim, vector)
        return ([self.request(vf, Op.WRITE, word, forged, "init")]
                + [self.request(vf, Op.NOTIFY, 0, vector, "init") for _ in range(times)]
                + [self.request(vf, Op.WRITE, word, own, "init")])

    def random_request(self, vf: int | None = None) -> VmRequest:
        rng = self.rng
        if vf is None and self.unknown_vf_prob and rng.random() < self.unknown_vf_prob:
            # a VF id the system does not have: the router must answer it with an error
            return self.request(rng.randrange(self.n_vfs, MAX_VF_ID + 1), Op.READ, 0)
        if vf is None:
            vf = rng.choices(range(self.n_vfs), self._vf_weights)[0]
        profile = self.profiles[vf]
        if profile.mask_toggles and rng.random() < profile.mask_toggles:
            vector = rng.randrange(self.layout.msix_vectors)
            return self.request(vf, Op.WRITE, self.layout.msix_word(vector, MSIX_CTRL),
                                rng.getrandbits(1))
        op = rng.choices((Op.READ, Op.WRITE, Op.ADD, Op.NOTIFY), profile.op_weights)[0]
        if self.error_prob and rng.random() < self.error_prob:
            return self._error_request(vf, op)
        if op == Op.NOTIFY:
            return self.request(vf, op, 0, rng.randrange(self.layout.msix_vectors))
        if op == Op.READ:
            addr = rng.choice(self._readable)
        elif profile.write_heavy:
            addr = rng.choice(self._mem)
        else:
            addr = rng.choice(self._hot)
        data = rng.getrandbits(32) if op == Op.WRITE else rng.randrange(1, 1 << 16)
        return self.request(vf, op, addr, data)

    def _error_request(self, vf: int, op: Op) -> VmRequest:
        rng = self.rng
        if op == Op.NOTIFY or self._stride_words <= self.layout.image_words:
            return self.request(vf, Op.NOTIFY, 0, rng.randrange(self.layout.msix_vectors, 64))
        addr = rng.randrange(self.layout.image_words, self._stride_words)
        return self.request(vf, op, addr, rng.getrandbits(32))

    def readback(self, vf: int) -> list[VmRequest]:
        """READs of the whole image except the PBA (pending bits legitimately differ from the
        golden model while a VF's interrupts were held around a switchover)."""
        lay = self.layout
        return [self.request(vf, Op.READ, addr, 0, "readback")
                for addr in range(lay.image_words)
                if not lay.pba_base <= addr < lay.mem_base]


@dataclass
class _Expected:
    request: VmRequest
    data: int
    error: bool


@dataclass
class Totals:
    requests: int = 0
    responses_checked: int = 0
    mismatches: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    image_mismatches: int = 0   # mismatches of the final read-back (subset of mismatches)
    unknown_vf_requests: int = 0  # requests naming a VF id the system does not have
    irq_raised: int = 0         # interrupts the golden VFs sent naming their own entries
    irq_delivered: int = 0
    irq_spoofed: int = 0        # interrupts the golden VFs sent naming another VF's entry
    irq_errors: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Scoreboard:
    """Golden-model prediction of every response and interrupt, per VF."""
    layout: ImageLayout
    n_vfs: int
    max_messages: int = 20
    golden: list[GoldenVF] = field(init=False)
    totals: Totals = field(init=False, default_factory=Totals)
    messages: list[str] = field(init=False, default_factory=list)

    def __post_init__(self):
        self.golden = [GoldenVF(self.layout) for _ in range(self.n_vfs)]
        self._outstanding: list[deque[_Expected]] = [deque() for _ in range(self.n_vfs)]
        self._skipped: list[dict[int, _Expected]] = [{} for _ in range(self.n_vfs)]
        self._unknown: dict[int, deque[_Expected]] = {}   # requests to VF ids >= n_vfs
        self.remap = RemapParams(self.n_vfs, self.layout.msix_vectors)
        self._delivered: Counter = Counter()   # (vf, vector)
        self._raised_counts: Counter = Counter()
        self._raised_seen = [0] * self.n_vfs   # golden interrupts already counted, per VF
        self._finished = False

    # -- inputs
    def issued(self, req: VmRequest) -> None:
        """The DUT accepted ``req``: apply it to the VF's golden model now (a VF id the
        system does not have must get an error response, data 0)."""
        if req.vf >= self.n_vfs:
            self._unknown.setdefault(req.vf, deque()).append(_Expected(req, 0, True))
            self.totals.unknown_vf_requests += 1
        else:
            data, error = self.golden[req.vf].request(req.op, req.addr, req.data)
            self._outstanding[req.vf].append(_Expected(req, data, error))
        self.totals.requests += 1

    def response(self, resp: VmResponse) -> None:
        if not 0 <= resp.vf < self.n_vfs:
            queue = self._unknown.get(resp.vf)
            if not queue or queue[0].request.tag != resp.tag:
                self._error("duplicates", f"response for VF {resp.vf}, which does not exist, "
                                          f"matching no request in order: {resp}")
                return
            expected = queue.popleft()
            self.totals.responses_checked += 1
            if resp.data != 0 or not resp.error:
                self.totals.mismatches += 1
                self._message(f"{expected.request} to a VF the system does not have answered "
                              f"data=0x{resp.data:08x} error={resp.error}, expected an error")
            return
        queue = self._outstanding[resp.vf]
        expected = None
        if queue and queue[0].request.tag == resp.tag:
            expected = queue.popleft()
        else:
            for index, item in enumerate(queue):
                if item.request.tag == resp.tag:
                    # Everything ahead of it was skipped: lost unless it turns up later.
                    for _ in range(index):
                        skipped = queue.popleft()
                        self._skipped[resp.vf][skipped.request.tag] = skipped
                    expected = queue.popleft()
                    break
            else:
                expected = self._skipped[resp.vf].pop(resp.tag, None)
                if expected is None:
                    self._error("duplicates", f"VF {resp.vf}: response with tag {resp.tag} "
                                              f"matches no outstanding request (duplicate?): "
                                              f"{resp}")
                    return
                self._error("reordered", f"VF {resp.vf}: response to {expected.request} came "
                                         f"after younger ones (per-VF order broken)")
        self.totals.responses_checked += 1
        if resp.data != expected.data or bool(resp.error) != expected.error:
            self.totals.mismatches += 1
            if expected.request.phase == "readback":
                self.totals.image_mismatches += 1
            self._message(f"VF {resp.vf}: {expected.request} answered data=0x{resp.data:08x} "
                          f"error={resp.error}, expected data=0x{expected.data:08x} "
                          f"error={int(expected.error)}")

    def interrupt(self, irq: VmInterrupt) -> None:
        self.totals.irq_delivered += 1
        key = (irq.vf, irq.vector)
        if (irq.vm, irq.guest_vector) != irte_destination(irq.vf, irq.vector):
            vm, guest_vector = irte_destination(irq.vf, irq.vector)
            self._error("irq_errors", f"interrupt {irq} reached VM {irq.vm} vector "
                                      f"{irq.guest_vector}, programmed VM {vm} vector "
                                      f"{guest_vector}")
        self._delivered[key] += 1
        raised = self._raised().get(key, 0)
        if self._delivered[key] > raised:
            what = "never raised" if raised == 0 else f"raised only {raised} times"
            self._error("irq_errors", f"interrupt {irq} delivered {self._delivered[key]} times, "
                                      f"{what}")

    # -- queries
    def outstanding(self, vf: int | None = None) -> int:
        if vf is None:
            return (sum(len(q) + len(k) for q, k in zip(self._outstanding, self._skipped,
                                                         strict=True))
                    + sum(len(q) for q in self._unknown.values()))
        if vf >= self.n_vfs:
            return len(self._unknown.get(vf, ()))
        return len(self._outstanding[vf]) + len(self._skipped[vf])

    def finish(self) -> Totals:
        """Close the books: whatever is still outstanding is lost; check interrupt coverage."""
        if self._finished:
            return self.totals
        self._finished = True
        for vf in range(self.n_vfs):
            pending = list(self._outstanding[vf]) + list(self._skipped[vf].values())
            for item in pending:
                self._error("lost", f"VF {vf}: no response to {item.request}")
        for vf, queue in sorted(self._unknown.items()):
            for item in queue:
                self._error("lost", f"unknown VF {vf}: no response to {item.request}")
        raised = self._raised()
        self.totals.irq_raised = sum(raised.values())
        for (vf, vector), n in sorted(raised.items()):
            if n and not self._delivered[(vf, vector)]:
                self._error("irq_errors", f"VF {vf} vector {vector}: raised {n} times, "
                                          f"never delivered")
        return self.totals

    def ok(self) -> bool:
        t = self.finish()
        return not (t.mismatches or t.lost or t.duplicates or t.reordered or t.irq_errors)

    def irq_summary(self) -> dict[str, dict[str, int]]:
        """{"vf.vector": {"raised", "delivered"}} for the report."""
        out: dict[str, dict[str, int]] = {}
        for (vf, vector), n in self._raised().items():
            out.setdefault(f"{vf}.{vector}", {"raised": 0, "delivered": 0})["raised"] += n
        for (vf, vector), n in self._delivered.items():
            out.setdefault(f"{vf}.{vector}", {"raised": 0, "delivered": 0})["delivered"] += n
        return dict(sorted(out.items()))

    # -- internals
    def _raised(self) -> Counter:
        for vf, golden in enumerate(self.golden):
            for irq in golden.interrupts[self._raised_seen[vf]:]:
                handle = handle_of_address(irq.addr) & ((1 << self.remap.handle_bits) - 1)
                if handle == self.remap.handle(vf, irq.vector):
                    self._raised_counts[(vf, irq.vector)] += 1
                else:
                    self.totals.irq_spoofed += 1
            self._raised_seen[vf] = len(golden.interrupts)
        return self._raised_counts

    def _error(self, counter: str, text: str) -> None:
        setattr(self.totals, counter, getattr(self.totals, counter) + 1)
        self._message(text)

    def _message(self, text: str) -> None:
        if len(self.messages) < self.max_messages:
            self.messages.append(text)
