"""``python -m unibind.retrieval.cli``: the ``unibind`` command."""

from unibind.retrieval.cli.main import main

raise SystemExit(main())
