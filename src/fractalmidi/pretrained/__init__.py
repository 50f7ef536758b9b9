"""Models shipped inside the package: ``NAME.ckpt`` (a slim inference checkpoint made by
``fractalmidi export`` from a run of ``fractalmidi train``) beside ``NAME.md``, its model card.

``generate --model NAME`` (or ``--checkpoint NAME``) uses one; ``fractalmidi models`` lists them.
"""

from __future__ import annotations

from pathlib import Path

from fractalmidi.errors import UserError

PRETRAINED_DIR = Path(__file__).resolve().parent
CHECKPOINT_SUFFIX = ".ckpt"
CARD_SUFFIX = ".md"
SUMMARY_PREFIX = "summary:"
"""The model card line that ``fractalmidi models`` shows."""


def shipped() -> list[str]:
    """Names of the shipped models (a checkpoint with a card beside it), sorted."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob(f"*{CHECKPOINT_SUFFIX}") if p.with_suffix(CARD_SUFFIX).is_file())


def summary(name: str) -> str:
    """The card's one-line summary (its ``summary:`` line)."""
    for line in (PRETRAINED_DIR / f"{name}{CARD_SUFFIX}").read_text().splitlines():
        if line.lower().startswith(SUMMARY_PREFIX):
            return line[len(SUMMARY_PREFIX):].strip()
    return ""


def resolve(checkpoint: str | Path) -> Path:
    """A checkpoint file or run folder as given, else the shipped model of that name."""
    path = Path(checkpoint)
    if path.exists():
        return path
    if str(checkpoint) in shipped():
        return PRETRAINED_DIR / f"{checkpoint}{CHECKPOINT_SUFFIX}"
    names = ", ".join(shipped()) or "none"
    raise UserError(f"checkpoint {checkpoint} not found: not a file, a run folder or a shipped model ({names})")
