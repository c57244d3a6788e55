"""``python -m conformance`` entry point."""

from conformance.cli import main

raise SystemExit(main())
