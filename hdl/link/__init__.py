"""The link port and its parts (re-exports only; see ``hdl.link.port`` for the overview)."""

from .common import LinkHeader, LinkStats, wire_signature
from .flow_control import DllpScheduler, LinkCredits
from .port import LinkPort
from .receiver import LinkReceiver, RxBuffer
from .replay_buffer import ReplayBuffer
from .transmitter import LinkTransmitter

__all__ = ["LinkPort", "LinkHeader", "LinkStats", "wire_signature", "LinkTransmitter",
           "ReplayBuffer", "LinkReceiver", "RxBuffer", "DllpScheduler", "LinkCredits"]
