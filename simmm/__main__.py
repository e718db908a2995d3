from simmm.cli import main

raise SystemExit(main())
