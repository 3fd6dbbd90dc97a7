"""``python -m om2p_lite``: the command line (see ``cli``)."""

from .cli import main

raise SystemExit(main())
