from sasa_bench.cli import main

raise SystemExit(main())
