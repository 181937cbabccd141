"""The ground floor every package stands on: errors and their exit codes,
sizes and units, safe file I/O (atomic outputs, writeback, sparse copies,
fd wrappers), and the CLI kit (typer apps, one-line errors, signals,
progress bars).

Nothing here knows a dump format or the simulated machine; it imports no
other package of the suite.
"""
