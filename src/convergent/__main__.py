"""``python -m convergent``: the command line."""

from convergent.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
