"""``python -m om2p_lite``: the command line (see ``cli``)."""

from om2p_lite.cli.main import main

raise SystemExit(main())
