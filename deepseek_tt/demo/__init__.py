"""The DeepSeek-V3 demo (docs/DEMO_CONTRACT.md): ``run_demo`` and the CLI ``python -m deepseek_tt.demo``."""

from deepseek_tt.demo.cli import create_parser, main
from deepseek_tt.demo.errors import DemoInputError
from deepseek_tt.demo.options import DemoOptions
from deepseek_tt.demo.prompts import load_prompts_file
from deepseek_tt.demo.run import run_demo, run_with_options

__all__ = ["DemoInputError", "DemoOptions", "create_parser", "load_prompts_file", "main", "run_demo", "run_with_options"]
