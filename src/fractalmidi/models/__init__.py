"""Generator families behind one contract (:class:`~fractalmidi.models.base.Generator`)."""

from fractalmidi.models.base import NUM_PITCHES, Generator, keep_known
from fractalmidi.models.registry import available, build, preset_defaults, register_preset

__all__ = ["NUM_PITCHES", "Generator", "available", "build", "keep_known", "preset_defaults", "register_preset"]
