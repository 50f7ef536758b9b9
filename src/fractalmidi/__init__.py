"""FractalMIDI: learn to compose MIDI from your own collection.

MIDI becomes a piano-roll image of note codes ``(1, 128, T)`` (velocity + onset); FractalGen (recursive MAR/AR) and JiT
(pixel-space flow matching) generators learn it and compose, continue or inpaint music.
"""

__version__ = "0.1.0"
