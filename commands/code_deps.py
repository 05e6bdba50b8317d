"""Command (not a DVC stage): rewrite each stage's code deps in dvc.yaml from the imports of
the code it runs (`make deps`). `--check` changes nothing and exits 1 when dvc.yaml differs.

    python -m commands.code_deps [--check]
"""

import argparse
import sys
from pathlib import Path

from lib.common.code_deps import rewrite_code_deps
from lib.common.fileio import write_text
from stages.common import run

DVC_YAML = Path("dvc.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = rewrite_code_deps(Path("."))
    if text == DVC_YAML.read_text():
        print(f"{DVC_YAML}: every stage's code deps are its import closure")
    elif args.check:
        sys.exit(f"{DVC_YAML}: code deps differ from the imports; run `make deps`")
    else:
        write_text(DVC_YAML, text)
        print(f"{DVC_YAML}: code deps rewritten from the imports")


if __name__ == "__main__":
    run(main)
