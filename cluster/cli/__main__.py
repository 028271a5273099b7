"""`python -m cluster.cli`: the `dashi` command (``cluster.cli.offline.main``)."""

from cluster.cli.offline import main

main()
