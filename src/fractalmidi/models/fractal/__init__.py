"""FractalGen family: recursive MAR/AR generators (registers its presets on import)."""
