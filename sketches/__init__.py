"""shiftwatch package."""
