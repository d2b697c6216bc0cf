"""``python -m deepseek_tt.demo``."""

import sys

from deepseek_tt.demo.cli import main

sys.exit(main())
