import sys

from ffnet.main import main

sys.exit(main())
