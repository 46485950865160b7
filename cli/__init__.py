"""The `nexus` command line: one dispatcher (`cli.main`) and one module per command.

The CLI is a composition root: it loads `Settings` and wires services together. It never
imports `web` or `agents`; it launches them as child processes.
"""
