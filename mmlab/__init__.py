"""mmlab: backtest-first research framework for crypto market making.

Importing the package does no I/O and pulls in no heavy dependency; see ``mmlab.cli`` for the commands.
"""

__version__ = "0.1.0"
