"""`python -m stemsplit` runs the CLI."""

from stemsplit.cli import entry

if __name__ == "__main__":
    entry()
