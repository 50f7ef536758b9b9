"""The command layer: one thin module per ``fractalmidi`` command.

Each module builds its parser (``add_arguments(parser)``), turns the parsed flags into the typed
arguments of a library function and prints what that function returns (``run(args) -> int``).
Only this package parses argv; the library (and the demo and the studio) never does.
"""
