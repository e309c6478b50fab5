"""The ``unibind`` command line: the parser, one module per command group, and table / JSON output.

May import: everything in ``unibind``; nothing imports it except the console script.
"""
