from tools.clients.generate import main

raise SystemExit(main())
