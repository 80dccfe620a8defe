"""The ECP5 PLL (EHXPLLL) that makes the self-test clock from a board's oscillator."""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Instance, Signal

__all__ = ["PllSettings", "ecp5_pll", "ecp5_pll_settings"]

VCO_MHZ = (400.0, 800.0)      # ECP5 family data sheet, EHXPLLL
PFD_MHZ = (3.125, 400.0)


@dataclass(frozen=True)
class PllSettings:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    fin_mhz: float

    @property
    def fout_mhz(self) -> float:
        return self.fin_mhz * self.clkfb_div / self.clki_div

    @property
    def vco_mhz(self) -> float:
        return self.fout_mhz * self.clkop_div


def ecp5_pll_settings(fin_mhz: float, fout_mhz: float) -> PllSettings:
    """The divider settings whose output is closest to ``fout_mhz`` (ties: VCO nearest
    600 MHz); ValueError when no setting comes within 1 %."""
    best = None
    for clki in range(1, 129):
        if not PFD_MHZ[0] <= fin_mhz / clki <= PFD_MHZ[1]:
            continue
        for clkfb in range(1, 81):
            out = fin_mhz * clkfb / clki
            for clkop in range(1, 129):
                if not VCO_MHZ[0] <= out * clkop <= VCO_MHZ[1]:
                    continue
                key = (abs(out - fout_mhz), abs(out * clkop - 600))
                if best is None or key < best[0]:
                    best = (key, PllSettings(clki, clkfb, clkop, fin_mhz))
    if best is None or best[0][0] > fout_mhz / 100:
        raise ValueError(f"no ECP5 PLL setting makes {fout_mhz} MHz from {fin_mhz} MHz")
    return best[1]


def ecp5_pll(settings: PllSettings, clk_in, clk_out: Signal, locked: Signal) -> Instance:
    """An EHXPLLL with its output fed back (the ecppll tool's standard form)."""
    return Instance(
        "EHXPLLL",
        a_FREQUENCY_PIN_CLKI=f"{settings.fin_mhz:g}",
        a_FREQUENCY_PIN_CLKOP=f"{settings.fout_mhz:g}",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
        a_MFG_GMCREF_SEL="2",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
        p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
        p_CLKI_DIV=settings.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=settings.clkop_div,
        p_CLKOP_CPHASE=settings.clkop_div - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
        p_CLKFB_DIV=settings.clkfb_div,
        i_RST=0, i_STDBY=0, i_CLKI=clk_in, o_CLKOP=clk_out, i_CLKFB=clk_out,
        i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
        i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
