"""The ``python -m om2p_lite`` command line, one module per group of sub-commands.

Not the logic: each command parses, validates and calls library functions.
"""
