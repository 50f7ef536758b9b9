"""FractalMIDI Studio: a local web page to open a MIDI file, paint a region on its piano-roll,
regenerate it with a checkpoint and listen (``fractalmidi studio``).

:mod:`.session` holds the state (versions of the roll, files in one temporary folder) and
does the work; :mod:`.app` is the HTTP API around it; :mod:`.server` binds the address and
serves it; ``static/`` is the page (plain JS).
"""
