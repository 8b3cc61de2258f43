"""``python -m analysis.agreement`` (see :mod:`analysis.agreement.cli`)."""

from analysis.agreement.cli import main

raise SystemExit(main())
