"""`python -m fedsim`: the same CLI as the `fedsim` console script and run_sim.py."""

from fedsim.cli import main

raise SystemExit(main())
