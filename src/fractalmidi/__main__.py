from fractalmidi.cli import main

raise SystemExit(main())
