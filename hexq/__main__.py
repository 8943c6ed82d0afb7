"""`python -m hexq ...` is the `hexq` command."""

from hexq.functions.cli import main

raise SystemExit(main())
