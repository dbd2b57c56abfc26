"""`python -m stemsplit` runs the CLI."""

from stemsplit.cli import main

if __name__ == "__main__":
    main()
