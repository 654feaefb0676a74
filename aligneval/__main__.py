from aligneval.cli import main

raise SystemExit(main())
