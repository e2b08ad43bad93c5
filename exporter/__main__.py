"""`python -m exporter` runs the same CLI as the `kubevirt-update-exporter` console script."""

from exporter.cli import main

raise SystemExit(main())
