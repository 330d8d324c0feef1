"""``python -m hpcmicro``: the same as the ``hpcmicro`` command."""

from .app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
