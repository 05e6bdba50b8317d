"""Command (not a DVC stage): rewrite each stage's code deps in dvc.yaml from the imports of
the code it runs, and its params from its modules' PARAMS (`make deps`). `--check` changes
nothing and exits 1 when dvc.yaml differs.

    python -m commands.code_deps [--check]
"""

import argparse
import sys
from pathlib import Path

from lib.common.code_deps import rewrite_dvc_yaml
from lib.common.fileio import write_text
from stages.common import run

DVC_YAML = Path("dvc.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = rewrite_dvc_yaml(Path("."))
    if text == DVC_YAML.read_text():
        print(f"{DVC_YAML}: every stage's code deps and params are what its code has")
    elif args.check:
        sys.exit(f"{DVC_YAML}: code deps or params differ from the code; run `make deps`")
    else:
        write_text(DVC_YAML, text)
        print(f"{DVC_YAML}: code deps and params rewritten from the code")


if __name__ == "__main__":
    run(main)
