"""``python -m pipeline.recognize``: runs :func:`pipeline.recognize.cli.main`."""

from pipeline.recognize.cli import main

raise SystemExit(main())
