"""JiT family: pixel-space flow-matching transformer (registers its presets on import)."""
